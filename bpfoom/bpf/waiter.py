"""SourceSet: one wait over many event sources (epoll through :mod:`selectors`).

A daemon reads policies' decisions, the kill watcher, pinned event rings and
an inotify watch at once.  Polling each in turn with a share of a fixed
interval wakes up for nothing, and adds latency that grows with the number of
sources (and a share of 0 ms spins).  Here every source's ``fileno()`` goes
into one epoll set, and :meth:`SourceSet.wait` returns the keys of the
sources that are readable; the caller then reads each without blocking
(``poll(0)``).

A source whose ``fileno()`` is not implemented cannot be waited on: it is
returned by every :meth:`~SourceSet.wait`, which then waits at most
:data:`UNWAITABLE_S`, so such a source is still read within that delay.
"""

from __future__ import annotations

import io
import selectors
from collections.abc import Callable, Hashable
from typing import Any

from .lifecycle import Closeable

__all__ = ["SourceSet", "UNWAITABLE_S"]

UNWAITABLE_S = 0.2  # how often a source without a usable fileno() is read


class SourceSet(Closeable):
    """Keys of event sources, each with the fd that is readable when it has something to read."""

    def __init__(self) -> None:
        super().__init__()
        self._selector: selectors.BaseSelector | None = selectors.DefaultSelector()
        self._fds: dict[int, Hashable] = {}
        self._unwaitable: list[Hashable] = []

    def add(self, key: Hashable, fileno: Callable[[], int] | int) -> bool:
        """Wait on ``fileno`` (an fd, or a source's ``fileno`` method) for ``key``.

        Returns False when the source has no usable fd: ``key`` is then
        returned by every wait.  An fd already in the set keeps its first key.
        """
        selector = self._live()
        try:
            fd = fileno() if callable(fileno) else fileno
        except (NotImplementedError, AttributeError, io.UnsupportedOperation):
            self._unwaitable.append(key)
            return False
        if fd in self._fds:
            return True
        selector.register(fd, selectors.EVENT_READ, key)
        self._fds[fd] = key
        return True

    @property
    def unwaitable(self) -> list[Hashable]:
        """The keys that are read on every wait because they have no fd."""
        return list(self._unwaitable)

    def __len__(self) -> int:
        return len(self._fds) + len(self._unwaitable)

    def wait(self, timeout: float | None = None) -> list[Any]:
        """Block until a source is readable or ``timeout`` seconds passed (None: no limit).

        Returns the keys of the readable sources, then every unwaitable key
        (at most :data:`UNWAITABLE_S` later when there are some).  Empty on a
        timeout with no unwaitable source.  A signal whose handler does not
        raise does not end the wait (PEP 475): give the set a wakeup fd
        (``signal.set_wakeup_fd``) to be woken by signals.
        """
        selector = self._live()
        if self._unwaitable:
            timeout = UNWAITABLE_S if timeout is None else min(timeout, UNWAITABLE_S)
        if timeout is not None:
            timeout = max(0.0, timeout)
        if not self._fds and timeout is None:
            raise ValueError("nothing to wait on and no timeout: the wait would never end")
        ready = [key.data for key, _ in selector.select(timeout)]
        return ready + self._unwaitable

    def _live(self) -> selectors.BaseSelector:
        if self._selector is None:
            raise self._closed_error()
        return self._selector

    @property
    def closed(self) -> bool:
        return self._selector is None

    def _closed_message(self) -> str:
        return "the source set is closed; make a new SourceSet"

    def _release(self) -> None:
        """Forget every source (their fds stay open: they are the sources')."""
        selector, self._selector = self._selector, None
        if selector is not None:
            selector.close()
        self._fds.clear()
        self._unwaitable.clear()
