"""asyncio: sources awaited on their fileno() deliver what the kernel produced, without
blocking the event loop (a ticker task keeps running while the iterator waits)."""
from __future__ import annotations

import asyncio
import collections
import socket

import pytest

import bpfoom
import facts

targets = bpfoom.targets


class Ticker:
    """A task counting 10 ms ticks: it advances only while nothing blocks the event loop."""

    def __init__(self) -> None:
        self.ticks = 0

    async def run(self) -> None:
        while True:
            await asyncio.sleep(0.01)
            self.ticks += 1

    async def after(self, ticks: int) -> None:
        """Return once the loop ticked ``ticks`` more times: while the caller's iterator waits,
        that happens only if its wait does not block the loop (a blocked loop: the producer
        never acts and the iterator ends empty at its timeout)."""
        target = self.ticks + ticks
        while self.ticks < target:
            await asyncio.sleep(0.01)


async def ticking(body):
    """Run ``body(ticker)`` next to a running Ticker; (result, ticks)."""
    ticker = Ticker()
    running = asyncio.ensure_future(ticker.run())
    try:
        return await body(ticker), ticker.ticks
    finally:
        running.cancel()


def test_cgroup_changes_arrive_in_an_event_loop(cgroup2_dir):
    async def body(ticker):
        with targets.CgroupWatcher([cgroup2_dir / "*.service"]) as watcher:
            async def later() -> None:  # runs once the iterator below waits, and the loop ticked
                await ticker.after(1)
                (cgroup2_dir / "web.service").mkdir()
            maker = asyncio.ensure_future(later())
            seen = []
            async for change in watcher.achanges(timeout=60):  # 60 s: a no-hang guard
                seen.append((change.path, change.added))
                break
            await maker
            return seen

    try:
        seen, ticks = asyncio.run(ticking(body))
    finally:
        if (cgroup2_dir / "web.service").exists():
            (cgroup2_dir / "web.service").rmdir()
    assert seen == [(cgroup2_dir / "web.service", True)]
    assert ticks >= 1  # the loop ran while the iterator waited for inotify


def test_the_iteration_ends_after_the_timeout_without_events(cgroup2_dir):
    async def body(ticker):
        with targets.CgroupWatcher([cgroup2_dir / "*.service"]) as watcher:
            return [change async for change in watcher.achanges(timeout=0.3)]
    seen, ticks = asyncio.run(ticking(body))
    # the ticker's first 10 ms timer is due before the 0.3 s timeout: a wait that did not
    # block the loop let it run first
    assert seen == [] and ticks >= 1


def test_aevents_needs_a_fileno():
    with pytest.raises(TypeError, match="no fileno"):
        bpfoom.aevents(object())


class RingSource:
    """The protocol aevents() reads (fileno, poll(0), events(timeout=0)) over a real ring buffer."""

    def __init__(self, events_map: bpfoom.Map) -> None:
        self.queue: collections.deque[bytes] = collections.deque()
        self.ring = bpfoom.RingBuffer(events_map, self.queue.append)

    def fileno(self) -> int:
        return self.ring.fileno()

    def poll(self, timeout: float) -> int:
        return self.ring.poll(0)

    def events(self, timeout: float):
        while self.queue:
            yield self.queue.popleft()


@pytest.mark.usefixtures("bpf_privileges")
def test_aevents_over_a_real_ring_buffer():
    with bpfoom.BpfObject.open(facts.RINGBUF_OBJECT) as obj:
        obj.load()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            receiver.bind(("127.0.0.1", 0))
            receiver.setsockopt(socket.SOL_SOCKET, facts.SO_ATTACH_BPF,
                                obj.programs["emit_event"].fd)
            source = RingSource(obj.maps["events"])

            async def body(ticker):
                async def send_later() -> None:  # once aevents() below waits, 10 ticks on
                    await ticker.after(1)
                    for _ in range(3):
                        sender.sendto(b"x", receiver.getsockname())
                sending = asyncio.ensure_future(send_later())
                got = []
                async for record in bpfoom.aevents(source, timeout=60):  # 60 s: a no-hang guard
                    got.append(record)
                    if len(got) == 3:
                        break
                await sending
                return got

            try:
                got, ticks = asyncio.run(ticking(body))
            finally:
                source.ring.close()
    assert [int.from_bytes(r[8:16], "little") for r in got] == [0, 1, 2]  # sequence numbers
    assert ticks >= 1  # the loop ran while aevents() waited
