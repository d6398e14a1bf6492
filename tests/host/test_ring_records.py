"""Ring buffer records decoded through the writer's BTF into typed Records.

tests/bpf/ring_records.bpf.o's socket filter emits one `struct sample` per
packet its socket receives (an enum, a nested struct, a char array); the
values checked (magic, sequence, the packet's length) are the kernel's.
"""
from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

import bpfoom
import facts

pytestmark = pytest.mark.usefixtures("bpf_privileges")

MAGIC = 0x5A4D
PAYLOAD = b"12345"


@pytest.fixture
def filtered_socket() -> Iterator[tuple[bpfoom.BpfObject, socket.socket]]:
    with bpfoom.BpfObject.open(facts.RING_RECORDS_OBJECT) as obj:
        obj.load()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
            receiver.bind(("127.0.0.1", 0))
            receiver.setsockopt(socket.SOL_SOCKET, facts.SO_ATTACH_BPF,
                                obj.programs["emit_sample"].fd)
            receiver.settimeout(5)
            yield obj, receiver


def send(receiver: socket.socket, count: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for _ in range(count):
            sender.sendto(PAYLOAD, receiver.getsockname())
            receiver.recv(8)


def check_samples(got: list[bpfoom.Record], count: int) -> None:
    assert [r.magic for r in got] == [MAGIC] * count
    assert [r["sequence"] for r in got] == list(range(count))
    assert all(r.kind.name == "SAMPLE_PACKET" and r.kind == 1 and r.tag == "bpfoom" for r in got)
    # a UDP socket's filter sees the datagram from its UDP header: 8 bytes + the payload
    assert all(r.origin["len"] == 8 + len(PAYLOAD) for r in got)


def test_records_arrive_typed_by_the_objects_struct(filtered_socket):
    obj, receiver = filtered_socket
    got: list[bpfoom.Record] = []
    with bpfoom.RingBuffer(obj.maps["samples"], got.append, record="sample") as ring:
        send(receiver, 3)
        assert ring.consume() == 3
    check_samples(got, 3)
    assert set(got[0]) == {"magic", "kind", "sequence", "origin", "tag"}
    assert repr(got[0]).startswith("<sample magic=23117, kind=")
    with pytest.raises(AttributeError):
        got[0].pid  # noqa: B018 - no such field
    with pytest.raises(AttributeError):
        got[0].magic = 1  # type: ignore[misc]


def test_records_of_a_pinned_ring_buffer_use_the_writers_btf_from_the_kernel(filtered_socket,
                                                                             bpffs_dir):
    obj, receiver = filtered_socket
    obj.maps["samples"].pin(bpffs_dir / "samples")
    got: list[bpfoom.Record] = []
    with bpfoom.Map.from_pinned(bpffs_dir / "samples") as pinned:
        with bpfoom.RingBuffer(pinned, got.append, record="sample") as ring:
            send(receiver, 2)
            assert ring.consume() == 2
    check_samples(got, 2)


def test_a_struct_the_object_lacks_is_refused_before_reading(filtered_socket):
    obj, _ = filtered_socket
    with pytest.raises(bpfoom.InvalidValueError, match="no struct no_such_struct"):
        bpfoom.RingBuffer(obj.maps["samples"], print, record="no_such_struct")
    with pytest.raises(TypeError):
        bpfoom.RingBuffer(obj.maps["samples"], print, record=3)  # type: ignore[call-overload]


def test_record_type_decodes_bytes_and_refuses_short_ones(filtered_socket):
    obj, _ = filtered_socket
    sample = bpfoom.RecordType.from_btf(obj.btf, "sample")
    assert sample.size == 32 and sample.fields == ("magic", "kind", "sequence", "origin", "tag")
    raw = MAGIC.to_bytes(4, "little") + (2).to_bytes(4, "little") + (7).to_bytes(8, "little")
    record = sample.decode(raw + bytes(16))
    assert (record.magic, record.kind.name, record.sequence) == (MAGIC, "SAMPLE_OTHER", 7)
    with pytest.raises(bpfoom.InvalidValueError, match="8-byte record"):
        sample.decode(bytes(8))
