"""bpf_oom_kill_process() kills only inside the OOM's domain, and a policy cannot livelock an OOM.

Every test OOMs a 32M memcg `m` with a 64M allocator while the guard policy,
attached to `m`, tries to kill one chosen task.  The kernel must refuse the
kill with a negative errno, set nothing (oc->bpf_memory_freed stays false)
and leave the target alone; the OOM then ends the kernel's way, with the
allocator killed by "Memory cgroup out of memory".  Kill lines are read from
the kernel log (the "Killed process" line is never rate-limited).
"""
from __future__ import annotations

import errno

import pytest

import bpfoom
from bpfoom.testing import memory_events
from kerneltest import (MODE_CLAIM, MODE_KILL, MODE_KILL_CLAIM, MODE_KILL_TWICE, guard_attempts,
                        open_guard, vfork_pair_in, zombie_in)
from oomtest import CGROUP_ROOT, killed_pids, sigkilled

KERNEL_REASON = "Memory cgroup out of memory"


@pytest.fixture
def guard():
    obj = open_guard()
    yield obj
    obj.close()


@pytest.fixture
def m(cgroups):
    return cgroups("m", memory_max="32M")


def oom_with_guard(guard, m, hogs, kernel_log, mode: int, target: int) -> list[tuple[int, str]]:
    """Attach the guard to `m` (mode, target), OOM `m`; the kills seen, in order."""
    guard.bss["mode"] = mode
    guard.bss["target_pid"] = target
    with guard.struct_ops["guard_policy"].attach(cgroup=m):
        allocator = hogs(m, 64)
        assert sigkilled(allocator.wait_dead()), "the OOM did not end in a kill"
    kills = killed_pids(kernel_log)
    assert (allocator.pid, KERNEL_REASON) in kills, kills
    return kills


def assert_refused(guard, err: int) -> None:
    attempts = guard_attempts(guard)
    assert attempts, "the guard was never asked"
    assert attempts[0] == (-err, False), \
        f"bpf_oom_kill_process answered {attempts[0]}, want ({-err}, freed False)"
    assert guard.bss["kills"] == 0


def test_a_task_of_a_sibling_cgroup_is_out_of_reach(guard, m, cgroups, hogs, kernel_log):
    """The scope escape of issue 16: a policy on x killed a task of its sibling y."""
    y = cgroups("y")
    bystander = hogs(y, 4)
    assert bystander.wait_for("allocated")
    kills = oom_with_guard(guard, m, hogs, kernel_log, MODE_KILL, bystander.pid)
    assert_refused(guard, errno.EACCES)
    assert bystander.alive
    assert bystander.pid not in [pid for pid, _ in kills]
    assert memory_events(y)["oom_kill"] == 0


def test_a_task_of_an_ancestor_cgroup_is_out_of_reach(guard, m, hogs, kernel_log):
    """Domain = the OOMing memcg and its descendants, not its ancestors (here: the root)."""
    root = bpfoom.Cgroup.open(CGROUP_ROOT)
    try:
        elder = hogs(root, 4)
        assert elder.wait_for("allocated")
        oom_with_guard(guard, m, hogs, kernel_log, MODE_KILL, elder.pid)
    finally:
        root.close()
    assert_refused(guard, errno.EACCES)
    assert elder.alive


def test_a_task_of_a_child_cgroup_is_in_reach(guard, cgroups, hogs, kernel_log):
    """The positive control: a descendant's task is the policy's to kill."""
    top = cgroups("top", memory_max="32M")
    leaf = cgroups("top/leaf")
    holder = hogs(leaf, 8)
    assert holder.wait_for("allocated")
    guard.bss["mode"] = MODE_KILL
    guard.bss["target_pid"] = holder.pid
    with guard.struct_ops["guard_policy"].attach(cgroup=top):
        allocator = hogs(cgroups("top/alloc"), 64)
        assert sigkilled(holder.wait_dead())
        allocator.stop()
    assert guard_attempts(guard)[0] == (0, True)
    assert killed_pids(kernel_log)[0] == (holder.pid, "bpfoom guard")


def test_an_exited_task_is_refused(guard, m, hogs, kernel_log):
    zombie = zombie_in(m)
    try:
        oom_with_guard(guard, m, hogs, kernel_log, MODE_KILL, zombie.pid)
        assert_refused(guard, errno.ESRCH)
    finally:
        zombie.wait()


def test_a_vfork_child_is_refused(guard, m, hogs, kernel_log, tmp_path):
    """Killing it frees nothing (it shares its parent's mm) and would take the parent along."""
    pair = vfork_pair_in(m, 4, tmp_path)
    try:
        kills = oom_with_guard(guard, m, hogs, kernel_log, MODE_KILL, pair.child_pid)
        assert_refused(guard, errno.EPERM)
        assert pair.alive, "the vfork child or its parent died"
        assert not {pair.proc.pid, pair.child_pid} & {pid for pid, _ in kills}
    finally:
        pair.stop()


@pytest.mark.parametrize("who", ["init", "kthreadd", "oom_score_adj -1000"])
def test_unkillable_tasks_are_refused(guard, m, hogs, kernel_log, who):
    if who == "oom_score_adj -1000":
        protected = hogs(m, 4, oom_score_adj=-1000)
        assert protected.wait_for("allocated")
        target = protected.pid
    else:
        target = 1 if who == "init" else 2
    oom_with_guard(guard, m, hogs, kernel_log, MODE_KILL, target)
    assert_refused(guard, errno.EPERM)


def test_an_oom_victim_is_not_killed_twice(guard, m, hogs, kernel_log):
    """The second kill of the same task in one handler call is refused (-EALREADY)."""
    holder = hogs(m, 16)
    assert holder.wait_for("allocated")
    guard.bss["mode"] = MODE_KILL_TWICE
    guard.bss["target_pid"] = holder.pid
    with guard.struct_ops["guard_policy"].attach(cgroup=m):
        allocator = hogs(m, 24, gated=True)
        allocator.release()
        assert sigkilled(holder.wait_dead())
        assert allocator.wait_for("allocated"), "one kill freed enough, yet the allocator died"
    assert guard_attempts(guard)[:2] == [(0, True), (-errno.EALREADY, True)]
    assert [pid for pid, _ in killed_pids(kernel_log)] == [holder.pid]
    assert memory_events(m)["oom_kill"] == 1


def test_the_kill_message_cannot_forge_log_records(guard, m, hogs, kernel_log):
    holder = hogs(m, 16)
    assert holder.wait_for("allocated")
    guard.bss["mode"] = MODE_KILL
    guard.bss["target_pid"] = holder.pid
    guard.bss["evil_message"] = True
    with guard.struct_ops["guard_policy"].attach(cgroup=m):
        allocator = hogs(m, 24, gated=True)
        allocator.release()
        assert sigkilled(holder.wait_dead())
    lines = kernel_log.lines()
    assert not [line for line in lines if line.startswith("bpfoom-injected-record")], \
        "the policy's message started a kernel log record of its own"
    assert f"bpfoom guard?bpfoom-injected-record: Killed process {holder.pid} " in "\n".join(lines)


# -- no livelock --------------------------------------------------------------------

def test_a_policy_that_kills_a_zombie_and_claims_success_cannot_livelock(guard, m, hogs,
                                                                         kernel_log):
    """Issue 16's livelock: 16,555 handler calls in 15 s with the allocator stuck."""
    zombie = zombie_in(m)
    try:
        oom_with_guard(guard, m, hogs, kernel_log, MODE_KILL_CLAIM, zombie.pid)
    finally:
        zombie.wait()
    assert_refused(guard, errno.ESRCH)
    # One call, then the kernel's killer: the claim was not believed.
    assert guard.bss["calls"] <= 2, guard.bss["calls"]


def test_a_policy_that_always_claims_success_cannot_livelock(guard, m, hogs, kernel_log):
    oom_with_guard(guard, m, hogs, kernel_log, MODE_CLAIM, 0)
    assert guard.bss["attempts"] == 0
    assert guard.bss["calls"] <= 2, guard.bss["calls"]


def test_a_runaway_policy_on_the_machine_cannot_reach_a_memcg_oom_outside(guard, cgroups, hogs,
                                                                         kernel_log):
    """A system-wide policy asked about a memcg OOM is confined to that memcg too."""
    m = cgroups("m2", memory_max="32M")
    outside = cgroups("outside")
    bystander = hogs(outside, 4)
    assert bystander.wait_for("allocated")
    guard.bss["mode"] = MODE_KILL
    guard.bss["target_pid"] = bystander.pid
    with guard.struct_ops["guard_policy"].attach():
        allocator = hogs(m, 64)
        assert sigkilled(allocator.wait_dead())
    assert_refused(guard, errno.EACCES)
    assert bystander.alive
    assert bystander.pid not in [pid for pid, _ in killed_pids(kernel_log)]
