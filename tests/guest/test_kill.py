"""bpf_oom_kill_process and bpf_task_is_oom_victim, and the oom_policy=<name> report line.

The report header that carries oom_policy= is rate-limited by the kernel (10
per 5 s): tests that read it first wait for a fresh window
(await_oom_report_window); the others judge kills by what is never
rate-limited (the "Killed process" line, memory.events, the kill watcher).

Most tests OOM a 64M memcg holding a `holder` (allocated, then idle) and an
`allocator` that pushes the memcg over its limit.  The policy kills the holder
by pid; the holder has a low oom_score_adj so the kernel's own killer would
have chosen the allocator: which one died first tells who decided.

The allocator may die too, by the kernel's hand: exit_mmap() marks a dying
victim MMF_OOM_SKIP before its pages are freed, and an OOM in that window
(wide under TCG) makes the kernel pick the next task.  That is Linux's own
behaviour, with or without a policy, so the tests only look at the first kill.
"""
from __future__ import annotations

import errno

import pytest

import bpfoom
from oomtest import (BPF_DIR, KILL_PID, await_oom_report_window, killed_pids, memory_events,
                     open_probe, policy_lines, recorded_calls, set_action, sigkilled)

MEMCG_MAX = "64M"


@pytest.fixture
def memcg(cgroups):
    return cgroups("victims", memory_max=MEMCG_MAX)


def holder_and_allocator(hogs, cg, *, holder_adj: int = -500, holder_mib: int = 40):
    holder = hogs(cg, holder_mib, oom_score_adj=holder_adj)
    assert holder.wait_for("allocated"), "the holder could not allocate its memory"
    allocator = hogs(cg, 30, gated=True)
    return holder, allocator


def test_the_kernel_report_says_default_without_a_policy(memcg, hogs, kernel_log):
    await_oom_report_window()
    hog = hogs(memcg, 128)
    assert sigkilled(hog.wait_dead())
    assert policy_lines(kernel_log) == ["oom_policy=default"]
    assert memory_events(memcg)["oom_kill"] == 1


def test_policy_kill_is_a_real_oom_kill(probe, memcg, hogs, kernel_log):
    holder, allocator = holder_and_allocator(hogs, memcg)
    with bpfoom.KillWatcher() as watcher, probe.struct_ops["probe_policy"].attach(cgroup=memcg):
        set_action(probe, memcg.id, KILL_PID, holder.pid)
        allocator.go()
        assert sigkilled(holder.wait_dead())
        first = next(e for e in watcher.events(timeout=60) if isinstance(e, bpfoom.KillEvent))
    # The kernel marked the holder an OOM victim for the policy named bpfoom_probe.
    assert (first.pid, first.policy, first.by_bpf) == (holder.pid, "bpfoom_probe", True)
    assert first.oom_cgroup_id == memcg.id
    assert probe.data["last_kill_ret"] == 0
    assert probe.bss["kills"] == 1
    # Later OOMs while the holder exits find it dying; the policy then waits.
    calls = recorded_calls(probe)
    assert calls and set(calls) == {(memcg.id, memcg.id)}
    assert probe.bss["victim_waits"] == len(calls) - 1
    events = memory_events(memcg)
    assert events["oom_kill"] >= 1 and events["oom"] >= 1
    assert killed_pids(kernel_log)[0] == (holder.pid, "bpfoom test policy")


def test_a_victim_being_killed_is_an_oom_victim(probe, memcg, hogs):
    holder, allocator = holder_and_allocator(hogs, memcg)
    with probe.struct_ops["probe_policy"].attach(cgroup=memcg):
        set_action(probe, memcg.id, KILL_PID, holder.pid)
        allocator.go()
        assert sigkilled(holder.wait_dead())
    assert probe.bss["victim_before_kill"] is False
    assert probe.bss["victim_after_kill"] is True


@pytest.mark.parametrize("name,shown", [("my_oom_policy", "my_oom_policy"),
                                        ("", "bpf_defined_policy")])
def test_the_report_names_the_policy(memcg, hogs, kernel_log, name, shown):
    obj = open_probe(name)
    try:
        await_oom_report_window()
        holder, allocator = holder_and_allocator(hogs, memcg)
        with obj.struct_ops["probe_policy"].attach(cgroup=memcg):
            set_action(obj, memcg.id, KILL_PID, holder.pid)
            allocator.go()
            assert sigkilled(holder.wait_dead())
    finally:
        obj.close()
    assert policy_lines(kernel_log)[0] == f"oom_policy={shown}"


def test_memory_oom_group_kills_the_whole_group(probe, cgroups, hogs):
    group = cgroups("group", memory_max=MEMCG_MAX, oom_group=True)
    holder, allocator = holder_and_allocator(hogs, group, holder_mib=36)
    bystander = hogs(group, 4, oom_score_adj=-500)
    assert bystander.wait_for("allocated")
    with probe.struct_ops["probe_policy"].attach(cgroup=group):
        set_action(probe, group.id, KILL_PID, holder.pid)
        allocator.go()
        for hog in (holder, allocator, bystander):
            assert sigkilled(hog.wait_dead()), f"hog {hog.pid} of the oom.group survived"
    assert probe.bss["kills"] == 1
    events = memory_events(group)
    assert events["oom_group_kill"] == 1
    # Linux counts the victim twice: once itself, once as a member of its group.
    assert events["oom_kill"] >= 3


def test_an_unkillable_task_gives_eperm_and_the_kernel_kills(probe, memcg, hogs, kernel_log):
    await_oom_report_window()
    holder, allocator = holder_and_allocator(hogs, memcg, holder_adj=-1000)
    with probe.struct_ops["probe_policy"].attach(cgroup=memcg):
        set_action(probe, memcg.id, KILL_PID, holder.pid)
        allocator.go()
        assert sigkilled(allocator.wait_dead())
    assert holder.alive()
    assert probe.data["last_kill_ret"] == -errno.EPERM
    assert probe.bss["kills"] == 0
    assert policy_lines(kernel_log) == ["oom_policy=default"]
    assert memory_events(memcg)["oom_kill"] == 1


def test_only_oom_policies_may_call_the_kill_kfunc():
    """A tcp_congestion_ops program calling bpf_oom_kill_process is rejected at load."""
    obj = bpfoom.BpfObject.open(BPF_DIR / "kill_from_tcp_cc.bpf.o")
    try:
        with pytest.raises(bpfoom.VerifierError) as caught:
            obj.load()
    finally:
        obj.close()
    # The kfunc filter refuses it, before any argument or sleepability check.
    assert "calling kernel function bpf_oom_kill_process is not allowed" in (caught.value.log or "")
