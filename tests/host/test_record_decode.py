"""Records decode the same through the one-call (struct) path and field by field.

RecordCodec decodes plain records with one struct.unpack_from and a
generated expression; that path must give exactly what decoding each member
gives, for every byte pattern, and records it cannot handle (bitfields,
unions, enums) must keep the field-by-field path.
"""
from __future__ import annotations

import random

import pytest

import bpfoom
import facts
from bpfoom.bpf.btf import IntCodec, Kind, RecordCodec

# A policy's decision record (tests/bpf/oom/decisions_from_tcp_cc.bpf.o writes them) and
# the kill watcher's record; the globals object's sections hold bools, enums, char
# arrays and nested structs.
OBJECTS = {
    "policy_event": facts.REPO / "tests" / "bpf" / "oom" / "decisions_from_tcp_cc.bpf.o",
    "kill_record": facts.REPO / "bpfoom" / "oom" / "kill_watch.bpf.o",
    "limits": facts.GLOBALS_OBJECT,
    "pair": facts.GLOBALS_OBJECT,
}


def record_codec(struct_name: str) -> RecordCodec:
    with bpfoom.BpfObject.open(OBJECTS[struct_name]) as obj:
        type_id = obj._btf.find(struct_name, Kind.STRUCT)
        assert type_id is not None, f"{OBJECTS[struct_name]} has no struct {struct_name}"
        return obj._btf.codec(type_id)  # codecs keep no pointer into the object


@pytest.mark.parametrize("struct_name", sorted(OBJECTS))
def test_flat_decoding_equals_field_by_field(struct_name):
    codec = record_codec(struct_name)
    chooser = random.Random(struct_name)
    for pattern in (b"\0" * codec.size, b"\xff" * codec.size,
                    *(chooser.randbytes(codec.size) for _ in range(50))):
        flat = codec.decode(pattern)
        assert codec._flat, f"struct {struct_name} should take the one-call path"
        assert flat == codec._decode_fields(pattern)
        assert type(flat) is dict
    # at an offset, and from a bytearray view, as ring buffer and map reads give them
    padded = bytearray(b"\x01" * 8) + bytearray(pattern)
    assert codec.decode(memoryview(padded), 8) == codec._decode_fields(bytes(pattern))


def test_short_buffers_keep_the_field_by_field_result():
    codec = record_codec("pair")
    assert codec.decode(b"\x01\x00\x00\x00") == codec._decode_fields(b"\x01\x00\x00\x00")


def test_records_with_bitfields_or_unions_keep_the_field_by_field_path():
    number = IntCodec("__u32", 4, False)
    bitfields = RecordCodec("struct bits", 4, [("low", 0, 3, number), ("high", 3, 5, number)],
                            False)
    assert bitfields.decode(bytes([0b10101_110, 0, 0, 0])) == {"low": 0b110, "high": 0b10101}
    assert bitfields._flat is False
    union = RecordCodec("union either", 4, [("word", 0, 0, number), ("also", 0, 0, number)],
                        True)
    assert union.decode(b"\x02\0\0\0") == {"word": 2, "also": 2}
    assert union._flat is False
