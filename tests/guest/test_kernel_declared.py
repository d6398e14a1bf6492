"""bpf_out_of_memory() corner cases (issue 16): the root memcg, panic_on_oom=2,
oom_kill_allocating_task, memory.events, the margin re-checked after waiting
for oom_lock.

psi_declare_init.bpf.c declares one OOM from its init(), i.e. synchronously
in the task that attaches it, so each test knows when the OOM happens and
who "allocated".  A hog with oom_score_adj 1000 is the kernel's choice
whenever the OOM is system-wide (the test runner has -1000).
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

import pytest

import bpfoom
from bpfoom.testing import MemoryHog, memory_events
from kerneltest import in_child
from oomtest import BPF_DIR, Forker, killed_pids, sigkilled, wait_until

# Busy iterations of oom_probe's handler (bpf_loop's most): it holds oom_lock
# for 130-190 ms under TCG, while a declaration starts within 15 ms.
LOCK_HOLD_LOOPS = 1 << 23
# Declarations tried before giving up on catching oom_lock held.
LOCK_HOLD_TRIES = 5


@pytest.fixture
def declare():
    obj = bpfoom.BpfObject.open(BPF_DIR / "psi_declare_init.bpf.o")
    obj.load()
    yield obj
    obj.close()


@pytest.fixture
def sysctl():
    """sysctl(name, value): set /proc/sys/vm/<name>, restored at the end."""
    saved: dict[Path, str] = {}

    def set_(name: str, value: str) -> None:
        path = Path("/proc/sys/vm") / name
        saved.setdefault(path, path.read_text())
        path.write_text(value)

    yield set_
    for path, value in saved.items():
        path.write_text(value)


def declare_oom(obj: bpfoom.BpfObject) -> int:
    """Attach (init() declares the OOM), detach; what bpf_out_of_memory returned."""
    with obj.struct_ops["psi_declare_init"].attach():
        pass
    assert obj.bss["declared"] == 1
    return obj.bss["ret"]


def test_the_root_memcg_means_a_system_wide_oom(declare, cgroups, hogs, kernel_log):
    """Before the fix the root memcg reached mem_cgroup_scan_tasks(), which BUG()s on it."""
    victim = hogs(cgroups("anywhere"), 16, oom_score_adj=1000)
    assert victim.wait_for("allocated")
    declare.bss["use_root"] = True
    assert declare_oom(declare) == 1
    assert sigkilled(victim.wait_dead())
    assert killed_pids(kernel_log)[0][0] == victim.pid


def test_a_declared_oom_is_counted_in_memory_events(declare, cgroups, hogs):
    m = cgroups("counted", memory_max="64M")
    victim = hogs(m, 8)
    assert victim.wait_for("allocated")
    before = memory_events(m)
    declare.bss["cgroup_id"] = m.id
    assert declare_oom(declare) == 1
    assert sigkilled(victim.wait_dead())
    after = memory_events(m)
    assert after["oom"] == before["oom"] + 1
    assert after["oom_kill"] == before["oom_kill"] + 1


def test_a_declared_oom_never_panics_through_panic_on_oom(declare, cgroups, hogs, sysctl):
    """panic_on_oom=2 panics for every real OOM, memcg ones included; not for a declared one."""
    m = cgroups("nopanic", memory_max="64M")
    victim = hogs(m, 8)
    assert victim.wait_for("allocated")
    sysctl("panic_on_oom", "2")
    declare.bss["cgroup_id"] = m.id
    assert declare_oom(declare) == 1
    assert sigkilled(victim.wait_dead())


def test_a_declared_oom_never_kills_the_declaring_task(declare, cgroups, hogs, sysctl, kernel_log):
    """oom_kill_allocating_task kills the allocating task; a declaring task allocated nothing."""
    victim = hogs(cgroups("elsewhere"), 16, oom_score_adj=1000)
    assert victim.wait_for("allocated")
    sysctl("oom_kill_allocating_task", "1")

    def attach_and_survive() -> int:
        with declare.struct_ops["psi_declare_init"].attach():
            pass
        return 0

    # The declaring child has oom_score_adj 0 and an mm: the allocating-task rule would pick it.
    assert in_child(attach_and_survive, oom_score_adj=0) == 0, "the declaring task was killed"
    assert declare.bss["ret"] == 1
    assert sigkilled(victim.wait_dead())
    assert [pid for pid, _ in killed_pids(kernel_log)] == [victim.pid]


def declare_while_oom_lock_is_held(declare: bpfoom.BpfObject, probe: bpfoom.BpfObject,
                                   spinning: bpfoom.Cgroup,
                                   make_target: Callable[[int], tuple[bpfoom.Cgroup, MemoryHog]]
                                   ) -> tuple[int, bpfoom.Cgroup, MemoryHog]:
    """Declare (with waiting) while an OOM in `spinning` holds oom_lock.

    oom_probe's handler spins under oom_lock in `spinning`'s OOM; the
    declaration, for a cgroup `make_target(try)` makes, starts once the
    handler runs.  Whether it really began inside the spin and returned after
    it is read from both programs' timestamps afterwards; if not (the spin
    ended first), again with a fresh target.  Returns what the kfunc
    answered, the target and its hog.
    """
    probe.bss["handler_spin_loops"] = LOCK_HOLD_LOOPS
    forker = Forker(spinning)
    try:
        with probe.struct_ops["probe_policy"].attach(cgroup=spinning):
            for attempt in range(LOCK_HOLD_TRIES):
                target, hog = make_target(attempt)
                declare.bss["cgroup_id"] = target.id
                declare.bss["declared"] = 0
                calls = probe.bss["calls"]
                oom = threading.Thread(target=forker.allocate, args=(64,))
                oom.start()
                try:
                    wait_until(lambda: probe.bss["calls"] > calls, 60, "the spinning OOM handler")
                    ret = declare_oom(declare)
                finally:
                    oom.join(timeout=120)
                start, end = declare.bss["start_ns"], declare.bss["end_ns"]
                made = probe.bss["calls"]
                spins = zip(probe.bss["spin_start_ns"][calls:made],
                            probe.bss["spin_end_ns"][calls:made])
                if any(s_start < start < s_end <= end for s_start, s_end in spins):
                    return ret, target, hog
    finally:
        forker.close()
    pytest.fail(f"no declaration out of {LOCK_HOLD_TRIES} started while oom_lock was held")


def test_a_declaration_that_waited_declares_nothing_once_the_memcg_has_room(
        declare, probe, cgroups, hogs):
    """The OOM it waited behind may have relieved it: re-checked like a charge's margin."""
    def roomy(attempt: int) -> tuple[bpfoom.Cgroup, MemoryHog]:
        cg = cgroups(f"roomy{attempt}", memory_max="64M")
        tenant = hogs(cg, 8)
        assert tenant.wait_for("allocated")
        return cg, tenant

    spinning = cgroups("spinning", memory_max="32M")
    ret, target, tenant = declare_while_oom_lock_is_held(declare, probe, spinning, roomy)
    assert ret == 0
    assert memory_events(target)["oom"] == 0
    assert tenant.alive


def test_a_declaration_that_waited_still_declares_for_a_memcg_above_memory_high(
        declare, probe, cgroups, hogs):
    """Room is measured below memory.high too: PSI handlers act on cgroups throttled there."""
    def throttled(attempt: int) -> tuple[bpfoom.Cgroup, MemoryHog]:
        cg = cgroups(f"throttled{attempt}")
        cg.write("memory.high", "16M")
        hog = hogs(cg, 64)
        wait_until(lambda: int(cg.read("memory.current")) >= 16 << 20, 60,
                   "the hog to reach memory.high")
        return cg, hog

    spinning = cgroups("spinning", memory_max="32M")
    ret, target, hog = declare_while_oom_lock_is_held(declare, probe, spinning, throttled)
    assert ret == 1
    assert memory_events(target)["oom"] == 1
    assert sigkilled(hog.wait_dead())


def test_a_constraint_text_the_verifier_cannot_bound_is_refused_at_load():
    """Issue 22, defect 7: the text was verified as one byte and up to 63 were copied.
    It is a constant string now (`__str`), checked to its NUL: a one-byte writable
    buffer is refused at load, not over-read at the OOM."""
    obj = bpfoom.BpfObject.open(BPF_DIR / "psi_declare_short_text.bpf.o")
    try:
        with pytest.raises(bpfoom.VerifierError) as caught:
            obj.load()
    finally:
        obj.close()
    # The constant-string check (check_arg_const_str()): a read-only map value only.
    assert "does not point to a readonly map" in (caught.value.log or "")
