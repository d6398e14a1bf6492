"""The policy API on this host: the shipped policies' metadata, tunable checks before
load, and the not-supported error on a kernel without bpf_oom_ops.  (Policies
deciding real OOMs are tested in the VM: tests/guest/test_policies*.py.)"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import bpfoom

REPO = Path(__file__).resolve().parents[2]
SHIPPED = {"largest_leaf", "priority", "largest_task", "newest_task", "observe", "psi_guard"}


def test_policies_lists_the_shipped_ones_with_metadata():
    found = {info.name: info for info in bpfoom.policies()}
    assert SHIPPED <= set(found)
    leaf = found["largest_leaf"]
    assert leaf.kind == "oom"
    assert leaf.path.name == "largest_leaf.bpf.o" and leaf.path.exists()
    assert leaf.description.startswith("kill every task of the largest leaf memcg")
    assert {"bpf_oom_ops", "kfunc:bpf_oom_kill_process", "kfunc:bpf_mem_cgroup_usage"} <= set(
        leaf.requires)
    cache = leaf.tunables["exclude_page_cache"]
    assert (cache.type_name, cache.default, cache.section) == ("bool", True, ".rodata")
    assert not cache.settable_after_load
    minimum = leaf.tunables["min_victim_bytes"]
    assert (minimum.type_name, minimum.default) == ("__u64", 0)
    assert minimum.settable_after_load and minimum.doc
    assert found["priority"].tunables["default_priority"].type_name == "__s32"
    assert "kfunc:bpf_oom_kill_process" not in found["observe"].requires
    guard = found["psi_guard"]
    assert guard.kind == "psi"
    assert guard.tunables["guarded_cgroups"].type_name == "__u64[16]"
    assert {"bpf_psi_ops", "kfunc:bpf_psi_create_trigger", "kfunc:bpf_out_of_memory"} <= set(
        guard.requires)


def test_an_unknown_tunable_is_refused_with_the_close_match():
    with pytest.raises(bpfoom.VariableNotFoundError, match="did you mean 'min_victim_bytes'"):
        bpfoom.OomPolicy.load("largest_leaf", min_victim_byte=1)


def test_a_tunable_value_out_of_range_is_refused_before_load():
    with pytest.raises(bpfoom.InvalidValueError, match="min_victim_bytes"):
        bpfoom.OomPolicy.load("largest_leaf", min_victim_bytes=-1)


def test_an_unknown_policy_name_suggests_the_close_match():
    with pytest.raises(bpfoom.NotFoundError, match="did you mean 'largest_leaf'"):
        bpfoom.OomPolicy.load("largest_lef")


def test_a_handler_of_the_wrong_kind_is_refused_naming_the_right_class():
    with pytest.raises(bpfoom.InvalidValueError, match="OomPolicy"):
        bpfoom.PsiHandler.load("largest_leaf")
    with pytest.raises(bpfoom.InvalidValueError, match="PsiHandler"):
        bpfoom.OomPolicy.load("psi_guard")


@pytest.mark.skipif(bpfoom.features()["bpf_oom_ops"].supported is not False,
                    reason="needs a kernel without bpf_oom_ops (this one has it or cannot tell)")
def test_loading_on_a_kernel_without_bpf_oom_ops_names_the_missing_feature():
    with pytest.raises(bpfoom.NotSupportedError) as caught:
        bpfoom.OomPolicy.load("largest_leaf", min_victim_bytes=1 << 20)
    assert caught.value.feature == "bpf_oom_ops"
    assert "bpf_oom_ops" in str(caught.value)


@pytest.mark.skipif(bpfoom.features()["bpf_oom_ops"].supported is not False,
                    reason="needs a kernel without bpf_oom_ops (this one has it or cannot tell)")
def test_the_oom_demo_names_the_missing_feature_and_fails():
    done = subprocess.run([sys.executable, "-P", str(REPO / "examples" / "oom_demo.py")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "the running kernel lacks bpf_oom_ops" in done.stdout
    assert "./scripts/demo" in done.stdout


def test_an_event_of_an_unknown_schema_is_refused():
    record = bytearray(160)  # schema 1: the record before explanations
    record[0:4] = (1).to_bytes(2, "little") + (160).to_bytes(2, "little")
    with pytest.raises(bpfoom.InvalidValueError, match="schema 1 and size 160.*reads schema 2"):
        bpfoom.DecisionEvent.from_bytes(bytes(record))
