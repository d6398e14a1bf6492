"""Typed records: bytes a BPF program wrote (a ring buffer record, a map value) decoded as a
struct its own object declares in BTF, into :class:`Record` values.

A :class:`RecordType` is found by the struct's name in the BTF of the object
that writes the records, never through a layout copied into Python:

* a BpfObject's map: the object's BTF;
* a map opened from a pin or an id: the kernel's copy of the creating
  object's BTF (the map's ``btf_id``);
* any :class:`Btf` at hand: :meth:`RecordType.from_btf`.

``RingBuffer(map, callback, record="event")`` hands the callback a Record
for each record.  A RecordType keeps no C pointer: it outlives the BTF.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator, Mapping
from typing import Any

from ._ffi import ffi, lib
from .btf import Btf, Kind, RecordCodec, kernel_btf
from .errors import InvalidValueError
from .map import Map

__all__ = ["Record", "RecordType"]


class Record(Mapping[str, Any]):
    """One decoded record: fields by name (``record["pid"]``) or attribute (``record.pid``).

    Immutable; nested structs and arrays are the codecs' dicts and lists.
    """

    __slots__ = ("_type_name", "_fields")
    _type_name: str
    _fields: dict[str, Any]

    def __init__(self, type_name: str, fields: dict[str, Any]) -> None:
        object.__setattr__(self, "_type_name", type_name)
        object.__setattr__(self, "_fields", fields)

    def __getitem__(self, name: str) -> Any:
        return self._fields[name]

    def __getattr__(self, name: str) -> Any:
        try:
            return self._fields[name]
        except KeyError:
            raise AttributeError(f"struct {self._type_name} has no field {name!r}") from None

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"a Record of struct {self._type_name} is read-only")

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={value!r}" for name, value in self._fields.items())
        return f"<{self._type_name} {fields}>"


class RecordType:
    """The layout of one struct, read from BTF: decodes records of it."""

    def __init__(self, name: str, codec: RecordCodec) -> None:
        """Callers use :meth:`from_btf` or :meth:`of_map`."""
        self.name = name
        self.codec = codec
        self.size: int = codec.size
        self.fields: tuple[str, ...] = tuple(codec.fields)

    @classmethod
    def from_btf(cls, btf: Btf, struct_name: str, *, where: str = "the BTF") -> RecordType:
        """``struct struct_name`` of ``btf``; InvalidValueError (EINVAL) if there is none."""
        if not isinstance(struct_name, str):
            raise TypeError(f"a struct is named by a str, not {type(struct_name).__name__}")
        type_id = btf.find(struct_name, Kind.STRUCT)
        codec = btf.codec(type_id) if type_id is not None else None
        if not isinstance(codec, RecordCodec):
            raise InvalidValueError(errno.EINVAL, f"{where} declares no struct {struct_name}; "
                                    "name a struct the BPF object defines (and uses, so clang "
                                    "keeps it in BTF)")
        return cls(struct_name, codec)

    @classmethod
    def of_map(cls, map_: Map, struct_name: str) -> RecordType:
        """``struct struct_name`` in the BTF of the object that created ``map_`` (a ring buffer
        or any map): the object's own BTF, or the kernel's copy for a pinned map."""
        with map_.btf() as btf:
            if btf is not None:
                return cls.from_btf(btf, struct_name, where=f"the object of map {map_.name!r}")
        info = map_.info()
        # The kernel keeps no BTF for maps without key/value types (ring buffers): the
        # programs that write the map carry their object's.
        btf_id = info.btf_id or _writer_btf_id(info.id)
        if not btf_id:
            raise InvalidValueError(errno.EINVAL, f"neither map {map_.name!r} nor a loaded program "
                                    f"using it has BTF, so no struct {struct_name} can be read "
                                    "for it; build the object with clang -g and keep it loaded")
        with kernel_btf(btf_id) as kernel:
            return cls.from_btf(kernel, struct_name, where=f"BTF object {btf_id} of map "
                                f"{map_.name!r}")

    def decode_fields(self, data: bytes) -> dict[str, Any]:
        """The record's fields as a new dict; InvalidValueError if ``data`` is shorter."""
        if len(data) < self.size:
            raise InvalidValueError(errno.EINVAL, f"a {len(data)}-byte record is not a struct "
                                    f"{self.name} ({self.size} bytes); the writer and this type "
                                    "disagree: read with the writer's own BTF")
        fields: dict[str, Any] = self.codec.decode(data)
        return fields

    def decode(self, data: bytes) -> Record:
        """The record as a :class:`Record`."""
        return Record(self.name, self.decode_fields(data))

    def __repr__(self) -> str:
        return f"<RecordType struct {self.name} {self.size} bytes fields={list(self.fields)}>"


def _writer_btf_id(map_id: int) -> int:
    """The BTF id of a loaded program that uses map ``map_id`` (0 if none has one)."""
    current, following = ffi.new("__u32 *", 0), ffi.new("__u32 *")
    while lib.bpf_prog_get_next_id(current[0], following) == 0:
        current[0] = following[0]
        fd = lib.bpf_prog_get_fd_by_id(following[0])
        if fd < 0:
            continue  # gone meanwhile, or not ours to open
        try:
            info = ffi.new("struct bpf_prog_info *")
            size = ffi.new("__u32 *", ffi.sizeof("struct bpf_prog_info"))
            if lib.bpf_prog_get_info_by_fd(fd, info, size) < 0 or not info.btf_id:
                continue
            count = info.nr_map_ids
            if not count:
                continue
            ids = ffi.new("__u32[]", count)
            btf_id = info.btf_id
            info = ffi.new("struct bpf_prog_info *")
            info.nr_map_ids, info.map_ids = count, ffi.cast("__u64", ids)
            if lib.bpf_prog_get_info_by_fd(fd, info, size) == 0 and \
                    map_id in ffi.unpack(ids, min(count, info.nr_map_ids)):
                return int(btf_id)
        finally:
            os.close(fd)
    return 0
