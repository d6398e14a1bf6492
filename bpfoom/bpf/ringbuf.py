"""RingBuffer: read BPF ring buffer maps, one Python callback per record.

The callback runs inside libbpf's consume loop, so it must not raise into
C: its exception is stored, the loop is stopped, and the exception is
raised from :meth:`RingBuffer.poll` / :meth:`RingBuffer.consume` once
libbpf returns.

Thread safety and closing: :meth:`poll` waits (on libbpf's epoll fd and an
eventfd of our own) without holding any lock, so :meth:`close` from any
thread returns at once and wakes every waiting poller, which raises
:class:`ClosedError`.  Records are consumed by one thread at a time; a
close during delivery stops after the current record.  The C ring buffer is
freed by whoever leaves last: ``close()`` itself when nobody is polling,
else the last poller on its way out.  The map may be a BpfObject's (loaded)
or one opened with ``Map.from_pinned()``; closing the map's owner (the
object, or the pinned Map) closes its ring buffers too.
"""

from __future__ import annotations

from typing import Any, overload

import errno
import math
import os
import select
import threading
from collections.abc import Callable

from ._ffi import CData, ffi, lib
from .lifecycle import Closeable
from .errors import ClosedError, InvalidValueError, StateError, check, check_ptr
from .map import Map
from .records import Record, RecordType

__all__ = ["RingBuffer"]

_STOPPED_BY_CALLBACK = -errno.ECANCELED


def libbpf_ffi_ring_buffer_sample(ctx: CData, data: CData, size: int) -> int:
    """Called by libbpf for each record; hands it to the owning RingBuffer."""
    try:
        ring: CData = ffi.from_handle(ctx)  # the RingBuffer, through cffi's handle
    except Exception:  # noqa: BLE001 - never unwind into C
        return _STOPPED_BY_CALLBACK
    delivered: int = ring._deliver(data, size)
    return delivered


# Registered by a call, not as a decorator: the binding is untyped, and a decorator's Any would
# hide the function's own types from the checkers.
ffi.def_extern()(libbpf_ffi_ring_buffer_sample)


class RingBuffer(Closeable):
    """Consumer of a ``ringbuf`` map: ``callback(bytes)`` for each record, or with ``record=``
    (a struct name or a :class:`RecordType`) ``callback(Record)``, decoded through the BTF of
    the object that writes them."""

    @overload
    def __init__(self, map_: Map, callback: Callable[[bytes], object]) -> None: ...

    @overload
    def __init__(self, map_: Map, callback: Callable[[Record], object], *,
                 record: str | RecordType) -> None: ...

    def __init__(self, map_: Map, callback: Callable[[Any], object], *,
                 record: str | RecordType | None = None) -> None:
        if not isinstance(map_, Map):
            raise TypeError(f"RingBuffer needs a bpfoom Map, not {type(map_).__name__}")
        if not callable(callback):
            raise TypeError("callback must be callable: callback(data: bytes) -> None")
        if record is not None and not isinstance(record, (str, RecordType)):
            raise TypeError(f"record must be a struct name or a RecordType, not "
                            f"{type(record).__name__}")
        self._ptr: CData | None = None
        self._closed = True  # until the C ring buffer exists
        self._record = RecordType.of_map(map_, record) if isinstance(record, str) else record
        super().__init__()  # _lock: the fields below; never held across a wait or a callback
        self._consume_lock = threading.Lock()  # one consumer at a time, held across the callbacks
        self._users = 0  # threads inside poll()/consume(): the C ring buffer outlives them
        self._delivering: int | None = None  # thread running the callback (re-entry check)
        self._delivered = 0
        self._error: BaseException | None = None
        self._map = map_
        self._callback = callback
        self._handle = ffi.new_handle(self)
        owner = map_.owner  # the object's core, or the pinned map's own fd holder
        with owner.lock:
            owner.require_loaded(f"read ring buffer {map_.name!r}")
            map_fd = map_.fd
            if map_.type != "ringbuf":
                raise InvalidValueError(errno.EINVAL, f"map {map_.name!r} is a {map_.type} map, "
                                        "not a ringbuf; give a BPF_MAP_TYPE_RINGBUF map")
            ptr = lib.ring_buffer__new(map_fd, lib.libbpf_ffi_ring_buffer_sample, self._handle,
                                       ffi.NULL)
            check_ptr(ptr, f"open ring buffer {map_.name!r}")
            self._ptr, self._closed = ptr, False
            self._epoll_fd: int = lib.ring_buffer__epoll_fd(ptr)
            self._wake = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)  # readable once closed
            owner.rings.add(self)

    # -- delivery ------------------------------------------------------------
    def _deliver(self, data: CData, size: int) -> int:
        try:
            raw = bytes(ffi.buffer(data, size))
            self._callback(raw if self._record is None else self._record.decode(raw))
        except BaseException as exc:  # noqa: BLE001 - re-raised after the C call
            self._error = exc
            return _STOPPED_BY_CALLBACK
        self._delivered += 1
        return _STOPPED_BY_CALLBACK if self._closed else 0

    def _closed_message(self, why: str = "") -> str:
        return f"ring buffer {self._map.name!r} is closed{why}; make a new RingBuffer"

    def _closed_error(self, why: str = "") -> ClosedError:
        return ClosedError(errno.EBADF, self._closed_message(why))

    def _enter(self, what: str) -> None:
        """Count this thread as a user (the C ring buffer stays until it leaves)."""
        with self._lock:
            if self._delivering == threading.get_ident():
                raise StateError(errno.EDEADLK, f"cannot {what} ring buffer {self._map.name!r} "
                                 "from its own callback; return from the callback instead")
            if self._closed:
                raise self._closed_error()
            self._users += 1

    def _leave(self) -> None:
        with self._lock:
            self._users -= 1
            if self._closed and self._users == 0:
                self._free()

    def _consume(self, what: str) -> int:
        """Deliver every record available now; the caller is a user."""
        with self._consume_lock:
            if self._closed:
                raise self._closed_error(" (closed while waiting)")
            self._error, self._delivered = None, 0
            self._delivering = threading.get_ident()
            try:
                rc = lib.ring_buffer__consume(self._ptr)
            finally:
                self._delivering = None
            error, self._error = self._error, None
            if error is not None:
                raise error
            if rc < 0 and rc != _STOPPED_BY_CALLBACK:
                check(rc, f"{what} ring buffer {self._map.name!r}")
            return self._delivered

    # -- API -------------------------------------------------------------------
    def poll(self, timeout: float | None = None) -> int:
        """Wait up to ``timeout`` seconds (None: forever) for records; returns how many were handled.

        Seconds like every other timeout in bpfoom.  Raises ClosedError if the
        ring buffer is closed before or while it waits.
        """
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
                raise TypeError(f"timeout must be a number of seconds or None (forever), "
                                f"not {type(timeout).__name__}")
            if not timeout >= 0:
                raise ValueError(f"timeout must be >= 0 seconds or None (forever), not {timeout!r}")
        self._enter("poll")
        try:
            waiter = select.poll()
            waiter.register(self._epoll_fd, select.POLLIN)
            waiter.register(self._wake, select.POLLIN)
            wait_ms = None if timeout is None else math.ceil(timeout * 1000)
            if not waiter.poll(wait_ms) and not self._closed:
                return 0
            return self._consume("poll")
        finally:
            self._leave()

    def consume(self) -> int:
        """Handle every record available now without waiting; returns how many."""
        self._enter("consume")
        try:
            return self._consume("consume")
        finally:
            self._leave()

    def fileno(self) -> int:
        """An fd that is readable while records wait (libbpf's epoll fd), for selectors/asyncio.

        Owned by the ring buffer: valid until close(); call consume() when it is readable.
        """
        with self._lock:
            if self._closed:
                raise self._closed_error()
            return self._epoll_fd

    @property
    def closed(self) -> bool:
        return self._closed

    def _release(self) -> None:
        """Close from any thread (the callback included) and wake every waiting poll().

        The C ring buffer is freed now, or by the last poll() still running.
        """
        self._closed = True
        os.eventfd_write(self._wake, 1)
        if self._users == 0:
            self._free()

    def _free(self) -> None:
        """Lock held, closed, no users left."""
        ptr, self._ptr = self._ptr, None
        if ptr is not None:
            lib.ring_buffer__free(ptr)
            os.close(self._wake)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<RingBuffer of map {self._map.name!r} {state}>"
