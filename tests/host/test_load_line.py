"""load() is the line between what can change (before) and what can be used (after).

Every misuse across the line is a StateError with errno EBADFD and a sentence
saying what to do, and it changes nothing: the kernel (or libbpf's image)
still shows the old value.
"""
from __future__ import annotations

import errno

import pytest

import bpfoom
import facts

pytestmark = pytest.mark.usefixtures("bpf_privileges")


def refused(action, *, says: str) -> bpfoom.StateError:
    with pytest.raises(bpfoom.StateError) as caught:
        action()
    error = caught.value
    assert error.errno == errno.EBADFD, error
    assert says in str(error), error
    assert "load()" in str(error), error
    return error


@pytest.fixture
def opened():
    with bpfoom.BpfObject.open(facts.GLOBALS_OBJECT) as obj:
        yield obj


@pytest.fixture
def loaded(opened):
    opened.load()
    return opened


def assign(mapping, key, value):
    return lambda: mapping.__setitem__(key, value)


def test_rodata_after_load(loaded):
    refused(assign(loaded.rodata, "ro_u32", 5), says="before load()")
    assert loaded.rodata["ro_u32"] == 32


def test_rodata_map_written_directly_after_load(loaded):
    rodata_map = loaded.maps["globals.rodata"]
    before = rodata_map[0]
    refused(assign(rodata_map, 0, before), says="obj.rodata")
    assert rodata_map[0] == before


def test_global_maps_written_directly_before_load(opened):
    refused(assign(opened.maps["globals.data"], 0, b"\0" * opened.maps["globals.data"].value_size),
            says="obj.rodata/.data/.bss")


def test_max_entries_after_load(loaded):
    counts = loaded.maps["counts"]
    refused(lambda: setattr(counts, "max_entries", 128), says="before load()")
    assert counts.max_entries == 64 and counts.info().max_entries == 64


def test_autoload_after_load(loaded):
    program = loaded.programs["mirror_globals"]
    refused(lambda: setattr(program, "autoload", False), says="before load()")
    assert program.autoload and program.fd >= 0


def test_second_load(loaded):
    refused(loaded.load, says="already loaded")
    assert loaded.state == "loaded"


@pytest.mark.parametrize("use", [
    lambda m: m[1], lambda m: m.__setitem__(1, 2), lambda m: m.__delitem__(1),
    lambda m: m.keys(), lambda m: m.fd, lambda m: m.info(), lambda m: m.id,
    lambda m: bpfoom.RingBuffer(m, print),
], ids=["read", "write", "delete", "keys", "fd", "info", "id", "ring_buffer"])
def test_map_use_before_load(opened, use):
    refused(lambda: use(opened.maps["counts"]), says="call load() first")


@pytest.mark.parametrize("use", [lambda p: p.fd, lambda p: p.id, lambda p: p.attach()],
                         ids=["fd", "id", "attach"])
def test_program_use_before_load(opened, use):
    refused(lambda: use(opened.programs["mirror_globals"]), says="call load() first")


def test_unloaded_program_is_a_state_error(opened):
    opened.programs["mirror_globals"].autoload = False
    opened.load()
    refused(lambda: opened.programs["mirror_globals"].fd, says="set autoload before load()")


def test_struct_ops_fields_after_load_and_attach_before(demo):
    refused(demo.ops.attach, says="call load() first")
    demo.obj.load()
    refused(assign(demo.ops.fields, "name", "other"), says="before load()")
    assert demo.ops.fields["name"] == demo.first
    assert demo.first not in facts.available_congestion_control()


def test_struct_ops_programs_is_read_only(demo):
    with pytest.raises(TypeError):
        demo.ops.programs["init"] = "demo_init"  # a copy would have ignored this silently
