"""Ring buffer events written by a BPF program reach a Python callback.

tests/bpf/ringbuf.bpf.o's socket filter emits one event per datagram its
socket receives, so each event here was produced by the kernel.
"""
from __future__ import annotations

import selectors
import socket
import struct
import threading
import time

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
        ring.poll(0.1)


def test_poll_timeout_is_in_seconds_like_every_other_timeout(filtered_socket):
    obj, receiver = filtered_socket
    received: list[bytes] = []
    with bpfoom.RingBuffer(obj.maps["events"], received.append) as ring:
        started = time.monotonic()
        assert ring.poll(0.2) == 0  # nothing sent: waits the whole 0.2 s
        assert time.monotonic() - started >= 0.2
        send_datagrams(receiver, 1)
        assert ring.poll(5) == 1 and len(received) == 1
        with pytest.raises(ValueError, match="seconds"):
            ring.poll(-1)  # the old "forever" in milliseconds: None now


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
                ring.poll(0.1)


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
        with pytest.raises(bpfoom.InvalidValueError, match="not a ringbuf"):
            bpfoom.RingBuffer(obj.maps["counts"], lambda raw: None)


def blocked_poller(ring: bpfoom.RingBuffer) -> tuple[threading.Thread, list]:
    """A thread blocked in ring.poll(None); `outcome` gets what the poll returned or raised."""
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(ring.poll(None))
        except BaseException as error:  # noqa: BLE001 - reported to the test
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert facts.blocked_in_poll(thread), f"poll(None) did not wait: {outcome}"
    assert outcome == [], "poll(None) returned without records"
    return thread, outcome


def close_within(closeable, seconds: float) -> None:
    closer = threading.Thread(target=closeable.close, daemon=True)
    closer.start()
    closer.join(seconds)
    assert not closer.is_alive(), f"close() did not return within {seconds}s while poll() waited"


def test_close_from_another_thread_wakes_a_blocked_poll(filtered_socket):
    obj, _ = filtered_socket
    ring = bpfoom.RingBuffer(obj.maps["events"], lambda raw: None)
    thread, outcome = blocked_poller(ring)
    close_within(ring, 30)  # at once; the bound only keeps a regression from hanging the run
    thread.join(30)
    assert not thread.is_alive(), "poll(None) still blocked 30 s after close()"
    assert len(outcome) == 1 and isinstance(outcome[0], bpfoom.ClosedError), outcome


def test_closing_the_object_wakes_a_blocked_poll(filtered_socket):
    obj, _ = filtered_socket
    ring = bpfoom.RingBuffer(obj.maps["events"], lambda raw: None)
    thread, outcome = blocked_poller(ring)
    close_within(obj, 30)
    thread.join(30)
    assert not thread.is_alive(), "poll(None) still blocked 30 s after the object's close()"
    assert isinstance(outcome[0], bpfoom.ClosedError), outcome
    assert ring.closed


def test_close_from_the_callback_stops_after_that_record(filtered_socket):
    """A close while records are being delivered stops after the current record."""
    obj, receiver = filtered_socket
    received: list[bytes] = []
    ring = bpfoom.RingBuffer(obj.maps["events"], lambda raw: (received.append(raw), ring.close()))
    send_datagrams(receiver, 3)
    assert ring.poll(1) == 1
    assert len(received) == 1 and ring.closed
    with pytest.raises(bpfoom.ClosedError):
        ring.poll(0)


def test_fileno_is_readable_when_records_wait(filtered_socket):
    obj, receiver = filtered_socket
    received: list[bytes] = []
    with bpfoom.RingBuffer(obj.maps["events"], received.append) as ring, \
            selectors.DefaultSelector() as selector:
        selector.register(ring.fileno(), selectors.EVENT_READ)
        assert selector.select(timeout=0) == []
        send_datagrams(receiver, 2)
        assert [key.fd for key, _ in selector.select(timeout=5)] == [ring.fileno()]
        assert ring.consume() == 2
        assert selector.select(timeout=0) == []
        selector.unregister(ring.fileno())
    with pytest.raises(bpfoom.ClosedError):
        ring.fileno()
    assert [EVENT.unpack(raw)[2] for raw in received] == [0, 1]
