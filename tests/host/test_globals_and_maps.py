"""Global variables and maps round-trip through the kernel.

tests/bpf/globals.bpf.o holds globals of every kind in .rodata, .data and
.bss, a hash map and an array map, and a socket filter that copies what it
sees into them.  Attaching that filter to a UDP socket and sending one
datagram makes the kernel run it, so a test can prove the kernel saw the
values Python wrote (not just that Python reads back its own bytes).
"""
from __future__ import annotations

import errno
import socket

import pytest

import bpfoom
import facts

pytestmark = pytest.mark.usefixtures("bpf_privileges")

INITIAL_VALUES = [
    ("rodata", "ro_s8", -8), ("rodata", "ro_u8", 8),
    ("rodata", "ro_s16", -16), ("rodata", "ro_u16", 16),
    ("rodata", "ro_s32", -32), ("rodata", "ro_u32", 32),
    ("rodata", "ro_s64", -64), ("rodata", "ro_u64", 64),
    ("rodata", "ro_flag", True), ("rodata", "ro_color", 7),
    ("rodata", "ro_label", "rodata"), ("rodata", "ro_weights", [1, 2, 3, 4]),
    ("rodata", "ro_limits", {"low": 1, "high": -2, "enabled": True}),
    ("data", "data_s8", -9), ("data", "data_u8", 9),
    ("data", "data_s16", -17), ("data", "data_u16", 17),
    ("data", "data_s32", -33), ("data", "data_u32", 33),
    ("data", "data_s64", -65), ("data", "data_u64", 65),
    ("data", "data_flag", True), ("data", "data_color", 1),
    ("data", "data_label", "data"), ("data", "data_weights", [5, 6, 7]),
    ("data", "data_limits", {"low": 2, "high": -3, "enabled": True}),
    ("bss", "bss_s8", 0), ("bss", "bss_u8", 0), ("bss", "bss_s16", 0), ("bss", "bss_u16", 0),
    ("bss", "bss_s32", 0), ("bss", "bss_u32", 0), ("bss", "bss_s64", 0), ("bss", "bss_u64", 0),
    ("bss", "bss_flag", False), ("bss", "bss_color", 0), ("bss", "bss_label", ""),
    ("bss", "bss_weights", [0, 0]), ("bss", "bss_limits", {"low": 0, "high": 0, "enabled": False}),
]

# Extremes of each width and kind, written then read back.
ROUND_TRIPS = [
    ("rodata", "ro_s8", -128), ("rodata", "ro_s8", 127), ("rodata", "ro_u8", 255),
    ("rodata", "ro_s16", -32768), ("rodata", "ro_u16", 65535),
    ("rodata", "ro_s32", -2**31), ("rodata", "ro_u32", 2**32 - 1),
    ("rodata", "ro_s64", -2**63), ("rodata", "ro_u64", 2**64 - 1),
    ("rodata", "ro_flag", False), ("rodata", "ro_color", 1),
    ("rodata", "ro_label", "fifteen-chars!!"), ("rodata", "ro_weights", [9, 8, 7, 6]),
    ("rodata", "ro_limits", {"low": 7, "high": -2**63, "enabled": False}),
    ("data", "data_label", "x"), ("data", "data_weights", [0, 2**32 - 1, 3]),
    ("bss", "bss_s64", 2**63 - 1), ("bss", "bss_label", "seven.."),
    ("bss", "bss_limits", {"low": 2**32 - 1, "high": 5, "enabled": True}),
]

OUT_OF_RANGE = [
    ("rodata", "ro_s8", -129), ("rodata", "ro_s8", 128), ("rodata", "ro_u8", 256),
    ("rodata", "ro_u8", -1), ("rodata", "ro_u16", 65536), ("rodata", "ro_s32", 2**31),
    ("rodata", "ro_u32", 2**32), ("rodata", "ro_u64", 2**64), ("rodata", "ro_s64", -2**63 - 1),
    ("rodata", "ro_label", "sixteen-chars!!!"),  # no room for the NUL
    ("rodata", "ro_weights", [1, 2, 3]), ("rodata", "ro_weights", [1, 2, 3, 2**32]),
    ("rodata", "ro_limits", {"low": 1, "high": 2, "enabled": True, "x": 1}),
    ("rodata", "ro_limits", {"low": 5, "high": 2**63}),  # a bad member must not leave "low" written
    ("data", "data_u8", 300), ("bss", "bss_label", "eight..."),
]


@pytest.fixture
def globals_object():
    obj = bpfoom.BpfObject.open(facts.GLOBALS_OBJECT)
    yield obj
    obj.close()


def section(obj, name):
    return getattr(obj, name)


def run_filter_once(obj) -> None:
    """Make the kernel run mirror_globals once: attach it to a UDP socket and receive one datagram."""
    program = obj.programs["mirror_globals"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        receiver.bind(("127.0.0.1", 0))
        receiver.setsockopt(socket.SOL_SOCKET, facts.SO_ATTACH_BPF, program.fd)
        receiver.settimeout(5)
        sender.sendto(b"ping", receiver.getsockname())
        assert receiver.recv(16) == b"ping"  # the filter ran before the datagram was queued


@pytest.mark.parametrize("section_name,variable,expected", INITIAL_VALUES)
def test_initial_values_decode_from_btf(globals_object, section_name, variable, expected):
    assert section(globals_object, section_name)[variable] == expected


@pytest.mark.parametrize("section_name,variable,value", ROUND_TRIPS)
def test_values_written_before_load_are_in_the_kernel_map(globals_object, section_name, variable, value):
    section(globals_object, section_name)[variable] = value
    assert section(globals_object, section_name)[variable] == value
    globals_object.load()
    # After load the section is the kernel map's own memory, mapped into this process.
    assert section(globals_object, section_name)[variable] == value


def test_the_kernel_map_holds_the_section_bytes(globals_object):
    """The syscall view of .rodata (BPF_MAP_LOOKUP_ELEM) changes with what Python wrote."""
    with bpfoom.BpfObject.open(facts.GLOBALS_OBJECT) as untouched:
        untouched.load()
        default_bytes = untouched.maps["globals.rodata"][0]
    globals_object.rodata["ro_u64"] = 0x1122334455667788
    globals_object.load()
    written_bytes = globals_object.maps["globals.rodata"][0]
    assert len(written_bytes) == len(default_bytes)
    assert (0x1122334455667788).to_bytes(8, "little") in written_bytes
    assert (0x1122334455667788).to_bytes(8, "little") not in default_bytes


@pytest.mark.parametrize("section_name,variable,value", OUT_OF_RANGE)
def test_bad_values_are_refused_before_reaching_the_kernel(globals_object, section_name, variable, value):
    sec = section(globals_object, section_name)
    before = sec[variable]
    with pytest.raises(bpfoom.InvalidValueError) as caught:
        sec[variable] = value
    assert caught.value.errno == errno.EINVAL
    assert variable in str(caught.value)
    assert sec[variable] == before


def test_struct_members_can_be_written_alone(globals_object):
    globals_object.rodata["ro_limits"] = {"high": 99}
    globals_object.load()
    assert globals_object.rodata["ro_limits"] == {"low": 1, "high": 99, "enabled": True}


def test_enums_accept_their_names(globals_object):
    globals_object.data["data_color"] = "COLOR_BLUE"
    globals_object.load()
    assert globals_object.data["data_color"] == 7


def test_unsigned_enum_values_past_int_max_fit(globals_object):
    """BTF enums are unsigned unless kflag says signed: 0x80000000u is BIG, not -2**31."""
    globals_object.data["data_big"] = "BIG"
    globals_object.data["data_neg"] = "POS"
    globals_object.load()
    assert globals_object.data["data_big"] == 0x80000000
    assert globals_object.data["data_big"].name == "BIG"
    globals_object.data["data_neg"] = "NEG"
    assert globals_object.data["data_neg"] == -2


@pytest.mark.parametrize("variable,value", [("ro_u32", "12"), ("ro_u32", 1.5), ("ro_u32", None),
                                            ("ro_flag", "yes"),
                                            ("ro_label", 7), ("ro_weights", "1234"),
                                            ("ro_limits", [1, 2, 3])])
def test_a_value_of_the_wrong_type_is_a_type_error(globals_object, variable, value):
    before = globals_object.rodata[variable]
    with pytest.raises(bpfoom.InvalidTypeError) as caught:
        globals_object.rodata[variable] = value
    assert isinstance(caught.value, TypeError) and not isinstance(caught.value, ValueError)
    assert caught.value.errno == errno.EINVAL and variable in str(caught.value)
    assert globals_object.rodata[variable] == before


def test_char_arrays_accept_bytes(globals_object):
    globals_object.rodata["ro_label"] = b"raw"
    globals_object.load()
    assert globals_object.rodata["ro_label"] == "raw"


def test_sections_list_their_variables(globals_object):
    assert {"ro_u32", "ro_label", "ro_limits"} <= set(globals_object.rodata)
    assert {"packets_seen", "bss_u8"} <= set(globals_object.bss)
    assert "ro_u32" not in globals_object.data


def test_unknown_variable_is_not_found(globals_object):
    with pytest.raises(bpfoom.NotFoundError) as caught:
        globals_object.rodata["no_such_variable"]
    assert isinstance(caught.value, KeyError)
    assert "no_such_variable" in str(caught.value)


def test_rodata_written_before_load_is_what_the_kernel_sees(globals_object):
    globals_object.rodata["ro_u32"] = 1234
    globals_object.load()
    run_filter_once(globals_object)
    assert globals_object.bss["seen_ro_u32"] == 1234
    assert globals_object.bss["packets_seen"] == 1
    assert globals_object.maps["counts"][1234] == 1
    assert globals_object.maps["slots"][0] == {"a": 1234, "b": -33}


def test_rodata_is_frozen_after_load(globals_object):
    globals_object.load()
    with pytest.raises(bpfoom.StateError) as caught:
        globals_object.rodata["ro_u32"] = 5
    assert caught.value.errno == errno.EBADFD
    assert globals_object.rodata["ro_u32"] == 32


def test_data_written_after_load_is_what_the_kernel_sees(globals_object):
    globals_object.load()
    globals_object.data["data_s32"] = -777
    run_filter_once(globals_object)
    assert globals_object.bss["seen_data_s32"] == -777
    assert globals_object.maps["slots"][0] == {"a": 32, "b": -777}


def test_hash_map_elements_round_trip_through_the_kernel(globals_object):
    globals_object.load()
    counts = globals_object.maps["counts"]
    assert (counts.type, counts.key_size, counts.value_size, counts.max_entries) == ("hash", 4, 8, 64)
    assert counts.id > 0 and counts.fd >= 0

    counts[32] = 41
    assert counts[32] == 41 and 32 in counts
    run_filter_once(globals_object)  # the program increments counts[ro_u32 == 32]
    assert counts[32] == 42

    counts[7] = 2**64 - 1
    assert sorted(counts.keys()) == [7, 32]
    assert dict(counts.items()) == {7: 2**64 - 1, 32: 42}
    del counts[7]
    assert 7 not in counts and counts.get(7) is None
    with pytest.raises(KeyError):
        counts[7]
    with pytest.raises(KeyError):
        del counts[7]


def test_hash_map_full_is_reported_by_the_kernel(globals_object):
    globals_object.load()
    counts = globals_object.maps["counts"]
    for key in range(64):
        counts[key] = key
    with pytest.raises(bpfoom.MapFullError) as caught:
        counts[64] = 64
    assert caught.value.errno == errno.E2BIG and "full" in str(caught.value)
    assert 64 not in counts and len(list(counts.keys())) == 64


def test_array_map_holds_structs(globals_object):
    globals_object.load()
    slots = globals_object.maps["slots"]
    assert (slots.type, slots.key_size, slots.value_size, slots.max_entries) == ("array", 4, 8, 4)
    assert slots[3] == {"a": 0, "b": 0}
    slots[3] = {"a": 2**32 - 1, "b": -2**31}
    assert slots[3] == {"a": 2**32 - 1, "b": -2**31}
    assert sorted(slots.keys()) == [0, 1, 2, 3]
    with pytest.raises(bpfoom.InvalidValueError, match="indexes are 0..3") as caught:
        slots[4] = {"a": 1, "b": 1}
    assert caught.value.errno == errno.E2BIG
    with pytest.raises(bpfoom.InvalidValueError):
        slots[1] = {"a": -1, "b": 0}


def test_map_info_comes_from_the_kernel(globals_object):
    globals_object.load()
    counts = globals_object.maps["counts"]
    info = counts.info()
    assert info.id == counts.id
    assert info.max_entries == 64
