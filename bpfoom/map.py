"""Map (a view of one map of a BpfObject) and StructOpsMap.

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
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _log
from ._ffi import ffi, lib
from .btf import Btf, BytesCodec, Codec, Kind, RecordCodec, encode_for
from .cgroup import Cgroup
from .errors import (BpfError, InvalidValueError, KeyNotFoundError, NotSupportedError,
                     StateError, VariableNotFoundError, check, check_ptr)
from .features import require_cgroup_attach
from .link import Link

if TYPE_CHECKING:
    from .object import BpfObject

__all__ = ["Map", "MapInfo", "StructOpsMap", "StructOpsFields"]

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

    def __init__(self, obj: "BpfObject", ptr, name: str) -> None:
        self._obj, self._ptr, self.name = obj, ptr, name
        self._codecs: tuple[Codec, Codec] | None = None
        self._value_buf = None
        self._key_label = f"a key of map {name!r}"
        self._value_label = f"a value of map {name!r}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    # -- metadata ----------------------------------------------------------
    def _meta(self, getter):
        with self._obj._lock:
            self._obj._live()
            return getter(self._ptr)

    @property
    def type(self) -> str:
        """Map type as libbpf spells it ("hash", "array", "struct_ops", ...)."""
        return self._meta(lambda p: _type_name(lib.bpf_map__type(p)))

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
        """The kernel's id of the created map."""
        return self.info().id

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
            if "percpu" in _type_name(lib.bpf_map__type(self._ptr)):
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

    def __setitem__(self, key: Any, value: Any) -> None:
        obj = self._obj
        with obj._lock:
            if obj._state != "loaded":
                obj._require_loaded(f"write map {self.name!r}")
            ptr = self._ptr
            key_codec, value_codec = self._codecs or self._element_codecs()
            raw_key = encode_for(self._key_label, key_codec, key)
            raw_value = encode_for(self._value_label, value_codec, value)
            rc = lib.bpf_map__update_elem(ptr, raw_key, len(raw_key), raw_value,
                                          len(raw_value), lib.BPF_ANY)
            if rc < 0:
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
            if rc == -errno.EINVAL and "array" in _type_name(lib.bpf_map__type(ptr)):
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


class StructOpsMap(Map):
    """A struct_ops map: data fields (before load), its programs, and attach()."""

    def __init__(self, obj: "BpfObject", ptr, name: str) -> None:
        super().__init__(obj, ptr, name)
        btf = obj._btf
        type_id = lib.bpf_map__btf_value_type_id(ptr)
        struct = btf.resolve(type_id) if btf is not None and type_id else None
        self.struct_name: str = struct.name if struct is not None else ""
        self._struct = struct

    @property
    def is_link(self) -> bool:
        """Whether the map is link-based (SEC(".struct_ops.link")), which attach() needs."""
        return bool(self._meta(lib.bpf_map__map_flags) & lib.BPF_F_LINK)

    @property
    def fields(self) -> "StructOpsFields":
        """Data members (not program slots) of the struct_ops value, writable before load()."""
        self._obj._check_open()
        return StructOpsFields(self)

    @property
    def programs(self) -> dict[str, str]:
        """Program slot (struct member) -> name of the program libbpf put there."""
        with self._obj._lock:
            self._obj._live()
            data, _ = self._value_memory()
            by_address = {int(ffi.cast("uintptr_t", p._ptr)): n
                          for n, p in self._obj._programs.items()}
            btf = self._obj._btf
            out = {}
            for member in self._struct.members if self._struct else ():
                if member.name and btf.is_func_pointer(member.type_id):
                    offset = member.offset // 8
                    address = int.from_bytes(data[offset:offset + 8], "little")
                    if address in by_address:
                        out[member.name] = by_address[address]
            return out

    def _value_memory(self):
        """libbpf's copy of the struct_ops value (program slots hold program pointers)."""
        size = ffi.new("size_t *")
        ptr = lib.bpf_map__initial_value(self._ptr, size)
        return ffi.buffer(ffi.cast("char *", ptr), size[0]), size[0]

    def _kernel_value(self) -> bytes:
        """The value the kernel expects for this map: the struct in the kernel's layout with
        program fds in the slots, built the way libbpf builds it at load.

        Needed to switch a link libbpf did not create (one opened from a pin)
        to this map; lock held, object loaded.
        """
        vmlinux = check_ptr(lib.btf__load_vmlinux_btf(), "read the kernel's BTF",
                            advice="use a kernel with CONFIG_DEBUG_INFO_BTF")
        try:
            kernel = Btf(vmlinux)
            wrapper_id = kernel.find(f"bpf_struct_ops_{self.struct_name}", Kind.STRUCT)
            struct_id = kernel.find(self.struct_name, Kind.STRUCT)
            if wrapper_id is None or struct_id is None:
                raise NotSupportedError(errno.EOPNOTSUPP, f"struct {self.struct_name} is not in the "
                                        "kernel's vmlinux BTF (module struct_ops are not supported "
                                        "here); update through the Link returned by attach()",
                                        feature=self.struct_name)
            wrapper = kernel.type(wrapper_id)
            base = next(m.offset // 8 for m in wrapper.members if m.name == "data")
            kernel_members = {m.name: m for m in kernel.type(struct_id).members}
            local = self._obj._btf
            memory, _ = self._value_memory()
            programs = {int(ffi.cast("uintptr_t", p._ptr)): p for p in self._obj._programs.values()}
            value = bytearray(wrapper.size)
            for member in self._struct.members:
                offset = member.offset // 8
                size = local.size_of(member.type_id)
                chunk = memory[offset:offset + size]
                target = kernel_members.get(member.name)
                if target is None:
                    if any(chunk):
                        raise NotSupportedError(errno.EOPNOTSUPP, f"the kernel's struct "
                                                f"{self.struct_name} has no member {member.name!r}",
                                                feature=self.struct_name)
                    continue
                at = base + target.offset // 8
                if local.is_func_pointer(member.type_id):
                    program = programs.get(int.from_bytes(chunk, "little"))
                    if program is not None:
                        fd = lib.bpf_program__fd(program._ptr)
                        value[at:at + 8] = fd.to_bytes(8, "little")
                else:
                    value[at:at + size] = chunk
            return bytes(value)
        finally:
            lib.btf__free(vmlinux)

    def attach(self, cgroup: "str | os.PathLike | Cgroup | int | None" = None) -> "Link":
        """Register the struct_ops with the kernel through a link; returns the Link.

        ``cgroup`` None attaches system-wide; a path, a :class:`Cgroup` or a
        cgroup directory fd attaches to that cgroup, which needs a kernel with
        cgroup-targeted struct_ops (else NotSupportedError, raised before any
        BPF call so nothing can attach system-wide by mistake).
        """
        if cgroup is not None and (isinstance(cgroup, bool) or
                                   not isinstance(cgroup, (str, os.PathLike, Cgroup, int))):
            raise TypeError("cgroup must be None, a path, a bpfoom.Cgroup or a cgroup fd, "
                            f"not {type(cgroup).__name__}")
        temporary = None
        relative_fd = 0
        if cgroup is not None:
            require_cgroup_attach()
            if isinstance(cgroup, Cgroup):
                relative_fd = cgroup.fd
            elif isinstance(cgroup, int):
                Cgroup.check_fd(cgroup)
                relative_fd = cgroup
            else:
                temporary = Cgroup.open(Path(cgroup))
                relative_fd = temporary.fd
        try:
            with self._obj._lock:
                self._obj._require_loaded(f"attach struct_ops map {self.name!r}")
                ptr = self._ptr
                if not self.is_link:
                    raise StateError(errno.EINVAL, f"cannot attach struct_ops map {self.name!r}: it is "
                                     "not link-based; declare it in SEC(\".struct_ops.link\")")
                opts = ffi.new("struct bpf_struct_ops_opts *")
                opts.sz = ffi.sizeof("struct bpf_struct_ops_opts")
                opts.relative_fd = relative_fd
                with _log.capture() as warnings:
                    link = lib.bpf_map__attach_struct_ops_opts(ptr, opts)
                code = ffi.errno
                where = "system-wide" if cgroup is None else f"to cgroup {cgroup}"
                busy = ("the target already has this struct_ops (or one of the same name) "
                        "attached; detach that first") if code in (errno.EEXIST, errno.EBUSY) else None
                check_ptr(link, f"attach struct_ops map {self.name!r} {where}", advice=busy,
                          detail=_log.cause(warnings))
                return Link._from_attach(link, self.name)
        finally:
            if temporary is not None:
                temporary.close()


class StructOpsFields(MutableMapping[str, Any]):
    """The data members of a struct_ops value by name, typed from BTF.

    Readable any time the object is open, writable only before load().
    Program slots are not here (see StructOpsMap.programs); nor are other
    pointers, which belong to the kernel.
    """

    def __init__(self, map_: StructOpsMap) -> None:
        self._map = map_
        btf = map_._obj._btf
        struct = map_._struct
        members = [] if struct is None else [
            (m.name, m.offset, m.bitfield_size, btf.codec(m.type_id)) for m in struct.members
            if m.name and btf.resolve(m.type_id).kind.name != "PTR"]
        self._codec = RecordCodec(btf.describe(struct.id) if struct else "struct_ops",
                                  struct.size if struct else 0, members, False)

    def _check_name(self, name: str) -> None:
        if name not in self._codec.fields:
            raise VariableNotFoundError(
                errno.ENOENT, f"struct {self._map.struct_name} has no data field {name!r}; "
                f"it has: {', '.join(self._codec.fields) or 'none'}")

    def __getitem__(self, name: str) -> Any:
        self._check_name(name)
        obj = self._map._obj
        with obj._lock:
            obj._live()
            memory, _ = self._map._value_memory()
            return self._codec.decode(memory)[name]

    def __setitem__(self, name: str, value: Any) -> None:
        self._check_name(name)
        obj = self._map._obj
        with obj._lock:
            obj._require_unloaded(f"write field {name!r} of struct_ops map {self._map.name!r}")
            memory, size = self._map._value_memory()
            raw = encode_for(f"field {name!r} of struct_ops map {self._map.name!r}", self._codec,
                             {name: value}, memory[:size])
            memory[:size] = raw

    def __delitem__(self, name: str) -> None:
        raise TypeError(f"struct_ops fields cannot be deleted; assign fields[{name!r}] instead")

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._codec.fields))

    def __len__(self) -> int:
        return len(self._codec.fields)

    def __repr__(self) -> str:
        return f"<StructOpsFields of {self._map.name!r}: {list(self._codec.fields)!r}>"
