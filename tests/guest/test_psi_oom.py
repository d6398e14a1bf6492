"""bpf_out_of_memory() from a PSI handler (patch 0008): the spec's PSI reference scenario,
the memcg's bpf_oom_ops choosing first, -EBUSY on a held oom_lock, -EINVAL for bad
arguments, and a system-wide declared OOM."""
from __future__ import annotations

import errno
import threading


import bpfoom
from oomtest import await_oom_report_window
from oomtest import (BPF_OOM_FLAGS_LAST, BPF_PSI_FULL, KILL_PID, PSI_CPU, PSI_IO, PSI_MEM,
                     Forker, Trigger, killed_pids, memory_events, open_psi_probe,
                     psi_oom_returns, psi_records, recorded_calls, set_action, sigkilled,
                     wait_until)

EVENT_TIMEOUT_S = 60.0
# x86's MAX_PAGE_ORDER is 10
BAD_ORDER = 11


def declare_on_events(obj: bpfoom.BpfObject, *, budget: int = 1, cgroup: bpfoom.Cgroup | None = None,
                      flags: int = 0, order: int = 0) -> None:
    """Let psi_probe's next `budget` events declare an OOM (in `cgroup`'s memcg, or system-wide)."""
    obj.bss["oom_system"] = cgroup is None
    obj.bss["oom_cgroup_id"] = cgroup.id if cgroup is not None else 0
    obj.bss["oom_flags"] = flags
    obj.bss["oom_order"] = order
    obj.bss["oom_budget"] = budget


def constraint_lines(kernel_log) -> list[str]:
    return [line for line in kernel_log.lines() if line.startswith("oom-kill:constraint=")]


def test_psi_reference_scenario(cgroups, hogs, kernel_log):
    """Spec section 6, PSI: a thrashing child is OOM-killed on a PSI event."""
    await_oom_report_window()  # the report lines read below are rate-limited
    parent = cgroups("psi-ref")
    hungry = cgroups("psi-ref/hungry")
    other = bpfoom.Cgroup.create(parent.path / "other")
    other_id = other.id
    hungry.write("memory.high", "30M")
    hog = hogs(hungry, 200, gated=True)
    hungry.write("cgroup.freeze", "1")
    wait_until(lambda: "frozen 1" in hungry.read("cgroup.events"), 30, "the hungry cgroup to freeze")
    hog.release()  # read once thawed
    obj = open_psi_probe(Trigger(hungry.id, PSI_MEM | BPF_PSI_FULL, 100_000, 1_000_000),
                         Trigger(other_id, PSI_IO, 100_000, 1_000_000),
                         constraint="CONSTRAINT_BPF_PSI_MEM")
    try:
        declare_on_events(obj, cgroup=hungry)
        with obj.struct_ops["psi_probe"].attach():
            assert list(obj.bss["create_rets"][:2]) == [0, 0]
            other.remove()
            wait_until(lambda: other_id in psi_records(obj, "offline"), 30,
                       "handle_cgroup_offline for the deleted cgroup")
            hungry.write("cgroup.freeze", "0")
            assert sigkilled(hog.wait_dead())
            wait_until(lambda: psi_oom_returns(obj), 30, "bpf_out_of_memory to return")
            assert psi_oom_returns(obj) == [1]
        assert hungry.id in psi_records(obj, "event")
        assert memory_events(hungry)["oom_kill"] == 1
        assert killed_pids(kernel_log)[0][0] == hog.pid
        assert constraint_lines(kernel_log)[0].startswith(
            "oom-kill:constraint=CONSTRAINT_BPF_PSI_MEM,")
    finally:
        other.close()
        obj.close()


def test_memcg_policy_chooses_first(cgroups, hogs, probe, kernel_log):
    """The declared OOM goes through the memcg's bpf_oom_ops before the kernel's killer."""
    await_oom_report_window()  # the report lines read below are rate-limited
    hungry = cgroups("psi-policy")
    hungry.write("memory.high", "30M")
    hog = hogs(hungry, 200)
    set_action(probe, hungry.id, KILL_PID, hog.pid)
    obj = open_psi_probe(Trigger(hungry.id, PSI_MEM | BPF_PSI_FULL, 100_000, 1_000_000),
                         constraint="bpfoom_psi_first")
    try:
        declare_on_events(obj, cgroup=hungry)
        with probe.struct_ops["probe_policy"].attach(cgroup=hungry), \
                obj.struct_ops["psi_probe"].attach():
            assert sigkilled(hog.wait_dead())
            wait_until(lambda: psi_oom_returns(obj), 30, "bpf_out_of_memory to return")
            assert psi_oom_returns(obj) == [1]
        assert recorded_calls(probe)[0] == (hungry.id, hungry.id)
        assert probe.bss["kills"] == 1
        assert "oom_policy=bpfoom_probe" in kernel_log.lines()
        assert constraint_lines(kernel_log)[0].startswith("oom-kill:constraint=bpfoom_psi_first,")
        assert memory_events(hungry)["oom_kill"] == 1
    finally:
        obj.close()


def test_busy_while_another_oom_holds_the_lock(cgroups, probe, cpu_burners):
    """Without BPF_OOM_FLAGS_WAIT_ON_OOM_LOCK a declared OOM does not wait for a running one."""
    spinning = cgroups("psi-busy-spin", memory_max="32M")
    target = cgroups("psi-busy-target")  # empty: a declared OOM there kills nothing
    # Each OOM in `spinning` holds oom_lock while its policy spins, then the kernel kills.
    probe.bss["handler_spin_loops"] = 1 << 23
    obj = open_psi_probe(Trigger(0, PSI_CPU, 5_000, 100_000))
    forker = Forker(spinning)
    stop = threading.Event()

    def oom_again_and_again() -> None:
        while not stop.is_set():
            forker.allocate(64)

    thread = threading.Thread(target=oom_again_and_again)
    try:
        with probe.struct_ops["probe_policy"].attach(cgroup=spinning), \
                obj.struct_ops["psi_probe"].attach():
            cpu_burners(3)
            wait_until(lambda: obj.bss["events"] > 0, EVENT_TIMEOUT_S, "CPU pressure events")
            thread.start()
            wait_until(lambda: probe.bss["calls"] > 0, EVENT_TIMEOUT_S, "an OOM in the spinning cgroup")
            declare_on_events(obj, cgroup=target, budget=8)
            wait_until(lambda: len(psi_oom_returns(obj)) == 8, EVENT_TIMEOUT_S,
                       "8 declared OOMs")
            returns = psi_oom_returns(obj)
            assert -errno.EBUSY in returns, returns
            assert set(returns) <= {0, -errno.EBUSY}, returns
    finally:
        stop.set()
        if thread.is_alive():
            thread.join(timeout=120)
        forker.close()
        obj.close()


def test_bad_flags_and_order_are_einval(cgroups, cpu_burners):
    target = cgroups("psi-einval")
    obj = open_psi_probe(Trigger(0, PSI_CPU, 5_000, 100_000))
    try:
        with obj.struct_ops["psi_probe"].attach():
            cpu_burners(3)
            declare_on_events(obj, cgroup=target, flags=BPF_OOM_FLAGS_LAST)
            wait_until(lambda: len(psi_oom_returns(obj)) == 1, EVENT_TIMEOUT_S, "a declared OOM")
            declare_on_events(obj, cgroup=target, order=BAD_ORDER, budget=2)
            wait_until(lambda: len(psi_oom_returns(obj)) == 2, EVENT_TIMEOUT_S, "a declared OOM")
            declare_on_events(obj, cgroup=target, order=-1, budget=3)
            wait_until(lambda: len(psi_oom_returns(obj)) == 3, EVENT_TIMEOUT_S, "a declared OOM")
            assert psi_oom_returns(obj) == [-errno.EINVAL] * 3
    finally:
        obj.close()


def test_system_wide_declared_oom_kills(cgroups, hogs, cpu_burners, kernel_log):
    """A declared OOM with no memcg reaches the kernel's killer; default constraint text."""
    await_oom_report_window()  # the report lines read below are rate-limited
    victim_cg = cgroups("psi-system")
    victim = hogs(victim_cg, 64, oom_score_adj=1000)
    assert victim.wait_for("allocated")
    obj = open_psi_probe(Trigger(0, PSI_CPU, 5_000, 100_000))
    try:
        with obj.struct_ops["psi_probe"].attach():
            declare_on_events(obj)
            cpu_burners(3)
            assert sigkilled(victim.wait_dead())
            wait_until(lambda: psi_oom_returns(obj), 30, "bpf_out_of_memory to return")
            assert psi_oom_returns(obj) == [1]
        assert killed_pids(kernel_log)[0][0] == victim.pid
        assert constraint_lines(kernel_log)[0].startswith("oom-kill:constraint=CONSTRAINT_BPF,")
    finally:
        obj.close()
