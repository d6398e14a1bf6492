"""memcg_stats(): usage, anon, file, OOM events and pressure of every memcg under a root.

One BPF cgroup-iterator pass (memcg_stats.bpf.c) reads them all with the
memcg kfuncs, under cgroup_mutex, instead of three cgroupfs files per cgroup:
a consistent snapshot, for daemons that poll.  :class:`MemcgStatsReader`
keeps the program loaded between snapshots; :func:`memcg_stats` is one shot.

Freshness is the kernel's: anon and file are as recent as memory.stat would
show (the pass flushes the subtree's stats once, as a read of memory.stat
does), usage and events are exact, and pressure totals are the averaging
worker's (up to 2 s old, where reading memory.pressure refreshes them).
"""

from __future__ import annotations


import errno
import mmap
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..bpf.cgroup import Cgroup
from ..bpf.lifecycle import Closeable
from ..bpf.errors import CgroupError
from ..bpf.iterator import IterLink, attach_cgroup_iter, mmap_array
from ..bpf.object import BpfObject
from .features import features

__all__ = ["MemcgStats", "Pressure", "MemcgStatsReader", "memcg_stats", "DEFAULT_ROOT"]

DEFAULT_ROOT = "/sys/fs/cgroup"
_OBJECT = Path(__file__).with_name("memcg_stats.bpf.o")
_KFUNCS = ("bpf_get_mem_cgroup", "bpf_put_mem_cgroup", "bpf_mem_cgroup_usage",
           "bpf_mem_cgroup_page_state", "bpf_mem_cgroup_memory_events",
           "bpf_mem_cgroup_flush_stats")
# struct memcg_record and struct memcg_trailer of memcg_stats.bpf.c.
_RECORD = struct.Struct("<16QII256s")
_TRAILER = struct.Struct("<II")
_TRAILER_MAGIC = 0x6D656D63
_HAS_PRESSURE = 1
_FSHIFT = 11  # kernel/sched/loadavg fixed point: LOAD_INT / LOAD_FRAC
_INITIAL_CAPACITY = 1024


@dataclass(frozen=True)
class Pressure:
    """memory.pressure: share of time stalled (percent) over 10/60/300 s, and totals (µs)."""

    some_avg10: float
    some_avg60: float
    some_avg300: float
    some_total_us: int
    full_avg10: float
    full_avg60: float
    full_avg300: float
    full_total_us: int


@dataclass(frozen=True)
class MemcgStats:
    """One memcg.  Sizes are bytes; ``limit`` is memory.max (None for "max")."""

    path: str
    cgroup_id: int
    depth: int  # 0 for the root of the snapshot
    usage: int  # memory.current
    limit: int | None
    anon: int  # memory.stat anon
    file: int  # memory.stat file
    oom: int  # memory.events oom
    oom_kill: int  # memory.events oom_kill
    pressure: Pressure | None  # None where the kernel keeps none (root cgroup, PSI off)


def _percent(fixed: int) -> float:
    """The kernel's LOAD_INT.LOAD_FRAC rendering of a PSI average, as a float."""
    return (fixed >> _FSHIFT) + (((fixed & ((1 << _FSHIFT) - 1)) * 100) >> _FSHIFT) / 100


def _pressure(fields: Sequence[int]) -> Pressure:
    some_total, full_total, s10, s60, s300, f10, f60, f300 = fields
    return Pressure(_percent(s10), _percent(s60), _percent(s300), some_total // 1000,
                    _percent(f10), _percent(f60), _percent(f300), full_total // 1000)


def _decode(buffer: bytes, root: str, page_size: int) -> list[MemcgStats]:
    """Records in walk (pre-)order -> MemcgStats; a parent always precedes its children."""
    unlimited = ((1 << 63) - 1) // page_size  # PAGE_COUNTER_MAX
    paths: dict[int, tuple[str, int]] = {}
    found: list[MemcgStats] = []
    for (cgroup_id, parent_id, usage, max_pages, anon, file, oom, oom_kill,
         *psi, _level, flags, raw_name) in _RECORD.iter_unpack(buffer):
        parent = paths.get(parent_id)
        if parent is None:  # the walk's root
            path, depth = root, 0
        else:
            name = os.fsdecode(raw_name.split(b"\0", 1)[0])
            path, depth = f"{parent[0]}/{name}", parent[1] + 1
        paths[cgroup_id] = (path, depth)
        found.append(MemcgStats(
            path, cgroup_id, depth, usage, None if max_pages >= unlimited else max_pages * page_size,
            anon, file, oom, oom_kill, _pressure(psi) if flags & _HAS_PRESSURE else None))
    return found


class MemcgStatsReader(Closeable):
    """A loaded stats iterator for one root; :meth:`read` takes a snapshot.

    Keeps a BPF program, an iterator link and a mapping of the record array;
    :meth:`close` (or the ``with`` block's end) frees them.  The array grows
    (one reload) when a pass finds more memcgs than it holds.
    """

    def __init__(self, root: str | os.PathLike[str] | Cgroup = DEFAULT_ROOT, *,
                 capacity: int = _INITIAL_CAPACITY) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int):
            raise TypeError(f"capacity must be an int, not {type(capacity).__name__}")
        if not 0 < capacity < 1 << 24:
            raise ValueError(f"capacity must be between 1 and {(1 << 24) - 1} memcgs, not {capacity}")
        if not isinstance(root, (str, os.PathLike, Cgroup)):
            raise TypeError(f"root must be a cgroup path or a Cgroup, not {type(root).__name__}")
        super().__init__()
        self._obj: BpfObject | None = None
        self._link: IterLink | None = None
        self._view: mmap.mmap | None = None
        self._page_size = os.sysconf("SC_PAGE_SIZE")
        cgroup = Cgroup.open(root.path if isinstance(root, Cgroup) else root)
        try:
            for kfunc in _KFUNCS:
                features().require(f"kfunc:{kfunc}")
            if "memory" not in cgroup.read("cgroup.controllers").split():
                raise CgroupError(errno.ENOENT, f"cgroup {str(cgroup.path)!r} has no memory "
                                  "controller; give a cgroup2 directory whose parent has +memory "
                                  "in cgroup.subtree_control (or the cgroup2 root)")
            self._root = str(cgroup.path)
            self._load(cgroup, capacity)
        finally:
            cgroup.close()

    @property
    def root(self) -> str:
        return self._root

    @property
    def capacity(self) -> int:
        """How many memcgs one pass can record before the array must grow."""
        with self._lock:
            return self._live()[0].maps["records"].max_entries

    def _load(self, cgroup: Cgroup, capacity: int) -> None:
        obj = BpfObject.open(_OBJECT)
        try:
            records = obj.maps["records"]
            if records.value_size != _RECORD.size:
                raise RuntimeError(f"{_OBJECT.name} records are {records.value_size} bytes, "
                                   f"memcg_stats.py reads {_RECORD.size}: rebuild the object")
            records.max_entries = capacity
            obj.load()
            link = attach_cgroup_iter(obj.programs["memcg_stats"], cgroup, "descendants_pre")
        except BaseException:
            obj.close()
            raise
        try:
            view = mmap_array(records)
        except BaseException:
            link.close()
            obj.close()
            raise
        self._obj, self._link, self._view = obj, link, view

    def _live(self) -> tuple[BpfObject, IterLink, mmap.mmap]:
        obj, link, view = self._obj, self._link, self._view
        if obj is None or link is None or view is None:
            raise self._closed_error()
        return obj, link, view

    @property
    def closed(self) -> bool:
        return self._obj is None

    def _closed_message(self) -> str:
        return f"the memcg stats reader of {self._root!r} is closed; make a new one"

    def _grow(self, needed: int) -> None:
        """Reload with room for ``needed`` memcgs and a quarter more."""
        cgroup = Cgroup.open(self._root)
        try:
            self._free()
            self._load(cgroup, needed + needed // 4 + 1)
        finally:
            cgroup.close()

    def read(self) -> list[MemcgStats]:
        """One pass: every memcg under the root (root first, parents before children)."""
        with self._lock:
            for _ in range(3):  # the tree may grow between a pass and the reload
                _, link, view = self._live()
                output = link.read()
                if len(output) != _TRAILER.size:
                    raise RuntimeError(f"the memcg stats iterator wrote {len(output)} bytes, "
                                       f"not its {_TRAILER.size}-byte trailer")
                magic, seen = _TRAILER.unpack(output)
                if magic != _TRAILER_MAGIC:
                    raise RuntimeError("the memcg stats iterator's trailer is damaged")
                capacity = len(view) // _RECORD.size
                if seen <= capacity:
                    return _decode(view[:seen * _RECORD.size], self._root, self._page_size)
                self._grow(seen)
            raise RuntimeError(f"the cgroup tree under {self._root!r} kept outgrowing the "
                               "stats array; try again")

    def _free(self) -> None:
        view, link, obj = self._view, self._link, self._obj
        self._view = self._link = self._obj = None
        if view is not None:
            view.close()
        if link is not None:
            link.close()
        if obj is not None:
            obj.close()

    def _release(self) -> None:
        """Free the program, the link and the mapping."""
        self._free()

    def __repr__(self) -> str:
        return f"<MemcgStatsReader {getattr(self, '_root', '?')!r}{'' if self._obj else ' closed'}>"


def memcg_stats(root: str | os.PathLike[str] | Cgroup = DEFAULT_ROOT) -> list[MemcgStats]:
    """Every memcg under ``root`` (a cgroup2 directory with a memory controller), root first.

    Needs the memcg kfuncs of mm/bpf_memcontrol.c (Linux 7.2 has them, 6.18
    has none) and root (CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN).  For repeated snapshots keep a
    :class:`MemcgStatsReader`: this loads the program each call.
    """
    with MemcgStatsReader(root) as reader:
        return reader.read()
