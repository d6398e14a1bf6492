"""RingBuffer: read BPF ring buffer maps, one Python callback per record.

The callback runs inside libbpf's poll loop, so it must not raise into C:
its exception is stored, the loop is stopped, and the exception is raised
from :meth:`RingBuffer.poll` / :meth:`RingBuffer.consume` once libbpf
returns.

Thread safety: poll/consume/close serialize on the ring buffer's lock.  The
ring buffer keeps its map's BpfObject alive and refuses to run once that
object is closed.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable

from ._ffi import ffi, lib
from .errors import ClosedError, InvalidValueError, StateError, check, check_ptr
from .map import Map

__all__ = ["RingBuffer"]

_STOPPED_BY_CALLBACK = -errno.ECANCELED


@ffi.def_extern()
def libbpf_ffi_ring_buffer_sample(ctx, data, size) -> int:
    """Called by libbpf for each record; hands it to the owning RingBuffer."""
    try:
        ring = ffi.from_handle(ctx)
    except Exception:  # noqa: BLE001 - never unwind into C
        return _STOPPED_BY_CALLBACK
    return ring._deliver(data, size)


class RingBuffer:
    """Consumer of a ``ringbuf`` map: ``callback(bytes)`` for each record."""

    def __init__(self, map_: Map, callback: Callable[[bytes], object]) -> None:
        if not isinstance(map_, Map):
            raise TypeError(f"RingBuffer needs a bpfoom Map, not {type(map_).__name__}")
        if not callable(callback):
            raise TypeError("callback must be callable: callback(data: bytes) -> None")
        self._ptr = None
        self._lock = threading.RLock()
        self._map = map_
        self._callback = callback
        self._error: BaseException | None = None
        self._delivering = False  # poll() from inside the callback would re-enter libbpf
        self._close_pending = False
        self._handle = ffi.new_handle(self)
        obj = map_._obj
        with obj._lock:
            obj._require_loaded(f"read ring buffer {map_.name!r}")
            if map_.type != "ringbuf":
                raise InvalidValueError(errno.EINVAL, f"map {map_.name!r} is a {map_.type} map, "
                                        "not a ringbuf; give a BPF_MAP_TYPE_RINGBUF map")
            ptr = lib.ring_buffer__new(lib.bpf_map__fd(map_._ptr),
                                       lib.libbpf_ffi_ring_buffer_sample, self._handle, ffi.NULL)
        self._ptr = check_ptr(ptr, f"open ring buffer {map_.name!r}")

    def _deliver(self, data, size: int) -> int:
        self._delivering = True
        try:
            self._callback(bytes(ffi.buffer(data, size)))
        except BaseException as exc:  # noqa: BLE001 - re-raised after the C call
            self._error = exc
            return _STOPPED_BY_CALLBACK
        finally:
            self._delivering = False
        return _STOPPED_BY_CALLBACK if self._close_pending else 0

    def _run(self, call, what: str) -> int:
        with self._lock:
            if self._delivering:
                raise StateError(errno.EDEADLK, f"cannot {what} ring buffer {self._map.name!r} from "
                                 "its own callback; return from the callback instead")
            ptr = self._ptr
            if ptr is None:
                raise ClosedError(errno.EBADF, f"ring buffer {self._map.name!r} is closed; "
                                  "make a new RingBuffer")
            with self._map._obj._lock:
                self._map._obj._live()
            self._error = None
            rc = call(ptr)
            closing, self._close_pending = self._close_pending, False
            if closing:
                self.close()
            error, self._error = self._error, None
            if error is not None:
                raise error
            if closing or rc == -errno.EINTR:
                return max(rc, 0)
            return check(rc, f"{what} ring buffer {self._map.name!r}")

    def poll(self, timeout_ms: int = -1) -> int:
        """Wait up to ``timeout_ms`` (-1 = forever) for records; returns how many were handled."""
        if not isinstance(timeout_ms, int):
            raise TypeError("timeout_ms must be an int (milliseconds, -1 waits forever)")
        return self._run(lambda ptr: lib.ring_buffer__poll(ptr, timeout_ms), "poll")

    def consume(self) -> int:
        """Handle every record available now without waiting; returns how many."""
        return self._run(lib.ring_buffer__consume, "consume")

    def close(self) -> None:
        """Free the ring buffer (the map stays with its object).  Idempotent.

        Called from the callback, the free waits until libbpf's loop returns.
        """
        with self._lock:
            if self._delivering:
                self._close_pending = True
                return
            ptr, self._ptr = self._ptr, None
            if ptr is not None:
                lib.ring_buffer__free(ptr)

    def __enter__(self) -> "RingBuffer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
