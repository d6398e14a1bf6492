"""Ring buffer events written by a BPF program reach a Python callback.

tests/bpf/ringbuf.bpf.o's socket filter emits one event per datagram its
socket receives, so each event here was produced by the kernel.
"""
from __future__ import annotations

import socket
import struct

import pytest

import bpfoom
import facts

pytestmark = pytest.mark.usefixtures("bpf_privileges")

EVENT = struct.Struct("=IIQ")  # struct event: magic, reserved, sequence
MAGIC = 0xB0F00D


@pytest.fixture
def filtered_socket():
    """A loaded ringbuf object and a UDP socket running its filter."""
    with bpfoom.BpfObject.open(facts.RINGBUF_OBJECT) as obj:
        obj.load()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
            receiver.bind(("127.0.0.1", 0))
            receiver.setsockopt(socket.SOL_SOCKET, facts.SO_ATTACH_BPF, obj.programs["emit_event"].fd)
            receiver.settimeout(5)
            yield obj, receiver


def send_datagrams(receiver: socket.socket, count: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for _ in range(count):
            sender.sendto(b"x", receiver.getsockname())
            receiver.recv(8)


def poll_until(ring: bpfoom.RingBuffer, received: list, count: int) -> None:
    for _ in range(50):
        if len(received) >= count:
            return
        ring.poll(100)


def test_events_arrive_in_order(filtered_socket):
    obj, receiver = filtered_socket
    received: list[bytes] = []
    with bpfoom.RingBuffer(obj.maps["events"], received.append) as ring:
        send_datagrams(receiver, 3)
        poll_until(ring, received, 3)
    events = [EVENT.unpack(raw) for raw in received]
    assert events == [(MAGIC, 0, 0), (MAGIC, 0, 1), (MAGIC, 0, 2)]
    assert obj.bss["events_sent"] == 3


def test_rodata_reaches_the_events():
    with bpfoom.BpfObject.open(facts.RINGBUF_OBJECT) as obj:
        obj.rodata["event_magic"] = 0x1234
        obj.load()
        received: list[bytes] = []
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
            receiver.bind(("127.0.0.1", 0))
            receiver.setsockopt(socket.SOL_SOCKET, facts.SO_ATTACH_BPF, obj.programs["emit_event"].fd)
            receiver.settimeout(5)
            with bpfoom.RingBuffer(obj.maps["events"], received.append) as ring:
                send_datagrams(receiver, 1)
                poll_until(ring, received, 1)
    assert [EVENT.unpack(raw)[0] for raw in received] == [0x1234]


def test_consume_drains_without_waiting(filtered_socket):
    obj, receiver = filtered_socket
    received: list[bytes] = []
    with bpfoom.RingBuffer(obj.maps["events"], received.append) as ring:
        send_datagrams(receiver, 2)
        ring.consume()
    assert len(received) == 2


def test_callback_exception_is_raised_from_poll(filtered_socket):
    obj, receiver = filtered_socket

    def fail(raw: bytes) -> None:
        raise LookupError("from the callback")

    with bpfoom.RingBuffer(obj.maps["events"], fail) as ring:
        send_datagrams(receiver, 1)
        with pytest.raises(LookupError, match="from the callback"):
            for _ in range(50):
                ring.poll(100)


def test_use_after_close_raises(filtered_socket):
    obj, _ = filtered_socket
    ring = bpfoom.RingBuffer(obj.maps["events"], lambda raw: None)
    ring.close()
    ring.close()
    with pytest.raises(bpfoom.ClosedError):
        ring.poll(0)


def test_a_non_ringbuf_map_is_refused():
    with bpfoom.BpfObject.open(facts.GLOBALS_OBJECT) as obj:
        obj.load()
        with pytest.raises(bpfoom.BpfError):
            bpfoom.RingBuffer(obj.maps["counts"], lambda raw: None)
