"""bpf_out_of_memory() corner cases (issue 16): the root memcg, panic_on_oom=2,
oom_kill_allocating_task, memory.events.

psi_declare_init.bpf.c declares one OOM from its init(), i.e. synchronously
in the task that attaches it, so each test knows when the OOM happens and
who "allocated".  A hog with oom_score_adj 1000 is the kernel's choice
whenever the OOM is system-wide (the test runner has -1000).
"""
from __future__ import annotations

from pathlib import Path

import pytest

import bpfoom
from bpfoom.testing import memory_events
from kerneltest import in_child
from oomtest import BPF_DIR, killed_pids, sigkilled


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
