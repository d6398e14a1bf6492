"""Explicit attach calls: the target named at run time, each seen running in the kernel.

tests/bpf/trace/attach_kinds.bpf.o has one program per call, with no target
in its section, each counting what this thread (or a cgroup) does; a counter
that moves while the link exists and stops once it is closed proves the
kernel ran the program there, and bpfoom.links() shows the link come and go.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import bpfoom
import facts
from conftest import require

pytestmark = pytest.mark.usefixtures("bpf_privileges")


@pytest.fixture
def obj() -> Iterator[bpfoom.BpfObject]:
    with bpfoom.BpfObject.open(facts.ATTACH_KINDS_OBJECT) as opened:
        opened.rodata["target_tid"] = threading.get_native_id()
        opened.load()
        yield opened


def link_ids() -> set[int]:
    return {info.id for info in bpfoom.links()}


def require_tracefs() -> None:
    require((facts.TRACEFS / "events").is_dir(),
            f"needs tracefs mounted at {facts.TRACEFS} (mount -t tracefs nodev {facts.TRACEFS})")


def kprobes_available() -> bool:
    return Path("/sys/bus/event_source/devices/kprobe").is_dir() or \
        (facts.TRACEFS / "kprobe_events").exists()


def counts_only_while_attached(obj: bpfoom.BpfObject, link: bpfoom.Link, counter: str,
                               trigger) -> None:
    """``counter`` moves with ``trigger`` while ``link`` exists, the link is listed, then both stop."""
    with link:
        assert link.id in link_ids()
        before = obj.bss[counter]
        for _ in range(10):
            trigger()
        assert obj.bss[counter] >= before + 10
    assert link.closed and link.id not in link_ids()
    stopped = obj.bss[counter]
    for _ in range(10):
        trigger()
    assert obj.bss[counter] == stopped


def test_tracepoint_counts_while_attached(obj):
    require_tracefs()
    link = obj.programs["count_tracepoint"].attach_tracepoint("raw_syscalls", "sys_enter")
    assert link.info().type == "perf_event"
    counts_only_while_attached(obj, link, "tracepoint_hits", os.getppid)


def test_tracepoint_oom_mark_victim_attaches_and_detaches(obj):
    require_tracefs()
    with obj.programs["count_tracepoint"].attach_tracepoint("oom", "mark_victim") as link:
        assert link.info().prog_id == obj.programs["count_tracepoint"].id
        assert "oom:mark_victim" in repr(link)
    assert link.id not in link_ids()


def test_missing_tracepoint_raises_not_found_and_attaches_nothing(obj):
    require_tracefs()
    before = link_ids()
    with pytest.raises(bpfoom.NotFoundError, match="tracepoint") as caught:
        obj.programs["count_tracepoint"].attach_tracepoint("oom", "no_such_event")
    assert caught.value.errno == 2
    assert link_ids() == before


def test_raw_tracepoint_counts_while_attached(obj):
    link = obj.programs["count_raw_tracepoint"].attach_raw_tracepoint("sys_enter")
    assert link.info().type == "raw_tracepoint"
    counts_only_while_attached(obj, link, "raw_tracepoint_hits", os.getppid)


def test_missing_raw_tracepoint_raises_not_found_and_attaches_nothing(obj):
    before = link_ids()
    with pytest.raises(bpfoom.NotFoundError):
        obj.programs["count_raw_tracepoint"].attach_raw_tracepoint("no_such_tracepoint")
    assert link_ids() == before


def test_kprobe_and_kretprobe_count_while_attached(obj):
    require(kprobes_available(), "needs kprobes (CONFIG_KPROBES: the kprobe PMU or kprobe_events)")
    access = lambda: os.access("/", os.R_OK)  # noqa: E731 - do_faccessat
    counts_only_while_attached(obj, obj.programs["count_kprobe"].attach_kprobe("do_faccessat"),
                               "kprobe_hits", access)
    counts_only_while_attached(obj, obj.programs["count_kretprobe"].attach_kretprobe("do_faccessat"),
                               "kretprobe_hits", access)


def test_kprobe_without_kernel_kprobes_is_not_supported_and_attaches_nothing(obj):
    require(not kprobes_available(), "needs a kernel without kprobes (this one has them)")
    before = link_ids()
    with pytest.raises(bpfoom.NotSupportedError, match="CONFIG_KPROBES"):
        obj.programs["count_kprobe"].attach_kprobe("do_faccessat")
    assert link_ids() == before


def test_kprobe_on_missing_function_raises_and_attaches_nothing(obj):
    require(kprobes_available(), "needs kprobes (CONFIG_KPROBES: the kprobe PMU or kprobe_events)")
    before = link_ids()
    with pytest.raises(bpfoom.BpfError, match="no_such_function_bpfoom"):
        obj.programs["count_kprobe"].attach_kprobe("no_such_function_bpfoom")
    assert link_ids() == before


def socket_in(cgroup: Path) -> None:
    """Make one socket from a child process placed in ``cgroup`` first."""
    child = subprocess.Popen([sys.executable, "-c", "import socket, sys; sys.stdin.read(1); "
                              "socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close()"],
                             stdin=subprocess.PIPE)
    try:
        (cgroup / "cgroup.procs").write_text(str(child.pid))
        child.communicate(b"x", timeout=60)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == 0


def test_cgroup_program_counts_sockets_made_in_the_cgroup(obj, cgroup2_dir):
    program = obj.programs["count_socket"]
    with program.attach_cgroup(cgroup2_dir) as link:
        info = link.info()
        assert info.type == "cgroup" and info.attach_type == "cgroup_inet_sock_create"
        assert info.cgroup_id == bpfoom.Cgroup.id_of(cgroup2_dir)
        socket.socket().close()  # this process is not in the cgroup: not counted
        assert obj.bss["sockets_created"] == 0
        socket_in(cgroup2_dir)
        assert obj.bss["sockets_created"] == 1
    assert link.id not in link_ids()
    socket_in(cgroup2_dir)
    assert obj.bss["sockets_created"] == 1


def test_cgroup_attach_by_id_and_to_a_missing_path(obj, cgroup2_dir):
    program = obj.programs["count_socket"]
    with program.attach_cgroup(bpfoom.Cgroup.id_of(cgroup2_dir)) as link:
        assert link.info().cgroup_id == bpfoom.Cgroup.id_of(cgroup2_dir)
    before = link_ids()
    with pytest.raises(bpfoom.PathNotFoundError):
        program.attach_cgroup(cgroup2_dir / "missing")
    with pytest.raises(TypeError):
        program.attach_cgroup(1.5)  # type: ignore[arg-type]
    assert link_ids() == before


def test_task_iterator_runs_once_per_walk(obj):
    with obj.programs["count_tasks"].attach_iter() as link:
        assert link.info().type == "iter"
        assert obj.bss["tasks_seen"] == 0
        link.read()
        assert obj.bss["tasks_seen"] > 0
    assert link.id not in link_ids()


def test_wrong_program_kind_is_refused_before_the_kernel(obj):
    before = link_ids()
    with pytest.raises(bpfoom.StateError, match="kprobe program"):
        obj.programs["count_kprobe"].attach_tracepoint("oom", "mark_victim")
    root = facts.CGROUP2_ROOT if facts.is_mountpoint_of(facts.CGROUP2_ROOT, "cgroup2") \
        else Path("/sys/fs/cgroup")  # the guest mounts cgroup2 there
    with pytest.raises(bpfoom.StateError, match="as a cgroup"):
        obj.programs["count_tracepoint"].attach_cgroup(root)
    with pytest.raises(TypeError):
        obj.programs["count_raw_tracepoint"].attach_raw_tracepoint(b"sys_enter")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        obj.programs["count_tracepoint"].attach_tracepoint("oom", "")
    assert link_ids() == before


def test_attach_before_load_is_a_state_error():
    with bpfoom.BpfObject.open(facts.ATTACH_KINDS_OBJECT) as unloaded:
        with pytest.raises(bpfoom.StateError):
            unloaded.programs["count_raw_tracepoint"].attach_raw_tracepoint("sys_enter")
