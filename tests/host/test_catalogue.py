"""The policy catalogue reads each policy from its object alone: description, tunables with
types, defaults and ranges (written by policy_meta.h), required features; a user's own
policy objects are found through BPFOOM_POLICY_PATH and described the same way."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import bpfoom
import facts

EXAMPLE = facts.REPO / "examples" / "policies" / "adjusted_task.bpf.o"
SHIPPED = {"largest_leaf", "priority", "largest_task", "newest_task", "observe", "psi_guard"}


def test_an_object_alone_carries_its_metadata(tmp_path, monkeypatch):
    shipped = {info.name: info for info in bpfoom.policies()}["largest_leaf"]
    shutil.copy(shipped.path, tmp_path / "lonely.bpf.o")  # no .bpf.c next to it
    monkeypatch.setenv("BPFOOM_POLICY_PATH", str(tmp_path))
    lonely = {info.name: info for info in bpfoom.policies()}["lonely"]
    assert lonely.path == tmp_path / "lonely.bpf.o"
    assert lonely.description == shipped.description != ""
    assert lonely.tunables == shipped.tunables
    wait = lonely.tunables["victim_wait_ms"]
    assert (wait.type_name, wait.default, wait.minimum, wait.maximum) == ("__u64", 5000, 0, 3600000)
    assert lonely.tunables["exclude_page_cache"].minimum is None


def test_the_example_policy_lists_through_the_policy_path(monkeypatch):
    monkeypatch.setenv("BPFOOM_POLICY_PATH", str(EXAMPLE.parent))
    done = subprocess.run([sys.executable, "-P", "-m", "bpfoom", "policies", "--json"],
                          capture_output=True, text=True, timeout=120, env=os.environ)
    assert done.returncode == 0, done.stderr
    listed = {entry["name"]: entry for entry in json.loads(done.stdout)["policies"]}
    assert set(listed) == SHIPPED | {"adjusted_task"}
    example = listed["adjusted_task"]
    assert example["kind"] == "oom" and example["path"] == str(EXAMPLE)
    assert example["description"].startswith("kill the task with the most memory")
    assert "kfunc:bpf_oom_kill_process" in example["requires"]
    assert example["tunables"]["adj_unit_bytes"] == {
        "type": "__u64", "default": 4 << 20, "doc": "bytes one oom_score_adj point is worth",
        "range": [0, 1 << 30], "settable_after_load": True}
    assert example["tunables"]["count_swap"]["range"] is None
    assert not example["tunables"]["count_swap"]["settable_after_load"]


def test_a_value_outside_the_declared_range_is_refused_naming_the_range(monkeypatch):
    with pytest.raises(bpfoom.InvalidValueError, match=r"victim_wait_ms.*0\.\.3600000.*3600001"):
        bpfoom.OomPolicy.load("largest_leaf", victim_wait_ms=3600001)
    with pytest.raises(bpfoom.InvalidValueError, match=r"window_us.*500000\.\.10000000"):
        bpfoom.PsiHandler.load("psi_guard", window_us=1000)
    # by path too: the object's own declaration holds, whatever its name
    with pytest.raises(bpfoom.InvalidValueError, match=r"adj_unit_bytes.*0\.\.1073741824"):
        bpfoom.OomPolicy.load(EXAMPLE, adj_unit_bytes=(1 << 30) + 1)



@pytest.mark.parametrize("source,setting,words", [
    ("largest_leaf", "victim_wait_ms=3600001",
     "victim_wait_ms' of policy 'largest_leaf' takes 0..3600000"),
    ("psi_guard", "window_us=1000", "window_us' of policy 'psi_guard' takes 500000..10000000"),
    (str(EXAMPLE), "adj_unit_bytes=0x40000001",
     "adj_unit_bytes' of '{example}' takes 0..1073741824"),
], ids=["by-name", "psi", "by-path"])
def test_the_command_line_loader_enforces_the_declared_ranges(source, setting, words):
    """One load path (tunables.load_object): --set text and config values meet the same ranges."""
    done = subprocess.run([sys.executable, "-P", "-m", "bpfoom", "attach", source,
                           "--set", setting], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "[Errno 22 EINVAL]" in done.stderr and words.format(example=EXAMPLE) in done.stderr

def test_every_shipped_default_lies_in_its_range():
    for info in bpfoom.policies():
        for tunable in info.tunables.values():
            if tunable.minimum is not None:
                assert tunable.minimum <= tunable.default <= tunable.maximum, (info.name, tunable)


def test_get_include_is_the_directory_policies_include_from():
    include = Path(bpfoom.get_include())
    for header in ("policy_meta.h", "policy_event.h", "policy_tasks.h", "bpfoom_kernel.h",
                   "bpf/bpf_helpers.h", "bpf/bpf_helper_defs.h", "bpf/bpf_tracing.h"):
        assert (include / header).is_file(), header
    source = (facts.REPO / "examples" / "policies" / "adjusted_task.bpf.c").read_text()
    assert '#include "policy_meta.h"' in source and "BPFOOM_DESCRIPTION(" in source
