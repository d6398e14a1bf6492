"""Map: a view of one map of a BpfObject (struct_ops maps: bpfoom.bpf.struct_ops).

Views hold no C resource of their own: the object owns the map and its fd,
so a view keeps its BpfObject alive and raises ClosedError once the object is
closed.  Element access needs a loaded object; keys and values are typed from
the map's BTF (plain ``bytes`` for maps without BTF; ints are accepted for
1/2/4/8-byte keys and values either way).  Per-CPU maps read and write one
value per possible CPU as a list.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._ffi import ffi, lib
from .btf import BytesCodec, Codec, encode_for
from .errors import BpfError, InvalidValueError, KeyNotFoundError, StateError, check

if TYPE_CHECKING:
    from .object import BpfObject

__all__ = ["Map", "MapInfo"]

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


def _type_name(map_type: int) -> str:
    raw = lib.libbpf_bpf_map_type_str(map_type)
    return ffi.string(raw).decode() if raw != ffi.NULL else f"unknown({map_type})"


class Map:
    """One map of a BpfObject: metadata always, elements after load()."""

    is_struct_ops = False  # StructOpsMap: a struct_ops value, attached through a Link

    def __init__(self, obj: "BpfObject", ptr, name: str) -> None:
        self._obj, self._ptr, self.name = obj, ptr, name
        self._type = _type_name(lib.bpf_map__type(ptr))  # fixed at open: repr needs no C call
        self._id: int | None = None
        self._codecs: tuple[Codec, Codec] | None = None
        self._value_buf = None
        self._key_label = f"a key of map {name!r}"
        self._value_label = f"a value of map {name!r}"

    def __repr__(self) -> str:
        """Name, type, state, and the kernel's id once loaded; no C memory after close."""
        return f"<{type(self).__name__} {self.name!r} {self._type}{self._repr_detail()}>"

    def _repr_detail(self) -> str:
        with self._obj._lock:
            state = self._obj._state
            if state == "closed":
                return " closed"
            detail = f" {state} max_entries={lib.bpf_map__max_entries(self._ptr)}"
            if state == "loaded":
                try:
                    detail += f" id={self.id}"
                except OSError:  # a repr never raises
                    pass
            return detail

    # -- metadata ----------------------------------------------------------
    def _meta(self, getter):
        with self._obj._lock:
            self._obj._live()
            return getter(self._ptr)

    @property
    def type(self) -> str:
        """Map type as libbpf spells it ("hash", "array", "struct_ops", ...)."""
        self._obj._check_open()
        return self._type

    @property
    def key_size(self) -> int:
        return self._meta(lib.bpf_map__key_size)

    @property
    def value_size(self) -> int:
        return self._meta(lib.bpf_map__value_size)

    @property
    def max_entries(self) -> int:
        """Capacity: entries, or bytes for a ring buffer; settable before load()."""
        return self._meta(lib.bpf_map__max_entries)

    @max_entries.setter
    def max_entries(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"max_entries of map {self.name!r} must be an int, "
                            f"not {type(value).__name__}")
        with self._obj._lock:
            self._obj._require_unloaded(f"resize map {self.name!r}")
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
        """The map's fd, owned by the object; after load() only."""
        with self._obj._lock:
            self._obj._require_loaded(f"get the fd of map {self.name!r}")
            return lib.bpf_map__fd(self._ptr)

    def info(self) -> MapInfo:
        """The kernel's view of the created map."""
        with self._obj._lock:
            info = ffi.new("struct bpf_map_info *")
            size = ffi.new("__u32 *", ffi.sizeof("struct bpf_map_info"))
            check(lib.bpf_map_get_info_by_fd(self.fd, info, size), f"query map {self.name!r}")
            return MapInfo(info.id, _type_name(info.type), ffi.string(info.name).decode(),
                           info.key_size, info.value_size, info.max_entries, info.map_flags,
                           info.btf_id)

    @property
    def id(self) -> int:
        """The kernel's id of the created map (asked once: it never changes)."""
        with self._obj._lock:
            if self._id is None:
                self._id = self.info().id
            else:
                self._obj._require_loaded(f"get the id of map {self.name!r}")
            return self._id

    # -- elements ----------------------------------------------------------
    def _element_codecs(self) -> tuple[Codec, Codec]:
        """Key and value codecs, built once; lock held."""
        if self._codecs is None:
            btf = self._obj._btf
            key_id = lib.bpf_map__btf_key_type_id(self._ptr)
            value_id = lib.bpf_map__btf_value_type_id(self._ptr)
            key_size = lib.bpf_map__key_size(self._ptr)
            value_size = lib.bpf_map__value_size(self._ptr)
            key = btf.codec(key_id) if key_id and btf.size_of(key_id) == key_size \
                else BytesCodec(f"key of map {self.name!r}", key_size)
            value = btf.codec(value_id) if value_id and btf.size_of(value_id) == value_size \
                else BytesCodec(f"value of map {self.name!r}", value_size)
            if "percpu" in self._type:
                value = _PerCpuCodec(value, lib.libbpf_num_possible_cpus())
            self._codecs = (key, value)
        return self._codecs

    def _key_bytes(self, key: Any) -> bytes:
        key_codec, _ = self._element_codecs()
        return encode_for(self._key_label, key_codec, key)

    def __getitem__(self, key: Any) -> Any:
        # The hot path: no message is formatted unless something fails.
        obj = self._obj
        with obj._lock:
            if obj._state != "loaded":
                obj._require_loaded(f"read map {self.name!r}")
            key_codec, value_codec = self._codecs or self._element_codecs()
            raw_key = encode_for(self._key_label, key_codec, key)
            if self._value_buf is None:
                self._value_buf = ffi.new("char[]", value_codec.size)
            rc = lib.bpf_map__lookup_elem(self._ptr, raw_key, len(raw_key), self._value_buf,
                                          value_codec.size, 0)
            if rc < 0:
                if rc == -errno.ENOENT:
                    raise KeyNotFoundError(errno.ENOENT, f"map {self.name!r} has no key {key!r}")
                check(rc, f"look up {key!r} in map {self.name!r}")
            return value_codec.decode(ffi.buffer(self._value_buf, value_codec.size))

    def get(self, key: Any, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyNotFoundError:
            return default

    def __contains__(self, key: Any) -> bool:
        return self.get(key, _MISSING) is not _MISSING

    def _frozen(self) -> bool:
        """A .rodata/.kconfig map: libbpf freezes it at load, user space can never write it."""
        return bool(lib.bpf_map__is_internal(self._ptr)
                    and lib.bpf_map__map_flags(self._ptr) & lib.BPF_F_RDONLY_PROG)

    def __setitem__(self, key: Any, value: Any) -> None:
        obj = self._obj
        with obj._lock:
            if obj._state != "loaded":
                if obj._live() and lib.bpf_map__is_internal(self._ptr):
                    raise StateError(errno.EBADFD, f"cannot write map {self.name!r} before load(); "
                                     "set globals before load() through obj.rodata/.data/.bss")
                obj._require_loaded(f"write map {self.name!r}")
            ptr = self._ptr
            key_codec, value_codec = self._codecs or self._element_codecs()
            raw_key = encode_for(self._key_label, key_codec, key)
            raw_value = encode_for(self._value_label, value_codec, value)
            rc = lib.bpf_map__update_elem(ptr, raw_key, len(raw_key), raw_value,
                                          len(raw_value), lib.BPF_ANY)
            if rc < 0:
                if rc == -errno.EPERM and self._frozen():
                    raise StateError(errno.EBADFD, f"cannot write map {self.name!r} after load(): "
                                     "read-only globals are frozen at load; set them before "
                                     "load() through obj.rodata")
                if rc == -errno.E2BIG:
                    raise BpfError(errno.E2BIG, f"could not add {key!r} to map {self.name!r}: the "
                                   f"map is full ({lib.bpf_map__max_entries(ptr)} entries); delete "
                                   "some first")
                check(rc, f"update {key!r} in map {self.name!r}")

    def __delitem__(self, key: Any) -> None:
        with self._obj._lock:
            self._obj._require_loaded(f"delete from map {self.name!r}")
            ptr = self._ptr
            raw_key = self._key_bytes(key)
            rc = lib.bpf_map__delete_elem(ptr, raw_key, len(raw_key), 0)
            if rc == -errno.ENOENT:
                raise KeyNotFoundError(errno.ENOENT, f"map {self.name!r} has no key {key!r}")
            if rc == -errno.EINVAL and "array" in self._type:
                raise InvalidValueError(errno.EINVAL, f"could not delete from array map {self.name!r}: "
                                        "array elements cannot be deleted; assign a zero value instead")
            check(rc, f"delete {key!r} from map {self.name!r}")

    def keys(self) -> list[Any]:
        """A snapshot of the keys (at most max_entries, as the kernel iterates them)."""
        with self._obj._lock:
            self._obj._require_loaded(f"iterate map {self.name!r}")
            ptr = self._ptr
            key_codec, _ = self._element_codecs()
            size = key_codec.size
            current, following = ffi.new("char[]", size), ffi.new("char[]", size)
            keys: list[Any] = []
            previous = ffi.NULL
            for _ in range(lib.bpf_map__max_entries(ptr)):
                rc = lib.bpf_map__get_next_key(ptr, previous, following, size)
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
        out = []
        for key in self.keys():
            value = self.get(key, _MISSING)
            if value is not _MISSING:
                out.append((key, value))
        return out


class _PerCpuCodec(Codec):
    """Per-CPU values: a list with one value per possible CPU (each slot 8-aligned)."""

    def __init__(self, each: Codec, cpus: int) -> None:
        super().__init__(f"{each.label} per CPU")
        self.each, self.cpus = each, cpus
        self.stride = (each.size + 7) // 8 * 8
        self.size = self.stride * cpus

    def decode(self, buf, offset=0):
        return [self.each.decode(buf, offset + i * self.stride) for i in range(self.cpus)]

    def encode_into(self, value, buf, offset=0):
        if isinstance(value, list):
            if len(value) != self.cpus:
                raise InvalidValueError(errno.EINVAL, f"{self.label}: expected {self.cpus} values "
                                        f"(one per possible CPU), got {len(value)}")
            items = value
        else:
            items = [value] * self.cpus
        for i, item in enumerate(items):
            self.each.encode_into(item, buf, offset + i * self.stride)
