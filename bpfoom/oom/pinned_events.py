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

Both pins are opened with ``Map.from_pinned()`` and the ring is read by the
same :class:`~bpfoom.RingBuffer` policies use, so a reader closes from any
thread (waking a blocked ``poll()`` or ``events()``) and has a ``fileno()``.
"""

from __future__ import annotations


import errno
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from ..bpf.cgroup import mounts
from ..bpf.lifecycle import Closeable
from ..bpf.errors import InvalidValueError, NotFoundError
from ..bpf.event_stream import EventStream
from ..bpf.map import Map
from ..bpf.ringbuf import RingBuffer
from .events import DROPPED_MAP, EVENTS_MAP, DecisionEvent, pinned_decision_layout
from .kill_events import OverrunEvent
from .records import RecordLayout

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


def pin_events(maps: Mapping[str, Map], link_pin: Path) -> Path | None:
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
            maps[name].pin(path)
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


class PinnedEvents(Closeable, EventStream[DecisionEvent | OverrunEvent]):
    """Consumer of one pinned ``events`` ring buffer: ``callback(event)`` per decision.

    Growth of the pinned drop counter becomes one OverrunEvent (``source``:
    the link pin's name) after the decisions that did arrive.  Pins made
    before the counter was pinned are read without it.  ``callback`` may be
    None: then read with :meth:`events` (or add callbacks with ``on_event``).
    A context manager; :meth:`close` works from any thread.
    """

    def __init__(self, path: str | os.PathLike[str],
                 callback: Callable[[DecisionEvent | OverrunEvent], object] | None = None
                 ) -> None:
        super().__init__()  # _lock: the fields below; never held across a wait
        self.path = Path(path)
        name = self.path.name
        self.source = name[:-len(EVENTS_SUFFIX)] if name.endswith(EVENTS_SUFFIX) else name
        self._init_stream()
        if callback is not None:
            self._callbacks.append(callback)
        self._ring: RingBuffer | None = None
        self._events: Map | None = None
        self._dropped: Map | None = None
        try:
            self._layout = self._open_counter(Path(f"{self.path}{_DROPPED_SUFFIX}"))
            self._events = Map.from_pinned(self.path)
            try:
                self._ring = RingBuffer(self._events, self._receive)
            except InvalidValueError as err:
                raise InvalidValueError(err.errno, f"could not read {str(self.path)!r} as a ring "
                                        f"buffer: {err.strerror}") from None
        except BaseException:
            self.close()
            raise

    def _open_counter(self, counter: Path) -> RecordLayout | None:
        """Open the drop counter pin; the decision layout from its BTF (None: no counter)."""
        if not counter.exists():
            return None
        self._dropped = Map.from_pinned(counter)
        return pinned_decision_layout(self._dropped.fd)

    # -- EventStream ---------------------------------------------------------------
    def _event_ring(self) -> RingBuffer:
        ring = self._ring
        if ring is None:
            raise self._closed_error()
        return ring

    @property
    def events_dropped(self) -> int:
        """Decisions the policy's ring buffer had no room for since it was loaded."""
        dropped = self._dropped
        return 0 if dropped is None else dropped[0]

    def _overrun_event(self, lost: int, total_lost: int, monotonic_ns: int) -> OverrunEvent:
        return OverrunEvent(lost=lost, total_lost=total_lost, monotonic_ns=monotonic_ns,
                            source=self.source)

    def _receive(self, data: bytes) -> None:
        try:
            event = DecisionEvent.from_bytes(data, self._layout)
        except InvalidValueError as err:
            raise InvalidValueError(err.errno, f"{self.path}: {err.strerror}") from None
        self._deliver(event)

    # -- lifetime ------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._ring is None and self._events is None and self._dropped is None

    def _closed_message(self) -> str:
        return f"the reader of {str(self.path)!r} is closed; make a new PinnedEvents"

    def _release(self) -> None:
        """Stop reading (a poll() or events() blocked in another thread ends) and close the pins'
        fds; the pins stay."""
        ring, self._ring = self._ring, None
        maps = (self._events, self._dropped)
        self._events = self._dropped = None
        if ring is not None:
            ring.close()  # wakes its pollers; never waits for them
        for pinned in maps:
            if pinned is not None:
                pinned.close()

    def __repr__(self) -> str:
        return f"<PinnedEvents {str(self.path)!r} {'closed' if self.closed else 'open'}>"
