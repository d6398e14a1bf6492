"""Decision events of policies attached by ``bpfoom attach``, read by another process.

``bpfoom attach`` exits right after attaching, so the policy's ``events``
ring buffer map is pinned next to its link (``<link pin>_events``), with its
drop counter (``<link pin>_events_dropped``), and ``bpfoom events`` reads
every such pin.  The daemon pins its policies' events the same way (in its
own directory), so that after a restart it can still log the decisions of a
policy it re-adopted.  Records are decoded with the layout in the policy's
own BTF (the kernel's copy, by the counter map's ``btf_id``), and decisions
the ring had no room for come out as an :class:`~bpfoom.OverrunEvent`, as
for an in-process reader.  A ring buffer has one consumer position: two
readers of the same buffer split its records between them.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

from ..bpf._ffi import ffi, lib
from ..bpf.cgroup import mounts
from ..bpf.errors import InvalidValueError, NotFoundError, check, check_ptr
from ..bpf.event_stream import EventStream
from ..bpf.map import Map
from .events import DROPPED_MAP, EVENTS_MAP, DecisionEvent, pinned_decision_layout
from .kill_events import OverrunEvent

__all__ = ["EVENTS_SUFFIX", "pin_events", "unpin_events", "event_pins", "PinnedEvents",
           "require_bpffs"]

EVENTS_SUFFIX = "_events"  # bpffs refuses names with a dot
_DROPPED_SUFFIX = "_dropped"  # after the events pin's name


def require_bpffs(path: Path) -> None:
    """NotFoundError saying how to mount bpffs unless ``path`` lies on a BPF filesystem."""
    target = Path(os.path.abspath(path))
    if not any(target == point or point in target.parents for point in mounts("bpf")):
        raise NotFoundError(errno.ENOENT, f"{str(target)!r} is not on a BPF filesystem, where pins "
                            "live; mount one (mount -t bpf bpf /sys/fs/bpf) or pick a path on it")


def _pins(link_pin: Path) -> tuple[Path, Path]:
    events = Path(f"{link_pin}{EVENTS_SUFFIX}")
    return events, Path(f"{events}{_DROPPED_SUFFIX}")


def pin_events(maps: dict[str, Map] | object, link_pin: Path) -> Path | None:
    """Pin the ``events`` ring buffer (and its drop counter) next to ``link_pin``.

    Returns the ring's pin; None if the object has no ``events`` map.  If a
    pin fails, the ones made are removed again.
    """
    if EVENTS_MAP not in maps:
        return None
    wanted = [(EVENTS_MAP, pin) for pin in _pins(link_pin)[:1]]
    if DROPPED_MAP in maps:
        wanted.append((DROPPED_MAP, _pins(link_pin)[1]))
    made: list[Path] = []
    try:
        for name, path in wanted:
            check(lib.bpf_obj_pin(maps[name].fd, os.fsencode(path)),
                  f"pin the {name} map at {str(path)!r}",
                  advice="remove the stale pin, or pick another --pin path")
            made.append(path)
    except BaseException:
        for path in made:
            path.unlink(missing_ok=True)
        raise
    return made[0]


def unpin_events(link_pin: Path) -> None:
    """Remove what :func:`pin_events` pinned next to ``link_pin`` (missing pins are fine)."""
    for path in _pins(link_pin):
        path.unlink(missing_ok=True)


def event_pins(root: Path) -> list[Path]:
    """The ``*_events`` pins directly in ``root`` (not below: the daemon reads its own)."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob(f"*{EVENTS_SUFFIX}") if p.is_file())


class _Sink:
    """The handle libbpf's sample callback gets: it calls ``_deliver(data, size)``."""

    def __init__(self, receive: Callable[[object, int], int]) -> None:
        self._deliver = receive


class PinnedEvents(EventStream):
    """Consumer of one pinned ``events`` ring buffer: ``callback(event)`` per decision.

    Growth of the pinned drop counter becomes one OverrunEvent (``source``:
    the link pin's name) after the decisions that did arrive.  Pins made
    before the counter was pinned are read without it.
    """

    def __init__(self, path: Path, callback: Callable[[DecisionEvent | OverrunEvent], object]
                 ) -> None:
        self.path = path
        self.source = path.name[:-len(EVENTS_SUFFIX)] if path.name.endswith(EVENTS_SUFFIX) \
            else path.name
        self._init_stream()
        self._callbacks.append(callback)
        self._error: BaseException | None = None
        self._ptr = None
        self._dropped_fd: int | None = None
        self._sink = _Sink(self._receive)
        self._handle = ffi.new_handle(self._sink)
        try:
            self._layout = self._open_counter(Path(f"{path}{_DROPPED_SUFFIX}"))
            fd = check(lib.bpf_obj_get(os.fsencode(path)), f"open the events pin {str(path)!r}")
            try:
                ptr = lib.ring_buffer__new(fd, lib.libbpf_ffi_ring_buffer_sample, self._handle,
                                           ffi.NULL)
                self._ptr = check_ptr(ptr, f"read {str(path)!r} as a ring buffer",
                                      advice="the pin must be a BPF_MAP_TYPE_RINGBUF map")
            finally:
                os.close(fd)  # the ring buffer keeps its own mappings
        except BaseException:
            self.close()
            raise

    def _open_counter(self, counter: Path):
        """Open the drop counter pin; the decision layout from its BTF (None: no counter)."""
        if not counter.exists():
            return None
        self._dropped_fd = check(lib.bpf_obj_get(os.fsencode(counter)),
                                 f"open the drop counter pin {str(counter)!r}")
        return pinned_decision_layout(self._dropped_fd)

    @property
    def events_dropped(self) -> int:
        """Decisions the policy's ring buffer had no room for since it was loaded."""
        if self._dropped_fd is None:
            return 0
        value = ffi.new("__u64 *")
        check(lib.bpf_map_lookup_elem(self._dropped_fd, ffi.new("__u32 *", 0), value),
              f"read the drop counter of {str(self.path)!r}")
        return value[0]

    def _overrun_event(self, lost: int, total_lost: int, monotonic_ns: int) -> OverrunEvent:
        return OverrunEvent(lost=lost, total_lost=total_lost, monotonic_ns=monotonic_ns,
                            source=self.source)

    def _receive(self, data, size: int) -> int:
        try:
            self._deliver(DecisionEvent.from_bytes(bytes(ffi.buffer(data, size)), self._layout))
        except BaseException as exc:  # noqa: BLE001 - re-raised after libbpf returns
            self._error = exc
            return -errno.ECANCELED
        return 0

    def poll(self, timeout_ms: int) -> int:  # type: ignore[override]
        """Deliver what arrives within ``timeout_ms`` (milliseconds), then any overrun; how many."""
        rc = lib.ring_buffer__poll(self._ptr, timeout_ms)
        error, self._error = self._error, None
        if error is not None:
            if isinstance(error, InvalidValueError):
                raise InvalidValueError(error.errno, f"{self.path}: {error.strerror}")
            raise error
        count = 0 if rc == -errno.EINTR else check(rc, f"poll {str(self.path)!r}")
        return count + self._report_drops()

    def close(self) -> None:
        ptr, self._ptr = self._ptr, None
        if ptr is not None:
            lib.ring_buffer__free(ptr)
        fd, self._dropped_fd = self._dropped_fd, None
        if fd is not None:
            os.close(fd)
