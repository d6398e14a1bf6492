"""The OOM handler chain: the OOMing memcg's policy, then its ancestors', then the
system-wide one, then the kernel's killer; the first policy that frees memory ends it.

One map is attached three times (child memcg, parent memcg, system-wide); its
`actions` map says what each attachment does and .bss records each call.
"""
from __future__ import annotations

import pytest

from oomtest import await_oom_report_window
from oomtest import (CLAIM_WITHOUT_KILL, DECLINE, KILL_PID, memory_events, policy_lines,
                      recorded_calls, set_action, sigkilled)


@pytest.fixture
def tree(cgroups):
    """parent (no limit) / child (memory.max 32M)."""
    return cgroups("parent"), cgroups("parent/child", memory_max="32M")


@pytest.mark.parametrize("killer,expected_calls,policy", [
    ("child", ["child"], "bpfoom_probe"),
    ("parent", ["child", "parent"], "bpfoom_probe"),
    ("system", ["child", "parent", "system"], "bpfoom_probe"),
    (None, ["child", "parent", "system"], "default"),
])
def test_chain_runs_from_the_oom_memcg_up_and_stops_at_the_first_that_frees(
        probe, tree, hogs, kernel_log, killer, expected_calls, policy):
    await_oom_report_window()  # the report lines read below are rate-limited
    parent, child = tree
    ids = {"child": child.id, "parent": parent.id, "system": 0}
    ops = probe.struct_ops["probe_policy"]
    with ops.attach(cgroup=child), ops.attach(cgroup=parent), ops.attach():
        hog = hogs(child, 96, gated=True)
        for target, cgroup_id in ids.items():
            set_action(probe, cgroup_id, KILL_PID if target == killer else DECLINE, hog.pid)
        hog.go()
        assert sigkilled(hog.wait_dead())

    calls = recorded_calls(probe)
    assert [ctx for ctx, _ in calls] == [ids[name] for name in expected_calls]
    assert all(oom == child.id for _, oom in calls), calls  # oc->memcg is the OOMing child
    assert probe.bss["kills"] == (1 if killer else 0)
    assert memory_events(child)["oom_kill"] == 1
    assert policy_lines(kernel_log) == [f"oom_policy={policy}"]


def test_a_claim_without_a_kill_does_not_end_the_chain(probe, tree, hogs, kernel_log):
    """Returning 1 without freeing anything is not trusted: the next handlers still run."""
    await_oom_report_window()  # the report lines read below are rate-limited
    parent, child = tree
    ops = probe.struct_ops["probe_policy"]
    with ops.attach(cgroup=child), ops.attach(cgroup=parent):
        hog = hogs(child, 96, gated=True)
        set_action(probe, child.id, CLAIM_WITHOUT_KILL)
        set_action(probe, parent.id, KILL_PID, hog.pid)
        hog.go()
        assert sigkilled(hog.wait_dead())
    assert [ctx for ctx, _ in recorded_calls(probe)] == [child.id, parent.id]
    assert policy_lines(kernel_log) == ["oom_policy=bpfoom_probe"]


def test_a_policy_below_the_oom_memcg_is_not_asked(probe, hogs, cgroups):
    """The chain walks up from the OOMing memcg, never down into its children."""
    limited = cgroups("top", memory_max="32M")
    below = cgroups("top/below")
    ops = probe.struct_ops["probe_policy"]
    with ops.attach(cgroup=below), ops.attach(cgroup=limited):
        hog = hogs(below, 96, gated=True)
        set_action(probe, limited.id, KILL_PID, hog.pid)
        hog.go()
        assert sigkilled(hog.wait_dead())
    # The OOM is in `limited` (its memory.max), so `below`'s policy is not in the chain.
    assert recorded_calls(probe) == [(limited.id, limited.id)]


def test_a_system_wide_oom_goes_to_the_system_wide_policy(probe, cgroups, hogs, kernel_log):
    """A real OOM of the whole guest: the memcg policy of the hog's cgroup is not
    asked (oc->memcg is NULL), the system-wide one is, with ctx cgroup_id 0.

    Safe because the hog has oom_score_adj 1000 (the kernel's own choice if
    the policy failed) and the test runner -1000; the guest has no swap.
    """
    await_oom_report_window()  # the report lines read below are rate-limited
    cg = cgroups("global")  # no memory.max: only the guest's RAM limits it
    ops = probe.struct_ops["probe_policy"]
    total_mib = int(open("/proc/meminfo").readline().split()[1]) // 1024  # MemTotal
    with ops.attach(cgroup=cg), ops.attach():
        hog = hogs(cg, total_mib - 16, oom_score_adj=1000, gated=True)  # within overcommit
        set_action(probe, 0, KILL_PID, hog.pid)
        set_action(probe, cg.id, DECLINE)
        hog.go()
        assert sigkilled(hog.wait_dead(timeout=300))
    calls = recorded_calls(probe)
    assert calls and calls[0] == (0, 0), calls
    assert all(ctx == 0 and oom == 0 for ctx, oom in calls), calls
    assert probe.bss["kills"] == 1
    assert "oom_policy=bpfoom_probe" in policy_lines(kernel_log)
