"""The policy API on this host: the shipped policies' metadata, tunable checks before
load, and the not-supported error on a kernel without bpf_oom_ops.  (Policies
deciding real OOMs are tested in the VM: tests/guest/test_policies*.py.)"""
from __future__ import annotations

import struct
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


def test_an_event_decodes_with_the_layout_the_policy_objects_declare():
    # struct policy_event (policy_event.h, schema 2) packed from outside, as a C reader sees it
    layout = struct.Struct("<HHHH32sQQQQQiIIHH16iQQII" + "QQQiiII" * 8 + "II4Q4i" * 4)
    pids = [101, 102] + [0] * 14
    candidates = [7, 1 << 20, 1 << 19, 0, 3, 1, 0] + [0] * 7 * 7
    excluded = [2, 0, 8, 9, 0, 0, 0, 55, 0, 0] + [0] * 10 * 3
    record = layout.pack(2, layout.size, 1, 1, b"largest_leaf", 5, 6, 7, 8, 1 << 20, 0, 3, 2,
                         2, 0, *pids, 9, 0, 1, 0, *candidates, *excluded)
    event = bpfoom.DecisionEvent.from_bytes(record)
    assert (event.policy, event.action, event.reason, event.pids, event.granularity) == (
        "largest_leaf", "killed", "largest_leaf", (101, 102), "cgroup")
    assert (event.scope_cgroup_id, event.victim_cgroup_id, event.granularity_cgroup_id) == (6, 8, 9)
    assert len(event.considered) == 1
    assert (event.considered[0].cgroup_id, event.considered[0].priority,
            event.considered[0].protected) == (7, 3, True)
    assert event.excluded["unkillable"].first == ((8, 0), (9, 55))
    with pytest.raises(bpfoom.InvalidValueError, match="rebuild the policy"):
        bpfoom.DecisionEvent.from_bytes(record[:-1])
