"""Map: one BPF map, a view of a BpfObject's map or opened from a pin.

Two kinds of ownership, one Map class:

* ``obj.maps[name]`` is a view: it holds no C resource of its own, keeps its
  BpfObject alive, and raises ClosedError once the object is closed.  Element
  access needs a loaded object.
* ``Map.from_pinned(path)`` owns a new fd to a pinned map: ``close()`` (or
  the ``with`` block's end) closes that fd, and later use raises ClosedError.
  The pin, and so the map, stays.

Either way the map's owner (the BpfObject, or a :class:`_PinnedFd`) holds
the lock, the state and the ring buffers to close with it (a
:class:`MapOwner`), and a small ``_source`` answers the map's sizes and fd, so every element operation is
the same code.  Keys and values are typed from the map's BTF (plain
``bytes`` for maps without BTF; ints are accepted for 1/2/4/8-byte keys and
values either way).  Per-CPU maps read and write one value per possible CPU
as a list.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import functools
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, Self, cast

from ._ffi import CData, ffi, lib
from .btf import Btf, BytesCodec, Codec, IntCodec, ReadBuffer, encode_for, kernel_btf
from .cgroup import mounts
from .kernel_objects import fd_kind
from .lifecycle import Closeable
from .errors import (ENOTSUPP, BatchNotSupportedError, BpfError, ClosedError, NotSupportedError,
                     InvalidValueError, KeyExistsError, KeyNotFoundError, MapFullError, NotFoundError, PathNotFoundError, StateError, check,
                     error_from_errno)

if TYPE_CHECKING:
    from .object import ObjectCore

__all__ = ["Map", "MapFlag", "MapInfo", "MapOwner", "map_info"]


class MapFlag(enum.IntFlag):
    """Flags of a map write (:meth:`Map.update`, :meth:`Map.push`) or read (:meth:`Map.lookup`).

    ``NOEXIST`` creates only (:class:`KeyExistsError` if the key is there),
    ``EXIST`` replaces only (:class:`KeyNotFoundError` if it is not; for a
    full queue or stack: drop the oldest), ``LOCK`` takes the value's
    ``struct bpf_spin_lock`` around the copy (maps whose value has one).
    """

    ANY = 0
    NOEXIST = int(lib.BPF_NOEXIST)
    EXIST = int(lib.BPF_EXIST)
    LOCK = int(lib.BPF_F_LOCK)


_MISSING = object()


@dataclass(frozen=True)
class MapInfo:
    """What the kernel reports about a created map (BPF_OBJ_GET_INFO_BY_FD)."""

    id: int
    type: str
    name: str
    key_size: int
    value_size: int
    max_entries: int
    flags: int
    btf_id: int
    btf_vmlinux_value_type_id: int = 0  # a struct_ops map's value type in the kernel's BTF


def map_info(fd: int) -> MapInfo:
    """What the kernel reports about map ``fd`` (one this process did not create, say)."""
    info = _query(fd, f"map fd {fd}")
    return MapInfo(info.id, _type_name(info.type), ffi.string(info.name).decode(),
                   info.key_size, info.value_size, info.max_entries, info.map_flags,
                   info.btf_id, info.btf_vmlinux_value_type_id)


@functools.lru_cache(maxsize=None)
def _type_name(map_type: int) -> str:
    """libbpf's name of a map type, asked once per type per process (every open asks)."""
    raw = lib.libbpf_bpf_map_type_str(map_type)
    return ffi.string(raw).decode() if raw != ffi.NULL else f"unknown({map_type})"


class MapOwner(Protocol):
    """What a map's lock, state and ring buffers belong to (:attr:`Map.owner`): its
    BpfObject's :class:`~bpfoom.bpf.object.ObjectCore`, or the fd of a map opened from a pin
    or an id.  Hold ``lock`` to make several steps atomic against close() and other threads."""

    lock: threading.RLock
    state: str  # "open" (not loaded yet), "loaded" or "closed"
    rings: weakref.WeakSet[Closeable]  # ring buffers on its maps: closed with it

    def check_open(self) -> None:
        """ClosedError once closed; lock held."""
        ...

    def require_loaded(self, what: str) -> object:
        """StateError unless loaded (ClosedError once closed); lock held."""
        ...

    def require_unloaded(self, what: str) -> object:
        """StateError once loaded (ClosedError once closed); lock held."""
        ...


def _query(fd: int, what: str) -> CData:
    """The kernel's ``struct bpf_map_info`` of map ``fd``."""
    info = ffi.new("struct bpf_map_info *")
    size = ffi.new("__u32 *", ffi.sizeof("struct bpf_map_info"))
    check(lib.bpf_map_get_info_by_fd(fd, info, size), f"query {what}")
    return info


# -- where a map's facts come from -------------------------------------------------
#
# A source answers: fd(), key_size(), value_size(), max_entries(), flags(),
# btf_type_ids(), is_internal(), frozen_because() (why user space may not write
# it, or None), btf() (a context manager giving the Btf the type ids refer to,
# or None), where (text for repr), and for the Map's own close() and ``with``:
# require_owned(name) and close(name).  Call with the owner's lock held.

class _ObjectSource:
    """A map of a BpfObject: libbpf's ``struct bpf_map`` (sizes may change until load)."""

    __slots__ = ("_core", "_ptr", "_open_btf_ids")
    where = ""

    def __init__(self, core: ObjectCore, ptr: CData) -> None:
        self._core, self._ptr = core, ptr
        # libbpf drops the BTF ids of maps the kernel takes no BTF for (queue, stack) at
        # load; the object's BTF still types their values.
        self._open_btf_ids: tuple[int, int] = (lib.bpf_map__btf_key_type_id(ptr),
                                               lib.bpf_map__btf_value_type_id(ptr))

    def fd(self) -> int:
        return int(lib.bpf_map__fd(self._ptr))

    def key_size(self) -> int:
        return int(lib.bpf_map__key_size(self._ptr))

    def value_size(self) -> int:
        return int(lib.bpf_map__value_size(self._ptr))

    def max_entries(self) -> int:
        return int(lib.bpf_map__max_entries(self._ptr))

    def flags(self) -> int:
        return int(lib.bpf_map__map_flags(self._ptr))

    def btf_type_ids(self) -> tuple[int, int]:
        ids: tuple[int, int] = (lib.bpf_map__btf_key_type_id(self._ptr),
                                lib.bpf_map__btf_value_type_id(self._ptr))
        return self._open_btf_ids if ids == (0, 0) else ids

    def is_internal(self) -> bool:
        return bool(lib.bpf_map__is_internal(self._ptr))

    def frozen_because(self) -> str | None:
        """A .rodata/.kconfig map: libbpf freezes it at load, user space can never write it."""
        if self.is_internal() and self.flags() & lib.BPF_F_RDONLY_PROG:
            return ("read-only globals are frozen at load; set them before load() through "
                    "obj.rodata")
        return _frozen_in_fdinfo(lib.bpf_map__fd(self._ptr))

    def btf(self) -> contextlib.AbstractContextManager[Btf | None]:
        return contextlib.nullcontext(self._core.btf)

    def require_owned(self, name: str) -> None:
        raise StateError(errno.EINVAL, f"map {name!r} belongs to its BpfObject and closes with "
                         "it; close the object (a map opened with Map.from_pinned() closes "
                         "on its own)")

    def close(self, name: str) -> None:
        self.require_owned(name)


class _PinnedFd:
    """Owner and source of a map opened from a pin: its fd, lock, state and kernel facts.

    The :class:`MapOwner` of such a map, as a BpfObject's core is for its maps.
    The map exists in the kernel already, so its state is "loaded" until
    close(), then "closed".
    """

    def __init__(self, path: str, fd: int, info: CData) -> None:
        self.lock = threading.RLock()
        self._fd: int | None = fd
        self.state = "loaded"
        self.rings: weakref.WeakSet[Closeable] = weakref.WeakSet()  # closed with this map
        self.path = path
        self.where = f" pinned at {path!r}"
        self.name = ffi.string(info.name).decode()
        self.type_code: int = info.type
        self._sizes: tuple[int, int, int, int] = (info.key_size, info.value_size,
                                                  info.max_entries, info.map_flags)
        self._btf_id: int = info.btf_id
        self._btf_ids: tuple[int, int] = (info.btf_key_type_id, info.btf_value_type_id)

    @classmethod
    def by_id(cls, map_id: int) -> "_PinnedFd":
        action = f"open BPF map {map_id}"
        fd: int = lib.bpf_map_get_fd_by_id(map_id)
        if fd == -errno.ENOENT:
            raise NotFoundError(errno.ENOENT, f"could not {action}: there is no map with that id "
                                "(it may have been freed); check the id")
        check(fd, action, advice="opening a map by id needs CAP_SYS_ADMIN"
              if fd in (-errno.EPERM, -errno.EACCES) else None)
        try:
            self = cls(f"id {map_id}", fd, _query(fd, action))
        except BaseException:
            os.close(fd)
            raise
        self.where = f" id={map_id}"
        return self

    @classmethod
    def open(cls, path: str) -> "_PinnedFd":
        action = f"open the map pinned at {path!r}"
        fd: int = lib.bpf_obj_get(os.fsencode(path))
        if fd == -errno.ENOENT:
            raise PathNotFoundError(errno.ENOENT, f"could not {action}: nothing is pinned there; "
                                    "check the path (pins live on the BPF filesystem, "
                                    "e.g. under /sys/fs/bpf)")
        if fd == -errno.EACCES:
            _explain_refused_pin(path, action)
        check(fd, action)
        try:
            kind = fd_kind(fd)
            if kind not in ("map", None):
                raise InvalidValueError(errno.EINVAL, f"could not {action}: it is a BPF {kind}, "
                                        "not a map; give the pin of a map (Link.from_pinned() "
                                        "opens pinned links)")
            return cls(path, fd, _query(fd, f"the map pinned at {path!r}"))
        except BaseException:
            os.close(fd)
            raise

    # -- the owner's part ------------------------------------------------------
    def live(self) -> int:
        """The fd; ClosedError once closed."""
        fd = self._fd
        if fd is None:
            raise ClosedError(errno.EBADF, f"the map pinned at {self.path!r} is closed here; "
                              "open it again with Map.from_pinned()")
        return fd

    def check_open(self) -> None:
        with self.lock:
            self.live()

    def require_loaded(self, what: str) -> int:
        return self.live()

    def require_unloaded(self, what: str) -> None:
        self.live()
        raise StateError(errno.EBADFD, f"cannot {what}: it was opened from a pin, so the kernel "
                         "created it already; set it before the creating object's load()")

    # -- the source's part -----------------------------------------------------
    def fd(self) -> int:
        return self.live()

    def key_size(self) -> int:
        return self._sizes[0]

    def value_size(self) -> int:
        return self._sizes[1]

    def max_entries(self) -> int:
        return self._sizes[2]

    def flags(self) -> int:
        return self._sizes[3]

    def btf_type_ids(self) -> tuple[int, int]:
        return self._btf_ids

    def is_internal(self) -> bool:
        return False  # asked only of maps not created yet, which a pin never is

    def frozen_because(self) -> str | None:
        return _frozen_in_fdinfo(self._fd)

    def btf(self) -> contextlib.AbstractContextManager[Btf | None]:
        """The creating object's BTF, read from the kernel for one ``with`` block."""
        if not self._btf_id or not any(self._btf_ids):
            return contextlib.nullcontext(None)
        return kernel_btf(self._btf_id)

    def require_owned(self, name: str) -> None:
        self.check_open()

    def close(self, name: str = "") -> None:
        with self.lock:
            fd, self._fd = self._fd, None
            if fd is None:
                return
            self.state = "closed"
            for ring in list(self.rings):
                ring.close()  # wakes its pollers; never waits for them
            os.close(fd)

    def __del__(self) -> None:
        # Backstop only: Map.close() is the plan.
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def _frozen_in_fdinfo(fd: int | None) -> str | None:
    """Frozen maps (BPF_MAP_FREEZE: read-only globals, Map.freeze()) say so in fdinfo."""
    try:
        with open(f"/proc/self/fdinfo/{fd}") as fdinfo:
            frozen = any(line.split() == ["frozen:", "1"] for line in fdinfo)
    except OSError:
        return None
    return "it was frozen (Map.freeze(), or libbpf's read-only globals)" if frozen else None


def _explain_refused_pin(path: str, action: str) -> None:
    """EACCES from BPF_OBJ_GET: say so if the path is no pin at all (the kernel's answer then)."""
    target = os.path.abspath(path)
    if os.path.isdir(target):
        raise InvalidValueError(errno.EISDIR, f"could not {action}: it is a directory; give "
                                "the path of a pinned map")
    on_bpffs = any(target == str(point) or target.startswith(str(point).rstrip("/") + "/")
                   for point in mounts("bpf"))
    if not on_bpffs:
        raise InvalidValueError(errno.EINVAL, f"could not {action}: it is not on a BPF "
                                "filesystem, so it is no pin; give a path under the bpffs mount "
                                "(mount -t bpf bpf /sys/fs/bpf)")


class Map(Closeable):
    """One BPF map: a view of a BpfObject's map, or opened with :meth:`from_pinned`."""

    is_struct_ops = False  # StructOpsMap: a struct_ops value, attached through a Link

    def __init__(self, core: ObjectCore, ptr: CData, name: str) -> None:
        """A view of map ``ptr`` of ``core``'s object; BpfObject makes these (``obj.maps``)."""
        self._bind(core, _ObjectSource(core, ptr), ptr, name, _type_name(lib.bpf_map__type(ptr)))

    def _bind(self, owner: MapOwner, source: _ObjectSource | _PinnedFd, ptr: CData | None,
              name: str, type_name: str) -> None:
        self._owner = owner  # lock, state, ring buffers: the object's core or the _PinnedFd
        self._source = source
        self._ptr: CData | None = ptr  # libbpf's struct bpf_map (None for a pinned map)
        self.name = name
        self._type = type_name  # fixed once created: repr needs no C call
        self._id: int | None = None
        self._codecs: tuple[Codec, Codec] | None = None
        self._cells: _Cells | None = None  # the element fast path's buffers, after load
        self._key_label = f"a key of map {name!r}"
        self._value_label = f"a value of map {name!r}"

    @classmethod
    def from_pinned(cls, path: str | os.PathLike[str]) -> "Map":
        """Open the map pinned at ``path``, owning a new fd to it; close() leaves the pin.

        PathNotFoundError if nothing is pinned there, InvalidValueError
        (EINVAL) if the pin is not a map.  Keys and values are typed from the
        BTF of the object that created the map, read from the kernel (which
        needs CAP_SYS_ADMIN) when an element is first touched.
        """
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"Map.from_pinned() takes a path, not {type(path).__name__}")
        pin = _PinnedFd.open(os.fsdecode(path))
        view = Map.__new__(Map)  # a plain Map even through a subclass: pins are no struct_ops views
        view._bind(pin, pin, None, pin.name, _type_name(pin.type_code))
        return view

    @classmethod
    def from_id(cls, map_id: int) -> "Map":
        """Open the map with kernel id ``map_id`` (needs CAP_SYS_ADMIN), owning a new fd.

        Like :meth:`from_pinned`: typed from its creator's BTF, ``close()``
        closes only this fd.  NotFoundError if no map has that id.
        """
        if isinstance(map_id, bool) or not isinstance(map_id, int):
            raise TypeError(f"Map.from_id() takes a map id (int), not {type(map_id).__name__}")
        held = _PinnedFd.by_id(map_id)
        view = Map.__new__(Map)
        view._bind(held, held, None, held.name, _type_name(held.type_code))
        return view

    # -- pins and freezing -------------------------------------------------
    def pin(self, path: str | os.PathLike[str]) -> None:
        """Pin the created map at ``path`` on bpffs (it then outlives its object and process).

        BusyError if the path is taken; the map stays pinned until
        :meth:`unpin` or the path is removed.
        """
        text = os.fsdecode(path)
        with self._owner.lock:
            self._owner.require_loaded(f"pin map {self.name!r}")
            rc = lib.bpf_obj_pin(self._source.fd(), os.fsencode(text))
            advice = {errno.EEXIST: "that path is taken; remove the stale pin or pick another path",
                      errno.EINVAL: "pin paths must be on a mounted BPF filesystem "
                      "(mount -t bpf bpf /sys/fs/bpf)"}.get(-rc)
            check(rc, f"pin map {self.name!r} at {text!r}", advice=advice,
                  cls=InvalidValueError if rc == -errno.EINVAL else None)

    def unpin(self, path: str | os.PathLike[str]) -> None:
        """Remove the pin of this map at ``path`` (InvalidValueError if another object is pinned there)."""
        text = os.fsdecode(path)
        with self._owner.lock:
            own = self.id
            other = lib.bpf_obj_get(os.fsencode(text))
            if other == -errno.ENOENT:
                raise PathNotFoundError(errno.ENOENT, f"could not unpin map {self.name!r}: nothing "
                                        f"is pinned at {text!r}")
            check(other, f"open the pin {text!r}")
            try:
                if fd_kind(other) not in ("map", None) or map_info(other).id != own:
                    raise InvalidValueError(errno.EINVAL, f"could not unpin map {self.name!r}: "
                                            f"{text!r} is the pin of another BPF object")
            finally:
                os.close(other)
            os.unlink(text)

    def reuse(self, existing: Map | str | os.PathLike[str]) -> None:
        """Before load(): make load() use ``existing`` (a loaded Map, one opened from a pin or
        id, or the path of a pin) instead of creating this map.

        The object's programs then share that map.  load() fails with the
        kernel's reason if its type, key/value sizes or max_entries differ.
        """
        if not isinstance(existing, (Map, str, os.PathLike)):
            raise TypeError(f"reuse() takes a Map or the path of a pinned map, not "
                            f"{type(existing).__name__}")
        with self._owner.lock:
            self._owner.require_unloaded(f"make map {self.name!r} reuse another")
            if isinstance(existing, Map):
                with existing._owner.lock:
                    existing._owner.require_loaded(f"reuse map {existing.name!r}")
                    check(lib.bpf_map__reuse_fd(self._ptr, existing._source.fd()),
                          f"make map {self.name!r} reuse map {existing.name!r}")
                return
            with Map.from_pinned(existing) as pinned:
                check(lib.bpf_map__reuse_fd(self._ptr, pinned._source.fd()),
                      f"make map {self.name!r} reuse the map pinned at {os.fsdecode(existing)!r}")

    @property
    def pin_path(self) -> str | None:
        """Where libbpf pins (or pinned) this object map: ``pinning`` in its definition, under
        the object's ``pin_root_path``; None for maps it does not pin."""
        with self._owner.lock:
            self._owner.check_open()
            if self._ptr is None:
                return None
            raw = lib.bpf_map__pin_path(self._ptr)
            return ffi.string(raw).decode() if raw != ffi.NULL else None

    def freeze(self) -> None:
        """Make the map read-only for user space from now on (BPF programs may still write it)."""
        with self._owner.lock:
            self._owner.require_loaded(f"freeze map {self.name!r}")
            check(lib.bpf_map_freeze(self._source.fd()), f"freeze map {self.name!r}")

    def __repr__(self) -> str:
        """Name, type, state, and the kernel's id once loaded; no C memory after close."""
        return f"<{type(self).__name__} {self.name!r} {self._type}{self._repr_detail()}>"

    def _repr_detail(self) -> str:
        with self._owner.lock:
            state = self._owner.state
            where = self._source.where
            if state == "closed":
                return f"{where} closed"
            detail = f"{where} {state} max_entries={self._source.max_entries()}"
            if state == "loaded":
                try:
                    detail += f" id={self.id}"
                except OSError:  # a repr never raises
                    pass
            return detail

    # -- lifetime (maps opened from a pin) --------------------------------
    def close(self) -> None:
        """Close the fd of a map opened with :meth:`from_pinned` (and ring buffers on it).

        Idempotent; the pinned map stays.  A BpfObject's map closes with its
        object: StateError here.
        """
        self._source.close(self.name)

    @property
    def closed(self) -> bool:
        return self._owner.state == "closed"

    def __enter__(self) -> Self:
        """For a map opened with from_pinned(); StateError for a BpfObject's map."""
        self._source.require_owned(self.name)
        self._owner.check_open()
        return self

    # -- metadata ----------------------------------------------------------
    @property
    def owner(self) -> MapOwner:
        """What this map's lock, state and ring buffers belong to (see :class:`MapOwner`)."""
        return self._owner

    @property
    def flags(self) -> int:
        """The map's ``map_flags`` (``BPF_F_MMAPABLE``, ``BPF_F_RDONLY_PROG``, ...)."""
        return self._meta(self._source.flags)

    def btf(self) -> contextlib.AbstractContextManager[Btf | None]:
        """The BTF that types this map's keys and values, for one ``with`` block: its object's,
        or, for a map opened from a pin or id, its creator's read from the kernel (which needs
        CAP_SYS_ADMIN); None when the kernel keeps none for the map (ring buffers)."""
        with self._owner.lock:
            self._owner.check_open()
            return self._source.btf()

    def _meta(self, getter: Callable[[], int]) -> int:
        with self._owner.lock:
            self._owner.check_open()
            return getter()

    @property
    def type(self) -> str:
        """Map type as libbpf spells it ("hash", "array", "struct_ops", ...)."""
        self._owner.check_open()
        return self._type

    @property
    def key_size(self) -> int:
        return self._meta(self._source.key_size)

    @property
    def value_size(self) -> int:
        return self._meta(self._source.value_size)

    @property
    def max_entries(self) -> int:
        """Capacity: entries, or bytes for a ring buffer; settable before load()."""
        return self._meta(self._source.max_entries)

    @max_entries.setter
    def max_entries(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"max_entries of map {self.name!r} must be an int, "
                            f"not {type(value).__name__}")
        with self._owner.lock:
            self._owner.require_unloaded(f"resize map {self.name!r}")
            ptr = self._ptr
            if not 0 < value < 1 << 32:
                raise InvalidValueError(errno.EINVAL, f"max_entries of map {self.name!r} must be "
                                        f"between 1 and {(1 << 32) - 1}, not {value}")
            map_type = lib.bpf_map__type(ptr)
            if map_type in (lib.BPF_MAP_TYPE_RINGBUF, lib.BPF_MAP_TYPE_USER_RINGBUF):
                page = os.sysconf("SC_PAGE_SIZE")
                if value % page or value & (value - 1):
                    raise InvalidValueError(errno.EINVAL, f"a ring buffer's size must be a power "
                                            f"of two and a multiple of the page size ({page}); "
                                            f"{value} is not (map {self.name!r})")
            check(lib.bpf_map__set_max_entries(ptr, value), f"resize map {self.name!r}")

    @property
    def fd(self) -> int:
        """The map's fd (the object's, or this Map's own for a pin); after load() only."""
        with self._owner.lock:
            self._owner.require_loaded(f"get the fd of map {self.name!r}")
            return self._source.fd()

    def info(self) -> MapInfo:
        """The kernel's view of the created map."""
        with self._owner.lock:
            return map_info(self.fd)

    @property
    def id(self) -> int:
        """The kernel's id of the created map (asked once: it never changes)."""
        with self._owner.lock:
            if self._id is None:
                self._id = self.info().id
            else:
                self._owner.require_loaded(f"get the id of map {self.name!r}")
            return self._id

    # -- elements ----------------------------------------------------------
    def _element_codecs(self) -> tuple[Codec, Codec]:
        """Key and value codecs, built once; lock held."""
        if self._codecs is None:
            source = self._source
            key_id, value_id = source.btf_type_ids()
            key_size, value_size = source.key_size(), source.value_size()
            with source.btf() as btf:
                key = btf.codec(key_id) if btf and key_id and btf.size_of(key_id) == key_size \
                    else BytesCodec(f"key of map {self.name!r}", key_size)
                value = btf.codec(value_id) if btf and value_id and \
                    btf.size_of(value_id) == value_size \
                    else BytesCodec(f"value of map {self.name!r}", value_size)
            if "percpu" in self._type:
                value = _PerCpuCodec(value, lib.libbpf_num_possible_cpus())
            self._codecs = (key, value)
        return self._codecs

    def _element_cells(self) -> "_Cells":
        """The per-map buffers of the element fast path, made at the first access after load.

        Lock held, map loaded: the fd is fixed from here until close(), which
        takes the same lock, so caching it cannot outlive the fd.
        """
        if self._cells is None:
            key_codec, value_codec = self._element_codecs()
            self._cells = _Cells(self._source.fd(), key_codec, value_codec)
        return self._cells

    def _key_bytes(self, key: Any) -> bytes:
        key_codec, _ = self._element_codecs()
        return encode_for(self._key_label, key_codec, key)

    def _fill_key(self, cells: "_Cells", key: Any) -> CData | bytes:
        """What to pass as the key: the fast path's typed cell, else encoded bytes.  Lock held."""
        cell = cells.key
        if cell is not None:
            try:
                cell[0] = key  # cffi checks the range; anything unusual takes the codec
                return cell
            except (TypeError, OverflowError):
                pass
        return encode_for(self._key_label, cells.key_codec, key)

    def __getitem__(self, key: Any) -> Any:
        # The hot path: no BTF work, no message formatted, one lock, one syscall.
        # acquire()/release() rather than ``with``: half the cost of the lock on CPython 3.11.
        owner = self._owner
        lock = owner.lock
        lock.acquire()
        try:
            if owner.state != "loaded":
                owner.require_loaded(f"read map {self.name!r}")
            cells = self._cells or self._element_cells()
            # _fill_key() written out: the call alone is ~35 ns of the ~330 ns of Python here.
            cell = cells.key
            if cell is not None:
                try:
                    cell[0] = key  # cffi range-checks ints; anything else goes to the codec
                except (TypeError, OverflowError):
                    cell = encode_for(self._key_label, cells.key_codec, key)
            else:
                cell = encode_for(self._key_label, cells.key_codec, key)
            rc = _lookup_elem(cells.fd, cell, cells.value)
            if rc < 0:
                if rc == -errno.ENOENT:
                    raise KeyNotFoundError(errno.ENOENT, f"map {self.name!r} has no key {key!r}")
                check(rc, f"look up {key!r} in map {self.name!r}")
            if cells.value_is_int:
                return cells.value[0]
            return cells.value_codec.decode(cells.value_view)
        finally:
            lock.release()

    def get(self, key: Any, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyNotFoundError:
            return default

    def __contains__(self, key: Any) -> bool:
        return self.get(key, _MISSING) is not _MISSING

    def __setitem__(self, key: Any, value: Any) -> None:
        self.update(key, value)

    def update(self, key: Any, value: Any, flags: MapFlag = MapFlag.ANY) -> None:
        """Write ``value`` at ``key`` as ``map[key] = value`` does, with :class:`MapFlag` s.

        ``NOEXIST``: :class:`KeyExistsError` if the key is there; ``EXIST``:
        :class:`KeyNotFoundError` if it is not; ``LOCK``: under the value's
        spin lock (InvalidValueError if it has none).
        """
        flags = _checked_flags(flags, MapFlag.NOEXIST | MapFlag.EXIST | MapFlag.LOCK, "update")
        owner = self._owner
        with owner.lock:
            if owner.state != "loaded":
                owner.check_open()
                if self._source.is_internal():
                    raise StateError(errno.EBADFD, f"cannot write map {self.name!r} before load(); "
                                     "set globals before load() through obj.rodata/.data/.bss")
                owner.require_loaded(f"write map {self.name!r}")
            cells = self._cells or self._element_cells()
            raw_key = self._fill_key(cells, key)
            raw_value = None
            if cells.value_is_int:
                try:
                    cells.value[0] = value
                    raw_value = cells.value
                except (TypeError, OverflowError):
                    pass
            if raw_value is None:
                raw_value = encode_for(self._value_label, cells.value_codec, value)
            rc = _update_elem(cells.fd, raw_key, raw_value, flags)
            if rc < 0:
                self._flag_error(rc, key, flags)
                frozen = rc == -errno.EPERM and self._source.frozen_because()
                if frozen:
                    raise StateError(errno.EBADFD, f"cannot write map {self.name!r} after load(): "
                                     f"{frozen}")
                size = self._source.max_entries()
                if rc == -errno.E2BIG and "array" in self._type:  # an index past the end
                    raise InvalidValueError(errno.E2BIG, f"could not write {key!r} to array map "
                                            f"{self.name!r}: its indexes are 0..{size - 1}")
                if rc in (-errno.E2BIG, -errno.ENOSPC):
                    raise MapFullError(-rc, f"could not add {key!r} to map {self.name!r}: the "
                                       f"map is full ({size} entries); delete some first, or "
                                       "raise its max_entries before load()")
                check(rc, f"update {key!r} in map {self.name!r}")

    def __delitem__(self, key: Any) -> None:
        with self._owner.lock:
            self._owner.require_loaded(f"delete from map {self.name!r}")
            raw_key = self._key_bytes(key)
            rc = lib.bpf_map_delete_elem(self._source.fd(), raw_key)
            if rc == -errno.ENOENT:
                raise KeyNotFoundError(errno.ENOENT, f"map {self.name!r} has no key {key!r}")
            if rc == -errno.EINVAL and "array" in self._type:
                raise InvalidValueError(errno.EINVAL, f"could not delete from array map {self.name!r}: "
                                        "array elements cannot be deleted; assign a zero value instead")
            check(rc, f"delete {key!r} from map {self.name!r}")

    def _flag_error(self, rc: int, key: Any, flags: int) -> None:
        """Raise what a flagged element call's errno means, if it means something specific."""
        if rc == -errno.EEXIST and flags & MapFlag.NOEXIST:
            raise KeyExistsError(errno.EEXIST, f"map {self.name!r} already has key {key!r} "
                                 "(MapFlag.NOEXIST); delete it first or write without NOEXIST")
        if rc == -errno.ENOENT and flags & MapFlag.EXIST:
            raise KeyNotFoundError(errno.ENOENT, f"map {self.name!r} has no key {key!r} to "
                                   "replace (MapFlag.EXIST); write without EXIST to create it")
        if rc == -errno.EINVAL and flags & MapFlag.LOCK:
            raise InvalidValueError(errno.EINVAL, f"map {self.name!r} refused MapFlag.LOCK: its "
                                    "value has no struct bpf_spin_lock (or the map type takes "
                                    "no lock); write without LOCK")

    def lookup(self, key: Any, flags: MapFlag = MapFlag.ANY) -> Any:
        """``map[key]``, or with ``MapFlag.LOCK`` a copy taken under the value's spin lock."""
        flags = _checked_flags(flags, MapFlag.LOCK, "lookup")
        if not flags:
            return self[key]
        with self._owner.lock:
            self._owner.require_loaded(f"read map {self.name!r}")
            cells = self._cells or self._element_cells()
            raw_key = self._fill_key(cells, key)
            rc = lib.bpf_map_lookup_elem_flags(cells.fd, raw_key, cells.value, flags)
            if rc == -errno.ENOENT:
                raise KeyNotFoundError(errno.ENOENT, f"map {self.name!r} has no key {key!r}")
            self._flag_error(rc, key, flags)
            check(rc, f"look up {key!r} in map {self.name!r}")
            return cells.value[0] if cells.value_is_int else cells.value_codec.decode(cells.value_view)

    def push(self, value: Any, flags: MapFlag = MapFlag.ANY) -> None:
        """Add ``value`` to a queue or stack map; ``MapFlag.EXIST`` drops the oldest when full.

        MapFullError when it is full without EXIST.
        """
        flags = _checked_flags(flags, MapFlag.EXIST, "push")
        with self._owner.lock:
            self._owner.require_loaded(f"push to map {self.name!r}")
            self._require_keyless("push to")
            cells = self._cells or self._element_cells()
            raw = encode_for(self._value_label, cells.value_codec, value)
            rc = _update_elem(cells.fd, ffi.NULL, raw, flags)
            if rc == -errno.E2BIG:
                raise MapFullError(errno.E2BIG, f"could not push to {self._type} map "
                                   f"{self.name!r}: it is full ({self._source.max_entries()} "
                                   "entries); pop some first, or push with MapFlag.EXIST")
            check(rc, f"push to map {self.name!r}")

    def lookup_and_delete(self, key: Any = _MISSING) -> Any:
        """Remove and return one element: ``key``'s in a hash map, the next one (no key) of a
        queue or stack.  KeyNotFoundError if there is none; NotSupportedError for map types
        the kernel cannot do it for (arrays: read and assign a zero value instead)."""
        keyless = self._type in ("queue", "stack", "bloom_filter")
        if keyless != (key is _MISSING):
            raise TypeError(f"lookup_and_delete() on {self._type} map {self.name!r} takes "
                            f"{'no key' if keyless else 'a key'}")
        with self._owner.lock:
            self._owner.require_loaded(f"pop from map {self.name!r}")
            cells = self._cells or self._element_cells()
            raw_key = ffi.NULL if keyless else self._fill_key(cells, key)
            rc = lib.bpf_map_lookup_and_delete_elem(cells.fd, raw_key, cells.value)
            if rc == -errno.ENOENT:
                what = "is empty" if keyless else f"has no key {key!r}"
                raise KeyNotFoundError(errno.ENOENT, f"map {self.name!r} {what}")
            unsupported = -rc in (ENOTSUPP, errno.EOPNOTSUPP, errno.EINVAL)
            check(rc, f"look up and delete in {self._type} map {self.name!r}",
                  cls=NotSupportedError if unsupported else None,
                  advice=(f"the kernel cannot look up and delete in {self._type} maps; "
                          "read the element, then delete it") if unsupported else None)
            return cells.value[0] if cells.value_is_int else cells.value_codec.decode(cells.value_view)

    def _require_keyless(self, what: str) -> None:
        if self._type not in ("queue", "stack"):
            raise InvalidValueError(errno.EINVAL, f"cannot {what} {self._type} map {self.name!r}: "
                                    "only queue and stack maps take values without a key; "
                                    "assign map[key] = value instead")

    def delete_batch(self, keys: Iterable[Any]) -> int:
        """Delete every key of ``keys`` in one syscall; returns how many.

        Keys are encoded before the kernel sees any.  A missing key stops the
        kernel (KeyNotFoundError saying how many were deleted, in order);
        maps without batch deletes raise :class:`BatchNotSupportedError`.
        """
        if isinstance(keys, (str, bytes)) or not isinstance(keys, Iterable):
            raise TypeError("delete_batch() takes an iterable of keys")
        wanted = list(keys)
        with self._owner.lock:
            self._owner.require_loaded(f"delete from map {self.name!r} in batches")
            if not wanted:
                return 0
            cells = self._cells or self._element_cells()
            packed = _pack(self._key_label, cells.key_codec, cells.key_ctype, wanted)
            count = ffi.new("__u32 *", len(wanted))
            rc = lib.bpf_map_delete_batch(cells.fd, packed, count, _batch_opts(0))
            if rc == -errno.ENOENT:
                raise KeyNotFoundError(errno.ENOENT, f"could not delete all {len(wanted)} keys "
                                       f"from map {self.name!r}: the first {count[0]} were "
                                       f"deleted, then key {wanted[count[0]]!r} was missing")
            if rc < 0:
                raise self._batch_error(rc, "delete from", "BPF_MAP_DELETE_BATCH",
                                        "del map[key], one element per syscall,", count[0])
            return len(wanted)

    def keys(self) -> list[Any]:
        """A snapshot of the keys (at most max_entries, as the kernel iterates them)."""
        with self._owner.lock:
            self._owner.require_loaded(f"iterate map {self.name!r}")
            source = self._source
            fd = source.fd()
            key_codec, _ = self._element_codecs()
            size = key_codec.size
            current, following = ffi.new("char[]", size), ffi.new("char[]", size)
            keys: list[Any] = []
            previous = ffi.NULL
            for _ in range(source.max_entries()):
                rc = lib.bpf_map_get_next_key(fd, previous, following)
                if rc == -errno.ENOENT:
                    break
                check(rc, f"iterate map {self.name!r}")
                keys.append(key_codec.decode(ffi.buffer(following, size)))
                ffi.memmove(current, following, size)
                previous = current
            return keys

    def __iter__(self) -> Iterator[Any]:
        return iter(self.keys())

    def values(self) -> list[Any]:
        return [value for _, value in self.items()]

    def items(self) -> list[tuple[Any, Any]]:
        """(key, value) pairs; keys removed meanwhile are skipped."""
        out: list[tuple[Any, Any]] = []
        for key in self.keys():
            value = self.get(key, _MISSING)
            if value is not _MISSING:
                out.append((key, value))
        return out


    # -- batches (BPF_MAP_LOOKUP_BATCH / BPF_MAP_UPDATE_BATCH) -----------------
    def lookup_batch(self, chunk: int | None = None) -> list[tuple[Any, Any]]:
        """Every (key, value), read ``chunk`` elements per syscall (default: up to 1,024).

        What :meth:`items` returns, at a fraction of the syscalls: items()
        makes two per element.  A snapshot only per chunk: elements added or
        removed meanwhile may or may not appear.  Hash and array maps (and
        their per-CPU and LRU kinds) support it; others raise
        :class:`BatchNotSupportedError`, and items() is the way to read them.
        """
        if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int)
                                  or chunk < 1):
            raise TypeError("chunk must be a positive int (elements per syscall) or None")
        with self._owner.lock:
            self._owner.require_loaded(f"read map {self.name!r} in batches")
            cells = self._cells or self._element_cells()
            key_size, value_size = cells.key_codec.size, cells.value_codec.size
            wanted = chunk or min(self._source.max_entries(), _BATCH_CHUNK)
            # The position between calls: a key for arrays, a 4-byte bucket index for hashes.
            token_size = max(key_size, 4)
            position, following = ffi.new("char[]", token_size), ffi.new("char[]", token_size)
            count = ffi.new("__u32 *")
            opts = _batch_opts(0)
            keys = values = None
            start = ffi.NULL
            out: list[tuple[Any, Any]] = []
            while True:
                if keys is None:
                    keys = ffi.new("char[]", key_size * wanted)
                    values = ffi.new("char[]", value_size * wanted)
                count[0] = wanted
                rc = lib.bpf_map_lookup_batch(cells.fd, start, following, keys, values, count, opts)
                got = count[0]
                if rc == -errno.ENOSPC and got == 0:
                    wanted, keys = wanted * 2, None  # one hash bucket holds more: bigger chunks
                    continue
                if rc < 0 and rc != -errno.ENOENT:
                    raise self._batch_error(rc, "read", "BPF_MAP_LOOKUP_BATCH",
                                        "a RingBuffer" if self._type == "ringbuf"
                                        else "items(), two syscalls per element,")
                out.extend(zip(_unpack(cells.key_codec, cells.key_ctype, keys, got),
                               _unpack(cells.value_codec, cells.value_ctype, values, got)))
                if rc == -errno.ENOENT:  # the end of the map: this was the last chunk
                    return out
                ffi.memmove(position, following, token_size)
                start = position

    def update_batch(self, items: Mapping[Any, Any] | Iterable[tuple[Any, Any]]) -> int:
        """Write every (key, value) of ``items`` in one syscall; returns how many.

        Creates or replaces, as ``map[key] = value`` does.  Keys and values
        are checked before the kernel sees any; if the kernel stops part way
        (a full hash map: E2BIG), the error says how many were written, in
        order.  Maps without batch updates raise
        :class:`BatchNotSupportedError`: assign elements one by one instead.
        """
        pairs: list[tuple[Any, Any]]
        if isinstance(items, Mapping):
            pairs = list(cast("Mapping[object, object]", items).items())
        else:
            pairs = list(items)
        if not all(isinstance(pair, tuple) and len(pair) == 2 for pair in pairs):
            raise TypeError("update_batch() takes a mapping or (key, value) pairs")
        owner = self._owner
        with owner.lock:
            if owner.state != "loaded":
                owner.require_loaded(f"write map {self.name!r} in batches")
            if not pairs:
                return 0
            cells = self._cells or self._element_cells()
            keys = _pack(self._key_label, cells.key_codec, cells.key_ctype, [k for k, _ in pairs])
            values = _pack(self._value_label, cells.value_codec, cells.value_ctype,
                           [v for _, v in pairs])
            count = ffi.new("__u32 *", len(pairs))
            rc = lib.bpf_map_update_batch(cells.fd, keys, values, count, _batch_opts(lib.BPF_ANY))
            if rc < 0:
                written = count[0]
                if rc == -errno.E2BIG and "array" in self._type:
                    raise InvalidValueError(errno.E2BIG, f"could not write all {len(pairs)} "
                                            f"elements to array map {self.name!r}: the first "
                                            f"{written} were written, then a key was past its "
                                            f"indexes 0..{self._source.max_entries() - 1}")
                if rc in (-errno.E2BIG, -errno.ENOSPC):
                    raise MapFullError(-rc, f"could not write all {len(pairs)} elements to map "
                                   f"{self.name!r}: the first {written} were written, then the map "
                                   f"was full ({self._source.max_entries()} entries) or a key was "
                                   "out of range; delete some first")
                raise self._batch_error(rc, "write", "BPF_MAP_UPDATE_BATCH",
                                        "map[key] = value, one element per syscall,", written)
            return len(pairs)

    def _batch_error(self, rc: int, verb: str, command: str, instead: str,
                     written: int | None = None) -> BpfError:
        """The exception for a failed batch call; a map type without batches gets its own."""
        code = -rc
        if code in (ENOTSUPP, errno.EOPNOTSUPP):
            return BatchNotSupportedError(
                code, f"cannot {verb} map {self.name!r} in batches: the kernel has no "
                f"{command} for {self._type} maps; use {instead} instead",
                feature=f"{command}:{self._type}")
        done = f" ({written} written before it)" if written else ""
        return error_from_errno(code, f"{verb} map {self.name!r} in batches{done}")

def _checked_flags(flags: object, allowed: MapFlag, call: str) -> MapFlag:
    """``flags`` as a MapFlag, refused before the kernel if ``call`` does not take one of them."""
    if isinstance(flags, bool) or not isinstance(flags, int):
        raise TypeError(f"{call}() flags must be a MapFlag, not {type(flags).__name__}")
    if int(flags) & ~int(allowed) or (flags & MapFlag.NOEXIST and flags & MapFlag.EXIST):
        raise InvalidValueError(errno.EINVAL, f"{call}() takes {allowed!r} (NOEXIST and EXIST "
                                f"exclude each other), not {flags!r}")
    return MapFlag(flags)


# Looked up once: the element fast path calls them through a module global.
_lookup_elem = lib.bpf_map_lookup_elem
_update_elem = lib.bpf_map_update_elem
# Elements per BPF_MAP_LOOKUP_BATCH call unless the caller says.
_BATCH_CHUNK = 1024


def _batch_opts(elem_flags: int) -> CData:
    opts = ffi.new("struct bpf_map_batch_opts *")
    opts.sz = ffi.sizeof("struct bpf_map_batch_opts")
    opts.elem_flags = elem_flags
    return opts

# Plain integers of these sizes are read and written through typed cffi memory
# (cffi range-checks the store), not through bytes and a codec.
_INT_CTYPES = {(1, False): "uint8_t", (2, False): "uint16_t", (4, False): "uint32_t",
               (8, False): "uint64_t", (1, True): "int8_t", (2, True): "int16_t",
               (4, True): "int32_t", (8, True): "int64_t"}


def _int_ctype(codec: Codec) -> str | None:
    """The C type of a plain integer codec ("uint32_t", ...), else None."""
    if type(codec) is not IntCodec:  # bools, enums: their own decode, keep the codec
        return None
    return _INT_CTYPES.get((codec.size, codec.signed))


class _Cells:
    """One map's element buffers and codecs, fixed after load: what a lookup needs, ready.

    Shared by every thread, so used only with the owner's lock held.
    """

    __slots__ = ("fd", "key_codec", "value_codec", "key_ctype", "value_ctype", "key", "value",
                 "value_is_int", "value_view")

    def __init__(self, fd: int, key_codec: Codec, value_codec: Codec) -> None:
        self.fd = fd
        self.key_codec, self.value_codec = key_codec, value_codec
        self.key_ctype, self.value_ctype = _int_ctype(key_codec), _int_ctype(value_codec)
        self.key = ffi.new(f"{self.key_ctype}[1]") if self.key_ctype else None
        self.value_is_int = self.value_ctype is not None
        self.value = (ffi.new(f"{self.value_ctype}[1]") if self.value_is_int
                      else ffi.new("char[]", value_codec.size))
        self.value_view = ffi.buffer(self.value, value_codec.size)


def _pack(label: str, codec: Codec, ctype: str | None, items: list[Any]) -> CData | bytes:
    """``items`` laid out back to back as the kernel's batch calls take them."""
    if ctype is not None:
        try:
            return ffi.new(f"{ctype}[]", items)
        except (TypeError, OverflowError):
            pass  # the codec says what is wrong (or accepts an __index__ object)
    return b"".join(encode_for(label, codec, item) for item in items)


def _unpack(codec: Codec, ctype: str | None, memory: CData, count: int) -> list[Any]:
    """``count`` elements decoded from memory a batch call filled."""
    if ctype is not None:
        values: list[Any] = ffi.unpack(ffi.cast(f"{ctype} *", memory), count)
        return values
    size = codec.size
    view = ffi.buffer(memory, size * count)
    return [codec.decode(view, i * size) for i in range(count)]


class _PerCpuCodec(Codec):
    """Per-CPU values: a list with one value per possible CPU (each slot 8-aligned)."""

    def __init__(self, each: Codec, cpus: int) -> None:
        super().__init__(f"{each.label} per CPU")
        self.each, self.cpus = each, cpus
        self.stride = (each.size + 7) // 8 * 8
        self.size = self.stride * cpus

    def decode(self, buf: ReadBuffer, offset: int = 0) -> list[Any]:
        return [self.each.decode(buf, offset + i * self.stride) for i in range(self.cpus)]

    def encode_into(self, value: Any, buf: bytearray, offset: int = 0) -> None:
        items: list[Any]
        if isinstance(value, list):
            items = cast("list[object]", value)  # a caller's list of per-CPU values
            if len(items) != self.cpus:
                raise InvalidValueError(errno.EINVAL, f"{self.label}: expected {self.cpus} values "
                                        f"(one per possible CPU), got {len(items)}")
        else:
            items = [value] * self.cpus
        for i, item in enumerate(items):
            self.each.encode_into(item, buf, offset + i * self.stride)
