"""EventStream: one ring buffer read as events, losses reported, never silent.

What policies (OomPolicy, PsiHandler) and the KillWatcher share: records are
delivered to ``on_event`` callbacks or queued for ``events()``, and growth
of the BPF side's ``events_dropped`` counter becomes one OverrunEvent after
the records that did arrive.
"""

from __future__ import annotations

import collections
import errno
import time
from collections.abc import Callable, Iterator
from typing import Any

from .errors import StateError
from .kill_events import OverrunEvent
from .ringbuf import RingBuffer

__all__ = ["EventStream"]


class EventStream:
    """Mixin: subclasses provide ``_event_ring()``, ``events_dropped`` and ``_overrun_source``."""

    _overrun_source: str

    def _init_stream(self) -> None:
        self._callbacks: list[Callable[[Any], object]] = []
        self._pending: collections.deque = collections.deque()
        self._dropped_seen = 0

    def _event_ring(self) -> RingBuffer:
        """The ring buffer to read (ClosedError once closed)."""
        raise NotImplementedError

    @property
    def events_dropped(self) -> int:
        raise NotImplementedError

    def _deliver(self, event: Any) -> None:
        if self._callbacks:
            for callback in list(self._callbacks):
                callback(event)
        else:
            self._pending.append(event)

    def _report_drops(self) -> bool:
        """Turn growth of the drop counter into one OverrunEvent; whether there was one."""
        total = self.events_dropped
        if total <= self._dropped_seen:
            return False
        lost, self._dropped_seen = total - self._dropped_seen, total
        self._deliver(OverrunEvent(lost=lost, total_lost=total, monotonic_ns=time.monotonic_ns(),
                                   source=self._overrun_source))
        return True

    def on_event(self, callback: Callable[[Any], object]) -> None:
        """Call ``callback(event)`` for each event, from :meth:`poll` (not with :meth:`events`)."""
        if not callable(callback):
            raise TypeError("on_event() takes a callable: callback(event)")
        self._event_ring()
        self._callbacks.append(callback)

    def poll(self, timeout: float | None = None) -> int:
        """Wait up to ``timeout`` seconds (None: forever) for records; how many events arrived.

        An overrun found meanwhile is delivered (and counted) after them.
        """
        ring = self._event_ring()
        count = ring.poll(-1 if timeout is None else max(0, int(timeout * 1000)))
        return count + self._report_drops()

    def events(self, timeout: float | None = None) -> Iterator[Any]:
        """Events as they come; ends after ``timeout`` seconds without one (None: never)."""
        if self._callbacks:
            raise StateError(errno.EBUSY, "events() and on_event() callbacks both want the "
                             "events; use one of them")
        self._event_ring()
        while True:
            while self._pending:
                yield self._pending.popleft()
            started = time.monotonic()
            while not self._pending:
                left = None if timeout is None else timeout - (time.monotonic() - started)
                if left is not None and left <= 0:
                    return
                self.poll(None if left is None else max(0.001, left))
