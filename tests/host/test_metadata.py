"""What bpfoom reports about maps, programs and links is what the kernel says in /proc/self/fdinfo."""
from __future__ import annotations

import logging

import pytest

import bpfoom
import facts

pytestmark = pytest.mark.usefixtures("bpf_privileges")

BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_ARRAY = 1, 2
BPF_PROG_TYPE_SOCKET_FILTER, BPF_PROG_TYPE_STRUCT_OPS = 1, 27


def test_maps_match_their_fdinfo():
    with bpfoom.BpfObject.open(facts.GLOBALS_OBJECT) as obj:
        obj.load()
        for name, kernel_type in (("counts", BPF_MAP_TYPE_HASH), ("slots", BPF_MAP_TYPE_ARRAY)):
            found = obj.maps[name]
            kernel = facts.fdinfo(found.fd)
            assert int(kernel["map_id"]) == found.id == found.info().id
            assert int(kernel["map_type"]) == kernel_type
            assert int(kernel["key_size"]) == found.key_size
            assert int(kernel["value_size"]) == found.value_size
            assert int(kernel["max_entries"]) == found.max_entries


def test_programs_match_their_fdinfo():
    with bpfoom.BpfObject.open(facts.GLOBALS_OBJECT) as obj:
        obj.load()
        program = obj.programs["mirror_globals"]
        kernel = facts.fdinfo(program.fd)
        assert int(kernel["prog_id"]) == program.id
        assert int(kernel["prog_type"]) == BPF_PROG_TYPE_SOCKET_FILTER
        assert program.type == "socket_filter"
        assert program.section == "socket"


def test_struct_ops_link_matches_its_fdinfo(demo):
    demo.obj.load()
    assert int(facts.fdinfo(demo.obj.programs["demo_init"].fd)["prog_type"]) == BPF_PROG_TYPE_STRUCT_OPS
    with demo.ops.attach() as link:
        kernel = facts.fdinfo(link.fd)
        assert kernel["link_type"] == "struct_ops"
        assert int(kernel["link_id"]) == link.id == link.info().id
        assert int(kernel["map_id"]) == demo.ops.id == link.info().map_id


def test_object_name_prefixes_internal_maps_in_the_kernel():
    with bpfoom.BpfObject.open(facts.GLOBALS_OBJECT, name="probe") as obj:
        assert obj.name == "probe"
        obj.load()
        internal = [m for m in obj.maps if m.endswith(".bss")]
        assert internal == ["probe.bss"]
        assert obj.maps["probe.bss"].info().name == "probe.bss"  # the kernel's copy of the name


def test_autoload_off_loads_no_program():
    with bpfoom.BpfObject.open(facts.GLOBALS_OBJECT) as obj:
        program = obj.programs["mirror_globals"]
        assert program.autoload is True
        program.autoload = False
        obj.load()
        with pytest.raises(bpfoom.StateError):
            program.fd
        with pytest.raises(bpfoom.StateError):
            program.autoload = True
        assert not [t for t in facts.open_fds().values() if t == "anon_inode:bpf-prog"]


def test_libbpf_messages_reach_python_logging(caplog):
    with caplog.at_level(logging.DEBUG, logger="bpfoom.libbpf"):
        with bpfoom.BpfObject.open(facts.REJECTED_OBJECT) as obj:
            with pytest.raises(bpfoom.VerifierError):
                obj.load()
    from_libbpf = [r for r in caplog.records if r.name == "bpfoom.libbpf"]
    assert any(r.levelno >= logging.WARNING and "read_past_value" in r.getMessage() for r in from_libbpf)
