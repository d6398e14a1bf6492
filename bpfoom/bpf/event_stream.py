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
from typing import Generic, TypeVar

from .errors import ClosedError, StateError
from .ringbuf import RingBuffer

__all__ = ["EventStream"]

E = TypeVar("E")  # what the stream yields: a union of event dataclasses, its overrun event included


class EventStream(Generic[E]):
    """Mixin: subclasses provide ``_event_ring()``, ``events_dropped`` and ``_overrun_event()``.

    ``EventStream[DecisionEvent | OverrunEvent]``: the parameter is what
    ``events()`` yields and ``on_event`` callbacks receive.
    """

    def _init_stream(self) -> None:
        self._callbacks: list[Callable[[E], object]] = []
        self._pending: collections.deque[E] = collections.deque()
        self._dropped_seen = 0

    def _overrun_event(self, lost: int, total_lost: int, monotonic_ns: int) -> E:
        """The event that reports ``lost`` records lost (``total_lost`` so far)."""
        raise NotImplementedError

    def _event_ring(self) -> RingBuffer:
        """The ring buffer to read (ClosedError once closed)."""
        raise NotImplementedError

    @property
    def events_dropped(self) -> int:
        raise NotImplementedError

    def _deliver(self, event: E) -> None:
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
        self._deliver(self._overrun_event(lost, total, time.monotonic_ns()))
        return True

    def on_event(self, callback: Callable[[E], object]) -> None:
        """Call ``callback(event)`` for each event, from :meth:`poll` (not with :meth:`events`)."""
        if not callable(callback):
            raise TypeError("on_event() takes a callable: callback(event)")
        self._event_ring()
        self._callbacks.append(callback)

    def poll(self, timeout: float | None = None) -> int:
        """Wait up to ``timeout`` seconds (None: forever) for records; how many events arrived.

        An overrun found meanwhile is delivered (and counted) after them.
        ClosedError if the stream is closed before or while it waits.
        """
        ring = self._event_ring()
        count = ring.poll(timeout if timeout is None else max(0.0, timeout))
        return count + self._report_drops()

    def fileno(self) -> int:
        """An fd readable while records wait (see RingBuffer.fileno); then call poll(0)."""
        return self._event_ring().fileno()

    def events(self, timeout: float | None = None) -> Iterator[E]:
        """Events as they come; ends after ``timeout`` seconds without one (None: never).

        Also ends, after the events already received, when the stream is
        closed from another thread; ClosedError at once if it is closed already.
        """
        if self._callbacks:
            raise StateError(errno.EBUSY, "events() and on_event() callbacks both want the "
                             "events; use one of them")
        self._event_ring()
        return self._iterate(timeout)

    def _iterate(self, timeout: float | None) -> Iterator[E]:
        closed = False
        while True:
            while self._pending:
                yield self._pending.popleft()
            if closed:
                return
            started = time.monotonic()
            while not self._pending and not closed:
                left = None if timeout is None else timeout - (time.monotonic() - started)
                if left is not None and left <= 0:
                    return
                try:
                    self.poll(None if left is None else max(0.001, left))
                except ClosedError:
                    closed = True
