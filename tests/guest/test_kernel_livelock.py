"""The livelock bound holds per domain (issue 22, defect 4, second half).

After 8 OOMs of one domain that policies ended with a kill while no OOM
victim finished exiting, the kernel's killer decides that domain's next OOM.
The count used to be one for the whole machine and was reset by an OOM of
any other domain: two cgroups OOMing in turn never reached the bound, and
their policies were asked forever.

Victims that never exit are tasks stuck in a FUSE request nobody answers
(stucktasks.py): the OOM reaper frees their memory, so each kill ends its
OOM, but none of them finishes exit_mm().  Each step OOMs one cgroup with an
allocator the kernel's killer may not take (oom_score_adj -1000), a little
over the limit, so that one kill lets it through; the cgroups take turns.
Each cgroup's guard policy kills the next stuck task of its own cgroup.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from kerneltest import MODE_KILL, open_guard
from oomtest import Forker, killed_pids
from stucktasks import StuckTasks, UnansweredFuse, sigkill_pending

BOUND = 8  # BPF_OOM_MAX_UNRESOLVED
STEPS = BOUND + 1  # OOMs per cgroup: the last one is past the bound
STUCK, STUCK_MIB = STEPS + 2, 8
LIMIT_MIB = 128
OVER_MIB = 3  # the allocator's overshoot: one stuck task's memory covers it
KERNEL_REASON = "Memory cgroup out of memory"
POLICY_REASON = "bpfoom guard"
HUNG_TASK_TIMEOUT = Path("/proc/sys/kernel/hung_task_timeout_secs")


@pytest.fixture
def no_hung_task_check():
    """Killed stuck tasks stay in D state for the whole test: the lockdep kernel would panic."""
    saved = HUNG_TASK_TIMEOUT.read_text() if HUNG_TASK_TIMEOUT.exists() else None
    if saved is not None:
        HUNG_TASK_TIMEOUT.write_text("0")
    yield
    if saved is not None:
        HUNG_TASK_TIMEOUT.write_text(saved)


def over_the_limit(cg) -> int:
    """MiB that take `cg` OVER_MIB past its memory.max from where it is now."""
    room = LIMIT_MIB * 2**20 - int(cg.read("memory.current"))
    return max(0, -(-room // 2**20)) + OVER_MIB


def test_two_domains_in_turn_each_reach_the_bound(cgroups, kernel_log, tmp_path,
                                                   no_hung_task_check):
    mountpoint = tmp_path / "stuck"
    mountpoint.mkdir()
    names = ("a", "b")
    groups = {name: cgroups(f"livelock-{name}", memory_max=f"{LIMIT_MIB}M") for name in names}
    fuse = UnansweredFuse(mountpoint)
    stuck: dict[str, StuckTasks] = {}
    guards = {name: open_guard(mode=MODE_KILL) for name in names}
    forkers = {name: Forker(groups[name], oom_score_adj=-1000) for name in names}
    try:
        for name in names:
            stuck[name] = StuckTasks(groups[name], fuse, STUCK, STUCK_MIB)
        calls = {name: [] for name in names}
        with guards["a"].struct_ops["guard_policy"].attach(cgroup=groups["a"]), \
                guards["b"].struct_ops["guard_policy"].attach(cgroup=groups["b"]):
            for step in range(STEPS):
                for name in names:
                    guard = guards[name]
                    guard.bss["target_pid"] = stuck[name].pids[step]
                    before = guard.bss["calls"]
                    _, code = forkers[name].allocate(over_the_limit(groups[name]), timeout=180)
                    assert code == 0, f"{name}'s allocator of step {step + 1} ended with {code}"
                    calls[name].append(guard.bss["calls"] - before)
        kills = killed_pids(kernel_log)
        for name in names:
            pids = stuck[name].pids
            reasons = [reason for pid, reason in kills if pid in pids]
            assert calls[name] == [1] * BOUND + [0], \
                f"{name}'s policy calls per OOM: {calls[name]}; kills: {reasons}"
            assert reasons == [POLICY_REASON] * BOUND + [KERNEL_REASON], reasons
            assert sum(sigkill_pending(pid) for pid in pids) == STEPS  # none of them exited
    finally:
        fuse.close()
        for tasks in stuck.values():
            tasks.close()
        for name in names:
            forkers[name].close()
            guards[name].close()
