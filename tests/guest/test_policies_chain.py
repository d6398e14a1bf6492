"""Shipped policies in the handler chain: the OOMing memcg's policy first, then its
parents', then the system-wide one, then the kernel's killer.

parent / child (memory.max 48M): a killable holder and an unkillable allocator in
the child; whoever kills the holder names itself in the kernel log.
"""
from __future__ import annotations

import pytest

from oomtest import await_oom_report_window
from oomtest import killed_pids, policy_lines, sigkilled
from policytest import KERNEL_REASON, first_kill, holders, kills, overrun
from policytest import load_policy  # noqa: F401 (a fixture)

# (policy on child, on parent, system-wide) -> the kill reason in the kernel log
CASES = {
    "nearest wins": (("largest_task", "largest_leaf", None), "bpfoom largest_task"),
    "declining child falls through to the parent": (("observe", "largest_leaf", None),
                                                    "bpfoom largest_leaf"),
    "then to the system-wide policy": (("observe", None, "largest_task"), "bpfoom largest_task"),
    "then to the kernel": (("observe", None, None), KERNEL_REASON),
}


@pytest.mark.parametrize("case", list(CASES))
def test_chain_of_shipped_policies(load_policy, cgroups, hogs, kernel_log, case):
    await_oom_report_window()  # the report lines read below are rate-limited
    (on_child, on_parent, system_wide), reason = CASES[case]
    parent = cgroups("parent")
    child = cgroups("parent/child", memory_max="48M")
    work, alloc = cgroups("parent/child/work"), cgroups("parent/child/alloc")
    attached = {}
    for where, name, target in (("child", on_child, child), ("parent", on_parent, parent),
                                ("system", system_wide, None)):
        if name:
            attached[where] = load_policy(name)
            attached[where].attach(cgroup=target)
    holder = holders(hogs, {"holder": work}, {"holder": 24})["holder"]
    overrun(hogs, alloc, 32)

    assert first_kill(kernel_log) == (holder.pid, reason)
    assert sigkilled(holder.wait_dead())
    expected_policy = next((attached[w].name for w in ("child", "parent", "system")
                            if w in attached and f"bpfoom {attached[w].name}" == reason), "default")
    assert policy_lines(kernel_log)[0] == f"oom_policy={expected_policy}"
    scope = {"child": child.id, "parent": parent.id, "system": 0}
    for where, policy in attached.items():
        events = list(policy.events(timeout=1))
        if policy.name == expected_policy:
            decision, = kills(events)
            assert (decision.scope_cgroup_id, decision.oom_cgroup_id) == (scope[where], child.id)
            assert decision.pids == (holder.pid,)
        elif policy.name == "observe":
            assert events and events[0].action == "dry_run"
            assert events[0].pids == (holder.pid,)
        else:  # a handler after the one that killed is never asked
            assert events == [], (f"{policy.name} on {where} was asked: {[str(e) for e in events]};"
                                  f" kernel kills: {killed_pids(kernel_log)}")


def test_a_system_wide_oom_is_decided_by_the_system_wide_policy(load_policy, cgroups, hogs,
                                                                 kernel_log):
    """A real OOM of the whole guest: largest_leaf attached system-wide ranks every leaf
    memcg of the machine and kills the hog's.

    Safe as in test_chain.py: the hog has oom_score_adj 1000 (the kernel's own
    choice if the policy failed), the test runner -1000; the guest has no swap.
    """
    policy = load_policy("largest_leaf")
    cg = cgroups("global")  # no memory.max: only the guest's RAM limits it
    total_mib = int(open("/proc/meminfo").readline().split()[1]) // 1024  # MemTotal
    policy.attach()
    hog = hogs(cg, total_mib - 16, oom_score_adj=1000, gated=True)  # within overcommit
    hog.go()
    assert first_kill(kernel_log, timeout=300) == (hog.pid, "bpfoom largest_leaf")
    assert sigkilled(hog.wait_dead(timeout=300))
    decision = next(e for e in policy.events(timeout=5) if e.action == "killed")
    assert (decision.scope_cgroup_id, decision.oom_cgroup_id) == (0, 0)
    assert decision.victim_cgroup_id == cg.id
    assert decision.pids == (hog.pid,)
