"""Tracing programs attached through Program.attach, and map sizes chosen before load.

tests/bpf/trace/count_calls.bpf.o counts the system calls of one thread
(tp_btf/sys_enter) and its faccessat calls (fentry), so a counter that
moves proves the kernel ran the attached program.
"""
from __future__ import annotations

import errno
import os
import threading

import pytest

import bpfoom
import facts
from conftest import require

pytestmark = pytest.mark.usefixtures("bpf_privileges")


def counter_object(*, fentry: bool) -> bpfoom.BpfObject:
    """count_calls loaded to count this thread; the fentry program only if asked."""
    obj = bpfoom.BpfObject.open(facts.COUNT_CALLS_OBJECT)
    obj.rodata["target_tid"] = threading.get_native_id()
    obj.programs["count_access"].autoload = fentry
    obj.programs["count_syscall"].autoload = not fentry
    try:
        obj.load()
    except bpfoom.PermissionDeniedError:
        obj.close()
        require(not fentry, "this kernel refuses fentry programs (EPERM at load)")
        raise
    return obj


def test_tp_btf_program_counts_while_attached_and_stops_when_closed():
    with counter_object(fentry=False) as obj:
        link = obj.programs["count_syscall"].attach()
        with link:
            info = link.info()
            assert info.type == "raw_tracepoint"
            assert info.prog_id == obj.programs["count_syscall"].id
            before = obj.bss["syscalls"]
            for _ in range(20):
                os.getppid()
            assert obj.bss["syscalls"] >= before + 20
            assert "tp_btf/sys_enter" in repr(link)
        assert link.closed
        stopped = obj.bss["syscalls"]
        for _ in range(20):
            os.getppid()
        assert obj.bss["syscalls"] == stopped


def test_fentry_program_counts_while_attached_and_stops_when_closed():
    with counter_object(fentry=True) as obj:
        with obj.programs["count_access"].attach() as link:
            assert link.info().type == "tracing"
            assert link.info().attach_type == "trace_fentry"
            for _ in range(5):
                os.access("/", os.R_OK)
            assert obj.bss["access_calls"] >= 5
        stopped = obj.bss["access_calls"]
        os.access("/", os.R_OK)
        assert obj.bss["access_calls"] == stopped


def test_links_lists_every_kind_of_link_and_filters_by_type():
    with counter_object(fentry=False) as obj:
        with obj.programs["count_syscall"].attach() as link:
            everything = {info.id: info for info in bpfoom.links()}
            assert everything[link.id].type == "raw_tracepoint"
            assert link.id in {info.id for info in bpfoom.links(type="raw_tracepoint")}
            assert link.id not in {info.id for info in bpfoom.links(type="struct_ops")}
            assert all(info.type == "struct_ops" for info in bpfoom.links(type="struct_ops"))


def test_pinned_tracing_link_stays_attached_after_close(bpffs_dir):
    with counter_object(fentry=False) as obj:
        link = obj.programs["count_syscall"].attach()
        link.pin(bpffs_dir / "counter")
        link.close()
        before = obj.bss["syscalls"]
        os.getppid()
        assert obj.bss["syscalls"] > before
        with bpfoom.Link.from_pinned(bpffs_dir / "counter") as pinned:
            pinned.unpin()
        stopped = obj.bss["syscalls"]
        os.getppid()
        assert obj.bss["syscalls"] == stopped


def test_attach_needs_a_loaded_program_and_refuses_struct_ops():
    with bpfoom.BpfObject.open(facts.COUNT_CALLS_OBJECT) as obj:
        with pytest.raises(bpfoom.StateError, match="before load"):
            obj.programs["count_syscall"].attach()
    with counter_object(fentry=False) as obj:
        with pytest.raises(bpfoom.StateError, match="autoload"):
            obj.programs["count_access"].attach()
    with bpfoom.BpfObject.open(facts.TCP_CC_OBJECT) as obj:
        obj.load()
        program = next(p for p in obj.programs.values() if p.type == "struct_ops")
        with pytest.raises(bpfoom.StateError, match="struct_ops map"):
            program.attach()


def test_ring_buffer_size_is_set_before_load():
    page = os.sysconf("SC_PAGE_SIZE")
    with bpfoom.BpfObject.open(facts.RINGBUF_OBJECT) as obj:
        events = obj.maps["events"]
        events.max_entries = 4 * page
        obj.load()
        assert events.info().max_entries == 4 * page
        with pytest.raises(bpfoom.StateError, match="before load"):
            events.max_entries = 8 * page


@pytest.mark.parametrize("size", [3 * 4096, 4096 + 1, 2048, 0, 1 << 32])
def test_bad_ring_buffer_size_is_refused(size):
    with bpfoom.BpfObject.open(facts.RINGBUF_OBJECT) as obj:
        with pytest.raises(bpfoom.InvalidValueError) as raised:
            obj.maps["events"].max_entries = size
        assert raised.value.errno == errno.EINVAL
        assert obj.maps["events"].max_entries == 4096
        with pytest.raises(TypeError):
            obj.maps["events"].max_entries = True


def test_hash_map_capacity_is_set_before_load():
    with bpfoom.BpfObject.open(facts.GLOBALS_OBJECT) as obj:
        counts = obj.maps["counts"]
        counts.max_entries = 7
        obj.load()
        assert counts.info().max_entries == 7
