"""The OOM-tree reference scenario of spec section 6.

oom_test (memory.max 80M, no swap)
├── cg1  10M, oom_score_adj 1000   <- the kernel's own killer picks this one
├── cg2  40M, oom_score_adj -1000
└── cg3
    ├── cg4  30M                    <- the largest-leaf policy picks this one
    └── cg5  20M

The tasks start frozen and are thawed together.  The spec sizes add up to
100M, so which leaf is largest at the moment of the OOM depends on how far
each task got; to make that moment the same every run, the thawed tasks
allocate in turn (cg1, cg4, cg5: 60M) and cg2's 40M then overruns the limit.
The policy is one map attached twice: to oom_test and to cg3.
"""
from __future__ import annotations

import pytest

import bpfoom
from oomtest import BPF_DIR, killed_pids, memory_events, sigkilled, wait_until

SIZES = {"cg1": 10, "cg2": 40, "cg3/cg4": 30, "cg3/cg5": 20}
ADJ = {"cg1": 1000, "cg2": -1000}


@pytest.fixture
def largest_leaf():
    obj = bpfoom.BpfObject.open(BPF_DIR / "oom_tree.bpf.o")
    obj.load()
    yield obj
    obj.close()


def run_scenario(cgroups, hogs):
    """Build the tree, start the frozen tasks, thaw, allocate in turn; return (cgroups, hogs)."""
    top = cgroups("oom_test", memory_max="80M")
    groups = {name: cgroups(f"oom_test/{name}") for name in SIZES}
    groups["cg3"] = cgroups("oom_test/cg3")
    top.write("cgroup.freeze", "1")
    started = {name: hogs(groups[name], mib, oom_score_adj=ADJ.get(name, 0), gated=True,
                          wait_joined=False) for name, mib in SIZES.items()}
    for name, hog in started.items():
        wait_until(lambda: hog.pid in groups[name].procs, what=f"{name}'s task to join")
    wait_until(lambda: "frozen 1" in top.read("cgroup.events").splitlines(),
               what="oom_test to be frozen")
    top.write("cgroup.freeze", "0")
    for hog in started.values():
        assert hog.wait_for("joined"), "a thawed task did not run"
    for name in ("cg1", "cg3/cg4", "cg3/cg5"):
        started[name].go()
        assert started[name].wait_for("allocated"), f"{name} could not allocate below the limit"
    return top, groups, started


def first_death(started, kernel_log) -> tuple[str, str]:
    """(cgroup name, kill reason) of the first task the OOM killed once cg2 allocates.

    Only the first kill is the policy's decision: a later one can be the
    kernel's (see test_kill.py on the MMF_OOM_SKIP window), so the order comes
    from the kernel log, not from who is dead when we look.
    """
    started["cg2"].go()
    wait_until(lambda: killed_pids(kernel_log), timeout=60, what="a task to be OOM-killed")
    pid, reason = killed_pids(kernel_log)[0]
    names = {hog.pid: name for name, hog in started.items()}
    assert pid in names, f"the OOM killed {pid}, not one of the scenario's tasks"
    return names[pid], reason


def test_the_policy_kills_the_largest_killable_leaf(largest_leaf, cgroups, hogs, kernel_log):
    top, groups, started = run_scenario(cgroups, hogs)
    ops = largest_leaf.struct_ops["largest_leaf"]
    with ops.attach(cgroup=top), ops.attach(cgroup=groups["cg3"]):
        assert first_death(started, kernel_log) == ("cg3/cg4", "largest leaf memcg")
        assert sigkilled(started["cg3/cg4"].wait_dead())
    assert memory_events(groups["cg3/cg4"])["oom_kill"] == 1
    assert memory_events(groups["cg2"])["oom_kill"] == 0
    assert largest_leaf.bss["chosen_cgroup_id"] == groups["cg3/cg4"].id
    assert largest_leaf.bss["tasks_killed"] == 1
    assert largest_leaf.bss["leaves_seen"] == 4  # cg1, cg2, cg4, cg5


def test_without_the_policy_the_kernel_kills_cg1(cgroups, hogs, kernel_log):
    """The control run: oom_score_adj 1000 makes cg1 the kernel's choice."""
    _, groups, started = run_scenario(cgroups, hogs)
    assert first_death(started, kernel_log) == ("cg1", "Memory cgroup out of memory")
    assert memory_events(groups["cg1"])["oom_kill"] == 1
