"""bpfoom's pytest plugin fixtures (cgroup, memory_hog, oom_policy) doing real OOM work in the VM."""
from __future__ import annotations

from pathlib import Path

import pytest

import bpfoom
from oomtest import memory_events


@pytest.fixture
def removed_afterwards():
    """Paths that must be gone once every fixture the test asked for after this one tore down."""
    paths: list[Path] = []
    yield paths
    left = [path for path in paths if path.exists()]
    assert not left, f"still there after teardown: {left}"


def test_cgroup_is_a_memory_cgroup_removed_afterwards(removed_afterwards, memory_hog, cgroup):
    assert "memory" in cgroup.read("cgroup.subtree_control").split()
    child = cgroup.child("leaf")
    assert (child.path / "memory.max").exists()  # children get their own memcg
    memory_hog(child, 1)  # alive when `cgroup` tears down (before memory_hog): it must kill it
    child.close()
    removed_afterwards += [cgroup.path, child.path]


def test_memory_hog_is_frozen_until_released(cgroup, memory_hog):
    leaf = cgroup.child("hog")
    hog = memory_hog(leaf, 24)
    assert leaf.procs == [hog.pid]
    assert int(leaf.read("memory.current")) < 8 << 20  # joined, nothing allocated yet
    hog.release()
    assert hog.wait_allocated()
    assert int(leaf.read("memory.current")) >= 24 << 20
    assert hog.alive and hog.death is None
    leaf.close()


def test_memory_hog_reports_an_oom_kill(cgroup, memory_hog):
    leaf = cgroup.child("small")
    leaf.write("memory.max", str(16 << 20))
    hog = memory_hog(leaf, 48)
    hog.release()
    assert hog.wait_dead() == "SIGKILL"
    assert hog.oom_killed
    assert memory_events(leaf)["oom_kill"] == 1
    leaf.close()


def test_oom_policy_attaches_decides_and_is_detached(cgroup, memory_hog, oom_policy):
    cgroup.write("memory.max", str(48 << 20))
    big, small = cgroup.child("big"), cgroup.child("small")
    large, little = memory_hog(big, 40), memory_hog(small, 12)
    policy = oom_policy("largest_leaf", cgroup=cgroup.path)
    attached = [a for a in bpfoom.attached() if a.cgroup_id == cgroup.id]
    assert [(a.policy_name, a.kind) for a in attached] == [("largest_leaf", "oom")]
    little.release()
    assert little.wait_allocated()
    large.release()
    assert large.wait_dead() == "SIGKILL"
    assert little.alive
    assert memory_events(big)["oom_kill"] >= 1 and memory_events(small)["oom_kill"] == 0
    decision = next(policy.events(timeout=30))
    assert decision.action == "killed" and large.pid in decision.pids
    assert decision.victim_cgroup_id == big.id
    big.close()
    small.close()
    # no_leftover_links (autouse) checks after teardown that the fixture detached it.
