"""A broken or racing policy must never hang an OOM or leak kernel objects."""
from __future__ import annotations

import json
import shutil
import subprocess
import threading

import pytest

from oomtest import await_oom_report_window
from oomtest import (CLAIM_WITHOUT_KILL, KILL_CURRENT, link_ids, open_probe, policy_lines,
                     recorded_calls, set_action, sigkilled, wait_until)


def test_a_handler_that_claims_success_without_killing_still_ends_in_a_kill(
        probe, cgroups, hogs, kernel_log):
    await_oom_report_window()  # the report lines read below are rate-limited
    cg = cgroups("liar", memory_max="32M")
    with probe.struct_ops["probe_policy"].attach(cgroup=cg), probe.struct_ops["probe_policy"].attach():
        set_action(probe, cg.id, CLAIM_WITHOUT_KILL)
        set_action(probe, 0, CLAIM_WITHOUT_KILL)
        hog = hogs(cg, 96)
        assert sigkilled(hog.wait_dead())
    assert [ctx for ctx, _ in recorded_calls(probe)] == [cg.id, 0]
    assert policy_lines(kernel_log) == ["oom_policy=default"]


def test_detaching_while_ooms_run_is_safe(probe, cgroups, forker):
    """One thread attaches and detaches the policy in a loop while children OOM.

    Each handler spins a while, so detaches land while one runs (unreg waits
    for it through SRCU).  Each OOM ends in a SIGKILL either way (the
    policy's when attached, the kernel's when not); the kernel log is
    checked for splats.
    """
    cg = cgroups("racing", memory_max="16M")
    set_action(probe, cg.id, KILL_CURRENT)
    probe.bss["handler_spin_loops"] = 1 << 20  # keep each handler busy for a while
    ops = probe.struct_ops["probe_policy"]
    stop = threading.Event()
    cycles = [0]

    def flap() -> None:
        while not stop.is_set():
            with ops.attach(cgroup=cg):
                stop.wait(0.02)  # attached about half of the time
            cycles[0] += 1

    flapper = threading.Thread(target=flap)
    flapper.start()
    try:
        runner = forker(cg)
        statuses = [runner.allocate(48)[1] for _ in range(15)]
    finally:
        stop.set()
        flapper.join(timeout=60)
    assert not flapper.is_alive()
    assert all(sigkilled(status) for status in statuses), statuses
    assert cycles[0] > 0
    assert probe.bss["calls"] > 0, "no OOM reached the policy while it was attached"


def bpftool_ids(kind: str) -> set[int]:
    """Ids of all BPF maps or links in the kernel, as bpftool lists them."""
    tool = shutil.which("bpftool")
    if tool is None:
        pytest.fail("bpftool is missing; scripts/bootstrap installs it (Debian package bpftool)")
    out = subprocess.run([tool, "-j", kind, "list"], capture_output=True, text=True, check=True)
    return {entry["id"] for entry in json.loads(out.stdout or "[]")}


def test_many_attach_oom_detach_cycles_leak_nothing(cgroups, forker):
    cg = cgroups("cycles", memory_max="16M")
    maps_before, links_before = bpftool_ids("map"), link_ids()
    obj = open_probe()
    try:
        set_action(obj, cg.id, KILL_CURRENT)
        runner = forker(cg)
        ops = obj.struct_ops["probe_policy"]
        for cycle in range(100):
            with ops.attach(cgroup=cg):
                pid, status = runner.allocate(48)
                assert sigkilled(status), f"cycle {cycle}: child {pid} ended with {status}"
        assert obj.bss["kills"] == 100
        assert obj.bss["calls"] == 100
        assert link_ids() == links_before
    finally:
        obj.close()
    wait_until(lambda: bpftool_ids("map") <= maps_before, timeout=30,
               what="the policy's maps to be freed after close")
    assert link_ids() == links_before
