"""Decision events of policies attached by ``bpfoom attach``, read by another process.

``bpfoom attach`` exits right after attaching, so the policy's ``events``
ring buffer map is pinned next to its link (``<link pin>_events``) and
``bpfoom events`` reads every such pin.  The daemon pins its policies' events
the same way (in its own directory), so that after a restart it can still
log the decisions of a policy it re-adopted.  A ring buffer has one consumer
position: two readers of the same buffer split its records between them.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

from ._ffi import ffi, lib
from .errors import InvalidValueError, NotFoundError, check, check_ptr
from .events import DecisionEvent, decode_event
from .map import Map

__all__ = ["EVENTS_SUFFIX", "pin_events", "event_pins", "PinnedEvents", "require_bpffs"]

EVENTS_SUFFIX = "_events"  # bpffs refuses names with a dot
_EVENTS_MAP = "events"


def require_bpffs(path: Path) -> None:
    """NotFoundError saying how to mount bpffs unless ``path`` lies on a BPF filesystem."""
    target = Path(os.path.abspath(path))
    with open("/proc/self/mounts") as mounts:
        points = [Path(f.split()[1]) for f in mounts if f.split()[2] == "bpf"]
    if not any(target == point or point in target.parents for point in points):
        raise NotFoundError(errno.ENOENT, f"{str(target)!r} is not on a BPF filesystem, where pins "
                            "live; mount one (mount -t bpf bpf /sys/fs/bpf) or pick a path on it")


def pin_events(maps: dict[str, Map] | object, link_pin: Path) -> Path | None:
    """Pin the ``events`` ring buffer of a loaded object next to ``link_pin``; None if it has none."""
    if _EVENTS_MAP not in maps:
        return None
    path = Path(f"{link_pin}{EVENTS_SUFFIX}")
    check(lib.bpf_obj_pin(maps[_EVENTS_MAP].fd, os.fsencode(path)),
          f"pin the events ring buffer at {str(path)!r}",
          advice="remove the stale pin, or pick another --pin path")
    return path


def event_pins(root: Path) -> list[Path]:
    """The ``*_events`` pins directly in ``root`` (not below: the daemon reads its own)."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob(f"*{EVENTS_SUFFIX}") if p.is_file())


class PinnedEvents:
    """Consumer of one pinned ``events`` ring buffer; ``callback(DecisionEvent)`` per record."""

    def __init__(self, path: Path, callback: Callable[[DecisionEvent], object]) -> None:
        self.path = path
        self._callback = callback
        self._error: BaseException | None = None
        self._handle = ffi.new_handle(self)  # libbpf_ffi_ring_buffer_sample calls _deliver
        fd = check(lib.bpf_obj_get(os.fsencode(path)), f"open the events pin {str(path)!r}")
        try:
            ptr = lib.ring_buffer__new(fd, lib.libbpf_ffi_ring_buffer_sample, self._handle, ffi.NULL)
            self._ptr = check_ptr(ptr, f"read {str(path)!r} as a ring buffer",
                                  advice="the pin must be a BPF_MAP_TYPE_RINGBUF map")
        finally:
            os.close(fd)  # the ring buffer keeps its own mappings

    def _deliver(self, data, size: int) -> int:
        try:
            self._callback(decode_event(bytes(ffi.buffer(data, size))))
        except BaseException as exc:  # noqa: BLE001 - re-raised after libbpf returns
            self._error = exc
            return -errno.ECANCELED
        return 0

    def poll(self, timeout_ms: int) -> int:
        """Deliver what arrives within ``timeout_ms``; how many records."""
        rc = lib.ring_buffer__poll(self._ptr, timeout_ms)
        error, self._error = self._error, None
        if error is not None:
            if isinstance(error, InvalidValueError):
                raise InvalidValueError(error.errno, f"{self.path}: {error.strerror}")
            raise error
        return 0 if rc == -errno.EINTR else check(rc, f"poll {str(self.path)!r}")

    def close(self) -> None:
        ptr, self._ptr = self._ptr, None
        if ptr is not None:
            lib.ring_buffer__free(ptr)
