"""A policy's description and tunables, read from the ``.bpfoom.meta`` section of its object.

Policy sources write the section with the macros of ``policy_meta.h``; its
layout is described by the object's own BTF (a ``DATASEC`` whose variables
are ``bpfoom_description`` and one ``bpfoom_tunable__<name>`` per tunable),
so reading it needs no knowledge of the source.  libbpf skips the section
when it opens the object, so its bytes come from the ELF file itself.
"""

from __future__ import annotations

import errno
import struct
from pathlib import Path
from typing import Any

from ..bpf.btf import Btf, Kind
from ..bpf.errors import ObjectFileError

__all__ = ["META_SECTION", "DESCRIPTION", "TUNABLE_PREFIX", "read_meta"]

META_SECTION = ".bpfoom.meta"
DESCRIPTION = "bpfoom_description"
TUNABLE_PREFIX = "bpfoom_tunable__"

_ELF64_LE = b"\x7fELF\x02\x01"
_SECTION_HEADER = struct.Struct("<IIQQQQIIQQ")  # Elf64_Shdr


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


def read_meta(btf: Btf, path: Path) -> dict[str, Any]:
    """Variable name -> decoded value of the object's ``.bpfoom.meta`` section ({} without one)."""
    section_id = btf.find(META_SECTION, Kind.DATASEC)
    if section_id is None:
        return {}
    data = elf_section(path.read_bytes(), META_SECTION)
    if data is None:
        raise ObjectFileError(errno.EINVAL, f"{path}: its BTF describes a {META_SECTION} section "
                              "the file does not have; rebuild it")
    values = {}
    for var in btf.type(section_id).members:
        values[var.name] = btf.codec(btf.type(var.type_id).ref).decode(data, var.offset)
    return values
