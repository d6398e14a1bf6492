"""psi_guard: a PSI handler that declares an OOM in a cgroup under sustained memory
pressure, before its workload thrashes (and before memory.max is ever reached)."""
from __future__ import annotations

import pytest

import bpfoom
from oomtest import await_oom_report_window
from oomtest import killed_pids, memory_events, sigkilled, wait_until
from policytest import collect

MEMORY_HIGH = "16M"


def test_psi_guard_kills_a_thrashing_cgroup_and_leaves_an_idle_one(cgroups, hogs, kernel_log):
    await_oom_report_window()  # the report lines read below are rate-limited
    parent = cgroups("guarded")
    idle = cgroups("guarded/idle")
    sleeper = hogs(idle, 4)
    assert sleeper.wait_for("allocated")
    guard = bpfoom.PsiHandler.load("psi_guard", guarded_cgroups=[idle.id] + [0] * 15,  # 16 slots
                                   guard_children_of=parent.id)
    try:
        guard.attach()
        # Created after attach: guarded through handle_cgroup_online.
        hungry = cgroups("guarded/hungry")
        hungry.write("memory.high", MEMORY_HIGH)  # no swap: a hog above it stalls, never OOMs
        hog = hogs(hungry, 200, gated=True)
        hog.release()
        assert sigkilled(hog.wait_dead(timeout=120))
        events = collect(guard, lambda seen: any(e.action == "declared_oom" for e in seen))
        declared = next(e for e in events if e.action == "declared_oom")
        assert (declared.oom_cgroup_id, declared.reason, declared.error) == (
            hungry.id, "memory_pressure", None)
        assert killed_pids(kernel_log)[0][0] == hog.pid
        assert any(line.startswith("oom-kill:constraint=BPF_PSI_GUARD,")
                   for line in kernel_log.lines())
        wait_until(lambda: memory_events(hungry)["oom_kill"] == 1, what="the kill to be counted")
        assert memory_events(hungry)["max"] == 0  # memory.max (unlimited) was never hit
        events += list(guard.events(timeout=2))
        assert all(e.oom_cgroup_id != idle.id for e in events), [str(e) for e in events]
        assert sleeper.alive
        assert memory_events(idle)["oom_kill"] == 0
    finally:
        guard.detach()
        guard.close()


def test_psi_guard_declares_no_second_oom_in_its_quiet_period(cgroups, hogs):
    """Once an OOM it declared freed memory, the guard declines triggers for
    quiet_after_oom_ms: the stall a victim's exit leaves behind (in the arena, systemd
    tearing down a stopped session) is not a new shortage, and killed a second process."""
    parent = cgroups("quiet")
    guard = bpfoom.PsiHandler.load("psi_guard", guard_children_of=parent.id,
                                   quiet_after_oom_ms=600_000)
    try:
        guard.attach()
        hungry = cgroups("quiet/hungry")
        hungry.write("memory.high", MEMORY_HIGH)  # no swap: a hog above it stalls, never OOMs
        first = hogs(hungry, 200, gated=True)
        first.release()
        assert sigkilled(first.wait_dead(timeout=120))
        second = hogs(hungry, 200, gated=True)
        second.release()
        events = collect(guard, lambda seen: any(e.reason == "quiet_after_oom" for e in seen),
                         timeout=120)
        quiet = next(e for e in events if e.reason == "quiet_after_oom")
        assert (quiet.action, quiet.oom_cgroup_id) == ("declined", hungry.id)
        assert second.alive
        assert memory_events(hungry)["oom_kill"] == 1
    finally:
        guard.detach()
        guard.close()


def test_a_psi_handler_is_refused_a_cgroup_before_anything_attaches(cgroups):
    target = cgroups("psi_target")
    before = {a.link_id for a in bpfoom.attached()}
    with bpfoom.PsiHandler.load("psi_guard") as guard:
        with pytest.raises(bpfoom.InvalidValueError, match="only system-wide"):
            guard.attach(cgroup=target)
        assert guard.links == []
    assert {a.link_id for a in bpfoom.attached()} == before
