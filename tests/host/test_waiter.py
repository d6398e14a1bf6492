"""SourceSet: one epoll wait over many event sources, real ring buffers among them.

The wait must block (no CPU spent) however many sources there are, wake as
soon as one of them has something (a datagram the ring buffer's socket
filter turned into a record), and name only that one.
"""
from __future__ import annotations

import os
import resource
import socket
import time

import pytest

import bpfoom
import facts

pytestmark = pytest.mark.usefixtures("bpf_privileges")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@pytest.fixture
def ring_source():
    """A ring buffer fed by a socket filter: send a datagram to `receiver`, a record arrives."""
    received: list[bytes] = []
    with bpfoom.BpfObject.open(facts.RINGBUF_OBJECT) as obj:
        obj.load()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
            receiver.bind(("127.0.0.1", 0))
            receiver.setsockopt(socket.SOL_SOCKET, facts.SO_ATTACH_BPF,
                                obj.programs["emit_event"].fd)
            with bpfoom.RingBuffer(obj.maps["events"], received.append) as ring:
                yield ring, receiver, received


@pytest.fixture
def idle_fds():
    """300 eventfds nobody writes to: more sources than the old 200 ms round-robin could share."""
    fds = [os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC) for _ in range(300)]
    yield fds
    for fd in fds:
        os.close(fd)


def test_the_wait_blocks_over_hundreds_of_sources_and_wakes_for_the_one_with_records(
        ring_source, idle_fds):
    ring, receiver, received = ring_source
    with bpfoom.SourceSet() as sources:
        for index, fd in enumerate(idle_fds):
            assert sources.add(("idle", index), fd)
        assert sources.add("ring", ring.fileno)
        assert len(sources) == 301
        spent, started = cpu_seconds(), time.monotonic()
        assert sources.wait(1.0) == []  # nothing to read: the full second asleep...
        assert time.monotonic() - started >= 0.95
        assert cpu_seconds() - spent < 0.3  # ...not spinning (load only lowers our CPU time)

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.sendto(b"x", receiver.getsockname())
        assert sources.wait(30.0) == ["ring"]  # woken by the record: a timeout returns []
        assert ring.poll(0) == 1 and len(received) == 1
        assert sources.wait(0) == []  # read: not readable any more


def test_a_source_without_a_fileno_is_read_every_fifth_of_a_second(idle_fds):
    class NoFileno:
        def fileno(self) -> int:
            raise NotImplementedError

    with bpfoom.SourceSet() as sources:
        sources.add("idle", idle_fds[0])
        assert not sources.add("old", NoFileno().fileno)
        started = time.monotonic()
        assert sources.wait(None) == ["old"]
        assert 0.15 <= time.monotonic() - started < 10  # one round, not the 30 s a hang would take
        os.eventfd_write(idle_fds[0], 1)
        assert sources.wait(None) == ["idle", "old"]


def test_a_closed_set_refuses_use():
    sources = bpfoom.SourceSet()
    sources.close()
    sources.close()
    with pytest.raises(bpfoom.ClosedError, match="closed"):
        sources.wait(0)
