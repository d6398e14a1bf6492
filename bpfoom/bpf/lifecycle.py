"""One lifecycle for every object that owns a kernel or C resource.

``close()`` frees the resource once, from any thread, and later calls do
nothing; ``with`` gives the object itself and closes it on the way out; any
use after close raises :class:`ClosedError` (``EBADF``) with a sentence
saying what to do instead.  Garbage collection only backs this up.
"""
from __future__ import annotations

import errno
import threading
from typing import Self

from .errors import ClosedError

__all__ = ["Closeable"]


class Closeable:
    """Base of the owners: subclasses say whether they are closed, how to free what they own
    and what to do once closed; this class gives the rest, the same for all."""

    def __init__(self) -> None:
        # Guards the owned resource; reentrant so that methods holding it may close.
        self._lock = threading.RLock()

    @property
    def closed(self) -> bool:
        """Whether close() ran (or what the object owned is gone)."""
        raise NotImplementedError

    def _release(self) -> None:
        """Free what this object owns; called once, with ``_lock`` held."""
        raise NotImplementedError

    def _closed_message(self) -> str:
        """The sentence of the ClosedError: what is closed and what to do instead."""
        raise NotImplementedError

    def close(self) -> None:
        """Free what this object owns.  Idempotent; safe from any thread."""
        with self._lock:
            if not self.closed:
                self._release()

    def _closed_error(self) -> ClosedError:
        return ClosedError(errno.EBADF, self._closed_message())

    def _check_open(self) -> None:
        """Raise ClosedError if closed; call it with ``_lock`` held to keep the answer true."""
        if self.closed:
            raise self._closed_error()

    def __enter__(self) -> Self:
        with self._lock:
            self._check_open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # A backstop only: close() is the plan.  Nothing to do if __init__ failed early.
        if "_lock" not in self.__dict__:
            return
        try:
            self._collected()
        except Exception:  # noqa: BLE001 - interpreter shutdown, or a half-made object
            pass

    def _collected(self) -> None:
        """What garbage collection of an object still open does (by default, close it)."""
        if not self.closed:
            self.close()
