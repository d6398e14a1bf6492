"""KillWatcher: every OOM kill on the machine, whoever made it, as events.

The watcher loads bpfoom/oom/kill_watch.bpf.o and attaches its three
tracing programs (fentry and fexit on ``out_of_memory``, the
``oom/mark_victim`` tracepoint).  It needs no policy and sees the kernel's
own killer, bpfoom's policies and any other BPF OOM policy alike; each kill
names the policy the kernel reported (``oom_policy=``) or ``default``::

    with bpfoom.KillWatcher() as watcher:
        for event in watcher.events(timeout=60):
            print(event)        # KillEvent, OomNoKillEvent or OverrunEvent

Nothing is lost silently: when the ring buffer had no room, the next read
yields an :class:`~bpfoom.kill_events.OverrunEvent` with the number of
records lost.  Closing the watcher detaches everything; it never pins.
"""

from __future__ import annotations


import errno
import os

from ..bpf.event_stream import EventStream
from ..bpf.lifecycle import Closeable
from ..bpf.errors import BpfError
from .kill_events import (WATCHER_OBJECT, KillEvent, OomNoKillEvent, OverrunEvent,
                          decode_kill_record, kill_layout)
from ..bpf.link import Link
from ..bpf.object import BpfObject
from ..bpf.ringbuf import RingBuffer

__all__ = ["KillWatcher", "WATCHER_OBJECT", "KillWatchEvent"]

_RING = "kills"

KillWatchEvent = KillEvent | OomNoKillEvent | OverrunEvent


class KillWatcher(Closeable, EventStream[KillWatchEvent]):
    """Loaded and attached kill watcher; a context manager, :meth:`close` detaches it."""

    def __init__(self, *, ring_size: int | None = None) -> None:
        """Load and attach the watcher.

        ``ring_size`` is the ring buffer's size in bytes (a power of two and a
        multiple of the page size; default 256 KiB, about 1400 kills between
        two reads).  Nothing stays attached if this raises.
        """
        super().__init__()
        self._links: list[Link] = []
        self._ring: RingBuffer | None = None
        self._init_stream()
        self.object = BpfObject.open(WATCHER_OBJECT)
        try:
            if ring_size is not None:
                self.object.maps[_RING].max_entries = ring_size
            try:
                self.object.load()
            except BpfError as err:
                if err.errno == errno.EPERM and os.geteuid() == 0:
                    raise type(err)(err.errno, "this kernel refuses the kill watcher's fentry/fexit "
                                    "programs even to root (kernel lockdown, or no BPF "
                                    "trampolines), so OOM kills cannot be watched here; "
                                    "policies' own decisions are still reported",
                                    log=err.log, feature=err.feature) from err
                raise type(err)(err.errno, f"{err.strerror}; the kill watcher needs fentry/fexit "
                                "programs on out_of_memory and the oom/mark_victim tracepoint "
                                "(a kernel with BTF, ftrace and BPF trampolines, CAP_BPF and "
                                "CAP_PERFMON)", log=err.log, feature=err.feature) from err
            self._layout = kill_layout(self.object.btf, str(WATCHER_OBJECT))
            for program in self.object.programs.values():
                self._links.append(program.attach())
            self._ring = RingBuffer(self.object.maps[_RING], self._receive)
        except BaseException:
            self.close()
            raise

    # -- events -----------------------------------------------------------------
    @staticmethod
    def decode(data: bytes) -> KillEvent | OomNoKillEvent:
        """One record of the watcher's ring buffer (e.g. read from a pin) as its event."""
        return decode_kill_record(data)

    def _receive(self, data: bytes) -> None:
        self._deliver(decode_kill_record(data, self._layout))

    def _overrun_event(self, lost: int, total_lost: int, monotonic_ns: int) -> OverrunEvent:
        return OverrunEvent(lost=lost, total_lost=total_lost, monotonic_ns=monotonic_ns,
                            source="kill_watch")

    def _event_ring(self) -> RingBuffer:
        ring = self._ring
        if ring is None:
            raise self._closed_error()
        return ring

    @property
    def events_dropped(self) -> int:
        """Records the ring buffer had no room for since load (the BPF side counts them)."""
        with self._lock:
            return int(self.object.bss["events_dropped"])

    @property
    def ooms_seen(self) -> int:
        """OOMs (calls of out_of_memory) seen since load."""
        with self._lock:
            return int(self.object.bss["ooms_seen"])

    @property
    def links(self) -> list[Link]:
        """The watcher's three links (fentry, tracepoint, fexit) while open."""
        with self._lock:
            return [link for link in self._links if not link.closed]

    # -- lifetime ---------------------------------------------------------------
    def _release(self) -> None:
        """Detach the programs, free the ring buffer and the object."""
        links, self._links = self._links, []
        for link in links:
            link.close()
        ring, self._ring = self._ring, None
        if ring is not None:
            ring.close()
        self.object.close()

    @property
    def closed(self) -> bool:
        return self.object.state == "closed"

    def _closed_message(self) -> str:
        return "the kill watcher is closed; start a new KillWatcher"

    def __repr__(self) -> str:
        return f"<KillWatcher {'closed' if self.closed else 'attached'}>"
