"""Typed values from BTF: decode C bytes to Python values and encode them back.

Globals, struct_ops fields and map keys/values all go through the codecs
here, so one set of rules holds everywhere: ints are range-checked, ``bool``
is a bool, enums decode to ``IntEnum`` members, ``char`` arrays are text,
other fixed arrays are lists, structs and unions are dicts.  A value of a
type the C type never takes raises :class:`InvalidTypeError` (a TypeError),
one that does not fit :class:`InvalidValueError` (a ValueError), both before
anything reaches the kernel.

Types are read straight from the BTF blob libbpf holds (12-byte
``struct btf_type`` records followed by kind-specific data, as the kernel's
``Documentation/bpf/btf.rst`` defines them), so the binding only needs
``btf__type_by_id``, ``btf__name_by_offset`` and ``btf__find_by_name_kind``.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import operator
import os
import struct
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict, cast

from ._ffi import ffi, lib
from .errors import (ClosedError, InvalidTypeError, InvalidValueError, ObjectFileError,
                     PathNotFoundError, check_ptr)

__all__ = ["Btf", "BtfType", "Codec", "BytesCodec", "RecordCodec", "Kind", "encode_for",
           "vmlinux_btf", "kernel_btf"]


class Kind(enum.IntEnum):
    """BTF_KIND_* values (UAPI, linux/btf.h)."""

    UNKN = 0
    INT = 1
    PTR = 2
    ARRAY = 3
    STRUCT = 4
    UNION = 5
    ENUM = 6
    FWD = 7
    TYPEDEF = 8
    VOLATILE = 9
    CONST = 10
    RESTRICT = 11
    FUNC = 12
    FUNC_PROTO = 13
    VAR = 14
    DATASEC = 15
    FLOAT = 16
    DECL_TAG = 17
    TYPE_TAG = 18
    ENUM64 = 19


_MODIFIERS = {Kind.TYPEDEF, Kind.VOLATILE, Kind.CONST, Kind.RESTRICT, Kind.TYPE_TAG}
_MODIFIER_CODES = frozenset(int(kind) for kind in _MODIFIERS)
_INT_SIGNED, _INT_CHAR, _INT_BOOL = 1, 2, 4
_RECORD = 12  # sizeof(struct btf_type)


@dataclass(frozen=True)
class Member:
    """A struct/union member, an enumerator, a datasec entry or a proto param."""

    name: str
    type_id: int = 0
    offset: int = 0          # bits for struct members, bytes for datasec entries
    bitfield_size: int = 0
    value: int = 0           # enumerators
    size: int = 0            # datasec entries


@dataclass(frozen=True)
class BtfType:
    """One decoded BTF type record."""

    id: int
    kind: Kind
    name: str
    size: int = 0             # INT, STRUCT, UNION, ENUM*, FLOAT, DATASEC
    ref: int = 0              # PTR, TYPEDEF, modifiers, FUNC, FUNC_PROTO (return), VAR
    kflag: bool = False
    int_bits: int = 0
    int_encoding: int = 0
    array_elem: int = 0
    array_len: int = 0
    members: tuple[Member, ...] = field(default_factory=tuple)


# What codecs read from: bytes, or a view of C or mapped memory.
ReadBuffer = bytes | bytearray | memoryview


class _Common(TypedDict):
    """The fields every BtfType record has."""

    id: int
    kind: Kind
    name: str
    kflag: bool


class Btf:
    """Read-only view of a ``struct btf`` owned by someone else (object or probe).

    The owner reads it under its own lock and calls :meth:`release` before
    freeing the pointer, so a stray later read raises ClosedError instead of
    reading freed memory; types and codecs are cached because BTF never
    changes once loaded.
    """

    def __init__(self, ptr: Any) -> None:
        self._ptr = ptr
        self._types: dict[int, BtfType] = {}
        self._codecs: dict[int, Codec] = {}

    @staticmethod
    def parse(path: str | os.PathLike[str]) -> contextlib.AbstractContextManager[Btf]:
        """The BTF of a file (an ELF object's .BTF section, or raw BTF such as
        /sys/kernel/btf/vmlinux) for one ``with`` block: to ask another kernel's
        BTF what :func:`bpfoom.features` asks the running one's."""
        text = os.fsdecode(path)
        if not os.path.isfile(text):
            raise PathNotFoundError(errno.ENOENT, f"could not read the BTF of {text!r}: no such "
                                    "file; check the path")
        return _owned(lambda: lib.btf__parse(os.fsencode(text), ffi.NULL), f"read the BTF of {text!r}",
                      "give an ELF file with a .BTF section (clang -g) or a raw BTF file",
                      fallback_cls=ObjectFileError)

    def release(self) -> None:
        """Refuse every later read: its owner is about to free the C BTF (a BpfObject's
        close() calls this; a later read raises ClosedError instead of reading freed memory)."""
        self._ptr = None

    def _live(self) -> Any:
        ptr = self._ptr
        if ptr is None:
            raise ClosedError(errno.EBADF, "this BTF belonged to a BPF object that is closed; "
                              "open the object again")
        return ptr

    # -- raw type access ---------------------------------------------------
    def _name(self, offset: int) -> str:
        if offset == 0:
            return ""
        raw = lib.btf__name_by_offset(self._live(), offset)
        return "" if raw == ffi.NULL else ffi.string(raw).decode("utf-8", "replace")

    def type(self, type_id: int) -> BtfType:
        """The type with id ``type_id`` (id 0 is ``void``)."""
        cached = self._types.get(type_id)
        if cached is not None:
            return cached
        if type_id == 0:
            parsed = BtfType(0, Kind.UNKN, "void")
        else:
            ptr = lib.btf__type_by_id(self._live(), type_id)
            if ptr == ffi.NULL:
                raise InvalidValueError(errno.EINVAL, f"BTF has no type id {type_id}; the object's BTF is inconsistent")
            parsed = self._parse(type_id, ffi.cast("char *", ptr))
        self._types[type_id] = parsed
        return parsed

    def _parse(self, type_id: int, raw: Any) -> BtfType:
        name_off, info, size_or_type = struct.unpack("<III", ffi.buffer(raw, _RECORD))
        vlen = info & 0xFFFF
        kind = Kind((info >> 24) & 0x1F)
        kflag = bool(info >> 31)
        name = self._name(name_off)
        common: _Common = {"id": type_id, "kind": kind, "name": name, "kflag": kflag}

        def extra(count: int, fmt: str) -> list[tuple[Any, ...]]:
            width = struct.calcsize(fmt)
            data = ffi.buffer(raw + _RECORD, count * width)
            return list(struct.iter_unpack(fmt, data)) if count else []

        if kind == Kind.INT:
            (enc,) = extra(1, "<I")[0]
            return BtfType(**common, size=size_or_type, int_bits=enc & 0xFF,
                           int_encoding=(enc >> 24) & 0xF)
        if kind == Kind.ARRAY:
            elem, _index, count = extra(1, "<III")[0]
            return BtfType(**common, array_elem=elem, array_len=count)
        if kind in (Kind.STRUCT, Kind.UNION):
            members = tuple(
                Member(self._name(n), t, (off & 0xFFFFFF) if kflag else off,
                       (off >> 24) if kflag else 0)
                for n, t, off in extra(vlen, "<III"))
            return BtfType(**common, size=size_or_type, members=members)
        if kind == Kind.ENUM:  # kflag marks a signed enum; without it 0x80000000u is not negative
            members = tuple(Member(self._name(n), value=_enum_value(v, 32, kflag))
                            for n, v in extra(vlen, "<II"))
            return BtfType(**common, size=size_or_type, members=members)
        if kind == Kind.ENUM64:
            members = tuple(Member(self._name(n), value=_enum_value(lo | (hi << 32), 64, kflag))
                            for n, lo, hi in extra(vlen, "<III"))
            return BtfType(**common, size=size_or_type, members=members)
        if kind == Kind.FUNC_PROTO:
            members = tuple(Member(self._name(n), t) for n, t in extra(vlen, "<II"))
            return BtfType(**common, ref=size_or_type, members=members)
        if kind == Kind.DATASEC:
            members = tuple(Member(self.type(t).name, t, offset=off, size=sz)
                            for t, off, sz in extra(vlen, "<III"))
            return BtfType(**common, size=size_or_type, members=members)
        if kind in (Kind.FLOAT,):
            return BtfType(**common, size=size_or_type)
        return BtfType(**common, ref=size_or_type)

    def resolved_name(self, type_id: int) -> str:
        """The name :meth:`resolve` would give, reading only type headers (no members parsed)."""
        ptr = self._live()
        for _ in range(64):  # modifier chains are short; a cycle would be malformed BTF
            raw = lib.btf__type_by_id(ptr, type_id) if type_id else ffi.NULL
            if raw == ffi.NULL:
                return ""
            name_off, info, ref = struct.unpack("<III", ffi.buffer(raw, _RECORD))
            if (info >> 24) & 0x1F not in _MODIFIER_CODES:
                return self._name(name_off)
            type_id = ref
        return ""

    def find(self, name: str, kind: Kind) -> int | None:
        """Id of the type called ``name`` of ``kind``, or None."""
        type_id = lib.btf__find_by_name_kind(self._live(), name.encode(), int(kind))
        return type_id if type_id > 0 else None

    def resolve(self, type_id: int) -> BtfType:
        """Follow typedefs and qualifiers to the underlying type."""
        t = self.type(type_id)
        while t.kind in _MODIFIERS:
            t = self.type(t.ref)
        return t

    def describe(self, type_id: int) -> str:
        """A C-like spelling of a type for error messages."""
        t = self.type(type_id)
        if t.kind in _MODIFIERS and t.kind != Kind.TYPEDEF:
            return self.describe(t.ref)
        if t.kind == Kind.ARRAY:
            return f"{self.describe(t.array_elem)}[{t.array_len}]"
        if t.kind == Kind.PTR:
            return f"{self.describe(t.ref)} *"
        prefix = {Kind.STRUCT: "struct ", Kind.UNION: "union ", Kind.ENUM: "enum ",
                  Kind.ENUM64: "enum "}.get(t.kind, "")
        if t.kind == Kind.FWD:  # a declared-only struct (kflag: union)
            prefix = "union " if t.kflag else "struct "
        return prefix + (t.name or "<anon>")

    def size_of(self, type_id: int) -> int:
        """Byte size of a (resolved) type."""
        t = self.resolve(type_id)
        if t.kind == Kind.ARRAY:
            return t.array_len * self.size_of(t.array_elem)
        if t.kind == Kind.PTR:
            return 8
        return t.size

    def is_func_pointer(self, type_id: int) -> bool:
        """True for a pointer to a function prototype (a struct_ops program slot)."""
        t = self.resolve(type_id)
        return t.kind == Kind.PTR and self.resolve(t.ref).kind == Kind.FUNC_PROTO

    # -- codecs -------------------------------------------------------------
    def codec(self, type_id: int) -> "Codec":
        """The (cached) codec for values of ``type_id``."""
        codec = self._codecs.get(type_id)
        if codec is None:
            codec = self._build(type_id)
            self._codecs[type_id] = codec
        return codec

    def _build(self, type_id: int) -> "Codec":
        label = self.describe(type_id)
        t = self.resolve(type_id)
        if t.kind == Kind.INT:
            if t.int_encoding & _INT_BOOL:
                return BoolCodec(label, t.size)
            return IntCodec(label, t.size, bool(t.int_encoding & _INT_SIGNED))
        if t.kind in (Kind.ENUM, Kind.ENUM64):
            return EnumCodec(label, t, t.kflag)
        if t.kind == Kind.PTR:
            return IntCodec(label, 8, False)
        if t.kind == Kind.FLOAT:
            return FloatCodec(label, t.size)
        if t.kind == Kind.ARRAY:
            elem = self.resolve(t.array_elem)
            if elem.kind == Kind.INT and elem.size == 1 and (
                    elem.name == "char" or elem.int_encoding & _INT_CHAR):
                return CharArrayCodec(label, t.array_len)
            return ArrayCodec(label, self.codec(t.array_elem), t.array_len)
        if t.kind in (Kind.STRUCT, Kind.UNION):
            return RecordCodec(label, t.size, self._fields(t, 0), t.kind == Kind.UNION)
        return BytesCodec(label, self.size_of(type_id))

    def _fields(self, t: BtfType, base_bits: int) -> list[tuple[str, int, int, "Codec"]]:
        """(name, bit offset, bitfield size, codec) of a record, anonymous members flattened."""
        out: list[tuple[str, int, int, Codec]] = []
        for m in t.members:
            inner = self.resolve(m.type_id)
            bit = base_bits + m.offset
            if not m.name and inner.kind in (Kind.STRUCT, Kind.UNION):
                out.extend(self._fields(inner, bit))
            elif m.name:
                out.append((m.name, bit, m.bitfield_size, self.codec(m.type_id)))
        return out


@contextlib.contextmanager
def _owned(load: Callable[[], Any], action: str, advice: str,
           **how: Any) -> Generator[Btf, None, None]:
    ptr = check_ptr(load(), action, advice=advice, **how)
    try:
        yield Btf(ptr)
    finally:
        lib.btf__free(ptr)


def vmlinux_btf() -> contextlib.AbstractContextManager[Btf]:
    """The running kernel's BTF for one ``with`` block (freed after: it is megabytes)."""
    return _owned(lib.btf__load_vmlinux_btf, "read the kernel's BTF",
                  "use a kernel with CONFIG_DEBUG_INFO_BTF")


def kernel_btf(btf_id: int) -> contextlib.AbstractContextManager[Btf]:
    """A BTF object the kernel holds (a map's or program's ``btf_id``) for one ``with`` block.

    What a process that only has a pinned map uses to learn the types of the
    object that created it.
    """
    return _owned(lambda: lib.btf__load_from_kernel_by_id(btf_id),
                  f"read BTF object {btf_id} from the kernel",
                  "reading BTF by id needs CAP_SYS_ADMIN")


# ---------------------------------------------------------------------------
# Codecs: decode(buf, offset) -> value; encode_into(value, bytearray, offset)
# ---------------------------------------------------------------------------

def _enum_value(raw: int, bits: int, signed: bool) -> int:
    """An enumerator's value as BTF stores it: unsigned unless the enum's kflag says signed."""
    return raw - (1 << bits) if signed and raw >> (bits - 1) else raw


def _bad(label: str, value: Any, expected: str, *, wrong_type: bool = False) -> InvalidValueError | InvalidTypeError:
    """InvalidTypeError when ``value`` is of a type ``label`` never takes, else InvalidValueError."""
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    cls = InvalidTypeError if wrong_type else InvalidValueError
    return cls(errno.EINVAL, f"{shown} does not fit {label}: expected {expected}")


def encode_for(where: str, codec: "Codec", value: Any, current: bytes | None = None) -> bytes:
    """``codec.encode`` whose InvalidValueError names the variable, field or key written."""
    try:
        return codec.encode(value, current)
    except (InvalidValueError, InvalidTypeError) as exc:
        raise type(exc)(exc.errno, f"cannot set {where}: {exc.strerror}") from None


class Codec:
    """Converts between the C bytes of one BTF type and a Python value."""

    size: int = 0

    def __init__(self, label: str) -> None:
        self.label = label

    def decode(self, buf: ReadBuffer, offset: int = 0) -> Any:
        raise NotImplementedError

    def encode_into(self, value: Any, buf: bytearray, offset: int = 0) -> None:
        raise NotImplementedError

    def encode(self, value: Any, current: bytes | None = None) -> bytes:
        """Bytes for ``value``; ``current`` supplies what a partial dict leaves unchanged."""
        buf = bytearray(current) if current is not None else bytearray(self.size)
        self.encode_into(value, buf, 0)
        return bytes(buf)


class IntCodec(Codec):
    """Fixed-size two's-complement integers with a range check."""

    def __init__(self, label: str, size: int, signed: bool) -> None:
        super().__init__(label)
        self.size, self.signed = size, signed
        bits = size * 8
        self.low = -(1 << (bits - 1)) if signed else 0
        self.high = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1

    def decode(self, buf: ReadBuffer, offset: int = 0) -> Any:
        return int.from_bytes(buf[offset:offset + self.size], "little", signed=self.signed)

    def check(self, value: Any) -> int:
        if value.__class__ is int and self.low <= value <= self.high:
            return value
        if isinstance(value, (str, bytes, float)) or not hasattr(value, "__index__"):
            raise _bad(self.label, value, f"an int in {self.low}..{self.high}", wrong_type=True)
        number = operator.index(value)
        if not self.low <= number <= self.high:
            raise _bad(self.label, value, f"an int in {self.low}..{self.high}")
        return number

    def encode_into(self, value: Any, buf: bytearray, offset: int = 0) -> None:
        number = self.check(value)
        buf[offset:offset + self.size] = number.to_bytes(self.size, "little", signed=self.signed)

    def encode(self, value: Any, current: bytes | None = None) -> bytes:
        return self.check(value).to_bytes(self.size, "little", signed=self.signed)


class BoolCodec(IntCodec):
    """C ``_Bool``: True/False (0 and 1 accepted)."""

    def __init__(self, label: str, size: int) -> None:
        super().__init__(label, size, False)

    def decode(self, buf: ReadBuffer, offset: int = 0) -> Any:
        return bool(super().decode(buf, offset))

    def check(self, value: Any) -> int:
        if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
            return int(value)
        raise _bad(self.label, value, "True or False", wrong_type=not isinstance(value, int))


class EnumCodec(IntCodec):
    """Enums decode to an IntEnum member (plain int for unnamed values); encode name or int."""

    def __init__(self, label: str, t: BtfType, signed: bool) -> None:
        super().__init__(label, t.size, signed)
        self.by_name = {m.name: m.value for m in t.members}
        names: dict[str, int] = {}
        for m in t.members:
            names.setdefault(m.name, m.value)
        # The functional API makes a class; typeshed types the call as making a member.
        self.enum = cast(type[enum.IntEnum], enum.IntEnum(t.name or "anon_enum", names)) \
            if names else None

    def decode(self, buf: ReadBuffer, offset: int = 0) -> Any:
        number = super().decode(buf, offset)
        if self.enum is not None:
            try:
                return self.enum(number)
            except ValueError:
                pass
        return number

    def check(self, value: Any) -> int:
        if isinstance(value, str):
            if value not in self.by_name:
                raise _bad(self.label, value, "one of " + ", ".join(self.by_name))
            value = self.by_name[value]
        return super().check(value)


class FloatCodec(Codec):
    """float / double."""

    def __init__(self, label: str, size: int) -> None:
        super().__init__(label)
        self.size = size
        self.fmt = {4: "<f", 8: "<d"}.get(size)

    def decode(self, buf: ReadBuffer, offset: int = 0) -> Any:
        if self.fmt is None:
            return bytes(buf[offset:offset + self.size])
        return struct.unpack_from(self.fmt, buf, offset)[0]

    def encode_into(self, value: Any, buf: bytearray, offset: int = 0) -> None:
        if self.fmt is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _bad(self.label, value, "a float", wrong_type=True)
        try:
            struct.pack_into(self.fmt, buf, offset, value)
        except (OverflowError, struct.error) as exc:
            raise _bad(self.label, value, "a float in range") from exc


class CharArrayCodec(Codec):
    """``char[N]``: str up to the first NUL; accepts str (N-1 bytes, NUL fits) or bytes (N)."""

    def __init__(self, label: str, length: int) -> None:
        super().__init__(label)
        self.size = length

    def decode(self, buf: ReadBuffer, offset: int = 0) -> Any:
        raw = bytes(buf[offset:offset + self.size])
        return raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")

    def encode_into(self, value: Any, buf: bytearray, offset: int = 0) -> None:
        raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) \
            else _bytes_like(value)
        if raw is None:
            raise _bad(self.label, value, "str or bytes", wrong_type=True)
        if isinstance(value, str) and (b"\0" in raw or len(raw) > self.size - 1):
            raise _bad(self.label, value, f"a str of at most {self.size - 1} UTF-8 bytes without NUL")
        if len(raw) > self.size:
            raise _bad(self.label, value, f"at most {self.size} bytes")
        buf[offset:offset + self.size] = raw.ljust(self.size, b"\0")


class ArrayCodec(Codec):
    """Fixed arrays: list of exactly N element values."""

    def __init__(self, label: str, elem: Codec, length: int) -> None:
        super().__init__(label)
        self.elem, self.length = elem, length
        self.size = elem.size * length

    def decode(self, buf: ReadBuffer, offset: int = 0) -> Any:
        step = self.elem.size
        return [self.elem.decode(buf, offset + i * step) for i in range(self.length)]

    def encode_into(self, value: Any, buf: bytearray, offset: int = 0) -> None:
        if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__len__"):
            raise _bad(self.label, value, f"a sequence of {self.length} items", wrong_type=True)
        if len(value) != self.length:
            raise _bad(self.label, value, f"exactly {self.length} items, got {len(value)}")
        step = self.elem.size
        for i, item in enumerate(value):
            self.elem.encode_into(item, buf, offset + i * step)


class RecordCodec(Codec):
    """Structs and unions as dicts; encoding a dict changes only the keys it names."""

    def __init__(self, label: str, size: int, fields: list[tuple[str, int, int, Codec]],
                 is_union: bool) -> None:
        super().__init__(label)
        self.size, self.is_union = size, is_union
        self.fields = {name: (bit, bits, codec) for name, bit, bits, codec in fields}
        self._flat: _FlatDecoder | Literal[False] | None = None  # built at the first decode

    def decode(self, buf: ReadBuffer, offset: int = 0) -> Any:
        flat = self._flat
        if flat is None:
            flat = self._flat = _FlatDecoder.of(self) or False
        if flat:
            try:
                return flat.decode(buf, offset)
            except struct.error:  # a short buffer: the field-by-field path says what it can
                pass
        return self._decode_fields(buf, offset)

    def _decode_fields(self, buf: ReadBuffer, offset: int = 0) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, (bit, bits, codec) in self.fields.items():
            if bits:
                out[name] = _read_bits(buf, offset, bit, bits, codec)
            else:
                out[name] = codec.decode(buf, offset + bit // 8)
        return out

    def encode_into(self, value: Any, buf: bytearray, offset: int = 0) -> None:
        if not isinstance(value, dict):
            raise _bad(self.label, value, "a dict of its members", wrong_type=True)
        members = cast(dict[str, Any], value)
        unknown = [k for k in members if k not in self.fields]
        if unknown:
            raise _bad(self.label, value, "only the members " + ", ".join(self.fields))
        for name, item in members.items():
            bit, bits, codec = self.fields[name]
            if bits:
                _write_bits(buf, offset, bit, bits, codec, item)
            else:
                codec.encode_into(item, buf, offset + bit // 8)


def _bytes_like(value: object) -> bytes | None:
    """The bytes of a bytes, bytearray or memoryview ``value``; None for anything else."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, memoryview):
        return value.tobytes()
    return None


def _c_string(raw: bytes) -> str:
    """A ``char[N]`` as CharArrayCodec decodes it: up to the first NUL."""
    return raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


_INT_FORMATS = {(1, False): "B", (2, False): "H", (4, False): "I", (8, False): "Q",
                (1, True): "b", (2, True): "h", (4, True): "i", (8, True): "q"}


class _NotFlat(Exception):
    """The record has a member the flat decoder does not handle (bitfields, unions, enums)."""


_Builder = Callable[[tuple[Any, ...]], Any]  # builds one member's value from the unpacked tuple


def _items(indexes: list[int]) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    """``itemgetter(*indexes)`` that always returns a tuple (itemgetter(i) returns the item)."""
    first, last = indexes[0], indexes[-1] + 1
    if indexes == list(range(first, last)):  # consecutive members: a slice is cheaper
        return lambda t: t[first:last]
    return operator.itemgetter(*indexes)


class _FlatDecoder:
    """A record decoded by one ``struct.unpack_from`` and builders made of closures.

    Decoding a record field by field costs a Python call and a slice per
    integer (a policy's decision event has 132); this reads them all in one
    C call and builds the same dicts and lists from the tuple: plain members
    of a struct in one ``itemgetter`` + ``zip``, the others (bools, strings,
    arrays, nested structs) by a closure each.  Only records of plain
    integers, bools, floats, char arrays, fixed arrays and nested structs
    qualify; anything else keeps the field-by-field path.  No code is
    generated: nothing from the object is ever compiled or evaluated.
    """

    def __init__(self, codec: RecordCodec) -> None:
        self._parts: list[tuple[int, str, int, int]] = []  # offset, format, size, tuple items
        build = self._builder(codec, 0)
        assert not isinstance(build, int)  # a record is never a plain item
        layout, position = "<", 0
        for at, code, size, _ in self._parts:
            if at < position:
                raise _NotFlat  # overlapping members
            if at > position:
                layout += f"{at - position}x"
            layout += code
            position = at + size
        self._struct = struct.Struct(layout)
        self._build = build

    @classmethod
    def of(cls, codec: RecordCodec) -> "_FlatDecoder | None":
        try:
            return cls(codec)
        except _NotFlat:
            return None

    def decode(self, buf: ReadBuffer, offset: int = 0) -> dict[str, Any]:
        record: dict[str, Any] = self._build(self._struct.unpack_from(buf, offset))
        return record

    def _item(self, offset: int, code: str, size: int, count: int = 1) -> int:
        index = sum(part[3] for part in self._parts)
        self._parts.append((offset, code, size, count))
        return index

    def _builder(self, codec: Codec, offset: int) -> int | _Builder:
        """The tuple index of a plain member, or a closure building a composite one."""
        kind = type(codec)
        if kind is IntCodec or kind is BoolCodec:
            assert isinstance(codec, IntCodec)
            code = _INT_FORMATS.get((codec.size, codec.signed))
            if code is None:
                raise _NotFlat
            index = self._item(offset, code, codec.size)
            return (lambda t: bool(t[index])) if kind is BoolCodec else index
        if isinstance(codec, FloatCodec) and kind is FloatCodec and codec.fmt is not None:
            return self._item(offset, codec.fmt[1], codec.size)
        if kind is CharArrayCodec:
            index = self._item(offset, f"{codec.size}s", codec.size)
            return lambda t: _c_string(t[index])
        if kind is BytesCodec:
            return self._item(offset, f"{codec.size}s", codec.size)
        if isinstance(codec, ArrayCodec):
            elem = codec.elem
            if type(elem) is IntCodec and (elem.size, elem.signed) in _INT_FORMATS and codec.length:
                assert isinstance(elem, IntCodec)
                code = _INT_FORMATS[(elem.size, elem.signed)]
                first = self._item(offset, f"{codec.length}{code}", codec.size, codec.length)
                last = first + codec.length
                return lambda t: list(t[first:last])
            parts = [self._builder(elem, offset + i * elem.size) for i in range(codec.length)]
            return _list_builder(parts)
        if isinstance(codec, RecordCodec) and kind is RecordCodec and not codec.is_union:
            names: list[str] = []
            members: list[int | _Builder] = []
            for name, (bit, bits, member) in codec.fields.items():
                if bits or bit % 8:
                    raise _NotFlat
                names.append(name)
                members.append(self._builder(member, offset + bit // 8))
            return _dict_builder(names, members)
        raise _NotFlat


def _list_builder(parts: list[int | _Builder]) -> _Builder:
    if not parts:
        return lambda t: []
    if all(isinstance(part, int) for part in parts):
        plain = _items([part for part in parts if isinstance(part, int)])
        return lambda t: list(plain(t))
    steps = [part if callable(part) else operator.itemgetter(part) for part in parts]
    return lambda t: [step(t) for step in steps]


def _dict_builder(names: list[str], parts: list[int | _Builder]) -> _Builder:
    """Members in declaration order: plain ones in one itemgetter, then the composite ones."""
    if not parts:
        return lambda t: {}
    plain = _items([part if isinstance(part, int) else 0 for part in parts])  # 0: a placeholder
    composite = [(name, part) for name, part in zip(names, parts) if callable(part)]
    keys = tuple(names)
    if not composite:
        return lambda t: dict(zip(keys, plain(t)))

    def build(t: tuple[Any, ...]) -> dict[str, Any]:
        out = dict(zip(keys, plain(t)))
        for name, part in composite:
            out[name] = part(t)  # replaces the placeholder in place: the order stays
        return out
    return build


def _bit_span(bit: int, bits: int) -> tuple[int, int, int]:
    first = bit // 8
    last = (bit + bits + 7) // 8
    return first, last, bit - first * 8


def _read_bits(buf: ReadBuffer, offset: int, bit: int, bits: int, codec: Codec) -> Any:
    first, last, shift = _bit_span(bit, bits)
    word = int.from_bytes(buf[offset + first:offset + last], "little")
    number = (word >> shift) & ((1 << bits) - 1)
    if getattr(codec, "signed", False) and number >> (bits - 1):
        number -= 1 << bits
    if isinstance(codec, BoolCodec):
        return bool(number)
    return number


def _write_bits(buf: bytearray, offset: int, bit: int, bits: int, codec: Codec,
                value: Any) -> None:
    number = codec.check(value) if isinstance(codec, IntCodec) else None
    low = -(1 << (bits - 1)) if getattr(codec, "signed", False) else 0
    high = (1 << (bits - 1)) - 1 if getattr(codec, "signed", False) else (1 << bits) - 1
    if number is None or not low <= number <= high:
        raise _bad(f"{codec.label}:{bits}", value, f"an int in {low}..{high}")
    first, last, shift = _bit_span(bit, bits)
    mask = ((1 << bits) - 1) << shift
    word = int.from_bytes(buf[offset + first:offset + last], "little")
    word = (word & ~mask) | ((number & ((1 << bits) - 1)) << shift)
    buf[offset + first:offset + last] = word.to_bytes(last - first, "little")


class BytesCodec(Codec):
    """Untyped data (no BTF): exactly ``size`` bytes; ints accepted for 1/2/4/8-byte slots."""

    def __init__(self, label: str, size: int) -> None:
        super().__init__(label)
        self.size = size

    def decode(self, buf: ReadBuffer, offset: int = 0) -> Any:
        return bytes(buf[offset:offset + self.size])

    def encode_into(self, value: Any, buf: bytearray, offset: int = 0) -> None:
        if (raw := _bytes_like(value)) is not None:
            if len(raw) != self.size:
                raise _bad(self.label, value, f"exactly {self.size} bytes")
        elif isinstance(value, int) and not isinstance(value, bool) and self.size in (1, 2, 4, 8):
            bits = self.size * 8
            if not -(1 << (bits - 1)) <= value < (1 << bits):
                raise _bad(self.label, value, f"an int that fits {self.size} bytes")
            raw = (value & ((1 << bits) - 1)).to_bytes(self.size, "little")
        else:
            raise _bad(self.label, value, f"{self.size} bytes", wrong_type=True)
        buf[offset:offset + self.size] = raw
