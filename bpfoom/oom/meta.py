"""What a policy object says about itself: the ``.bpfoom.meta`` section policy_meta.h writes.

Policy sources write the section with the macros of ``policy_meta.h``; its
layout is described by the object's own BTF (a ``DATASEC`` whose variables
are ``bpfoom_description`` and one ``bpfoom_tunable__<name>`` per tunable),
so reading it needs no knowledge of the source.  libbpf skips the section
when it opens the object, so its bytes come from the ELF file itself.

This module only decodes the section; what a declared tunable is (typed by
its global, range-checked on every write) is :mod:`bpfoom.oom.tunables`.
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass, field
from pathlib import Path

from ..bpf.btf import Btf, Kind
from ..bpf.errors import ObjectFileError

__all__ = ["META_SECTION", "Declaration", "Meta", "read_meta"]

META_SECTION = ".bpfoom.meta"
_DESCRIPTION = "bpfoom_description"
_TUNABLE_PREFIX = "bpfoom_tunable__"

_ELF64_LE = b"\x7fELF\x02\x01"
_SECTION_HEADER = struct.Struct("<IIQQQQIIQQ")  # Elf64_Shdr


@dataclass(frozen=True)
class Declaration:
    """One BPFOOM_TUNABLE / BPFOOM_TUNABLE_RANGE: the doc and, for a range, its inclusive ends."""

    doc: str
    minimum: int | None = None
    maximum: int | None = None


@dataclass(frozen=True)
class Meta:
    """The section decoded: the description ("" without one) and the declared tunables by name."""

    description: str = ""
    tunables: dict[str, Declaration] = field(default_factory=dict)


def elf_section(image: bytes, name: str) -> bytes | None:
    """The contents of section ``name`` of a little-endian ELF64 image, or None if it has none."""
    if not image.startswith(_ELF64_LE):
        return None
    shoff, = struct.unpack_from("<Q", image, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", image, 0x3A)
    headers = [_SECTION_HEADER.unpack_from(image, shoff + i * shentsize) for i in range(shnum)]
    names = headers[shstrndx]
    for header in headers:
        start = names[4] + header[0]
        if image[start:image.index(b"\0", start)].decode() == name:
            offset, size = header[4], header[5]
            return image[offset:offset + size]
    return None


def read_meta(btf: Btf | None, path: Path) -> Meta:
    """The ``.bpfoom.meta`` section of the object at ``path`` (BTF ``btf``); empty without one."""
    section_id = btf.find(META_SECTION, Kind.DATASEC) if btf is not None else None
    if btf is None or section_id is None:
        return Meta()
    data = elf_section(path.read_bytes(), META_SECTION)
    if data is None:
        raise ObjectFileError(errno.EINVAL, f"{path}: its BTF describes a {META_SECTION} section "
                              "the file does not have; rebuild it")
    description: str = ""
    tunables: dict[str, Declaration] = {}
    for var in btf.type(section_id).members:
        value = btf.codec(btf.type(var.type_id).ref).decode(data, var.offset)
        if var.name == _DESCRIPTION:
            description = value
        elif var.name.startswith(_TUNABLE_PREFIX):
            name = var.name[len(_TUNABLE_PREFIX):]
            tunables[name] = (Declaration(value) if isinstance(value, str)
                              else Declaration(value["doc"], value["min"], value["max"]))
    return Meta(description, tunables)
