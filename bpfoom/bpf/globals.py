"""GlobalSection: the .rodata / .data / .bss globals of a BpfObject as a mapping.

libbpf keeps each of these sections in an mmap()-ed region
(``bpf_map__initial_value``): before load it is the initial image; after
load it is the map itself, shared with the programs, read-only for
.rodata.  So .rodata is writable only before load(), .data and .bss stay
writable, and reads always show what the kernel sees.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

from ._ffi import CData, ffi, lib
from .btf import BtfType, Codec, encode_for
from .errors import NotSupportedError, VariableNotFoundError

if TYPE_CHECKING:
    from .object import ObjectCore

__all__ = ["GlobalSection"]


class GlobalSection(MutableMapping[str, Any]):
    """Variables of one data section by name, typed from the object's BTF.

    Values follow :mod:`bpfoom.btf` (ints range-checked, char arrays as str,
    arrays as lists, structs as dicts; a dict write changes only the members
    it names).  Variables cannot be deleted.
    """

    def __init__(self, core: ObjectCore, map_ptr: CData, datasec: BtfType) -> None:
        """The section ``datasec`` of ``core``'s object, in map ``map_ptr``; BpfObject makes
        these (``obj.rodata``, ``obj.data``, ``obj.bss``)."""
        self._core, self._map_ptr = core, map_ptr
        self.section = datasec.name
        btf = core.btf
        assert btf is not None  # BpfObject.open() refuses an object without BTF
        self._vars = {entry.name: (entry.offset, btf.codec(btf.type(entry.type_id).ref))
                      for entry in datasec.members}

    def _memory(self) -> CData:
        """The section's bytes in this process; lock held, object live."""
        size = ffi.new("size_t *")
        ptr = lib.bpf_map__initial_value(self._map_ptr, size)
        if ptr == ffi.NULL:
            raise NotSupportedError(errno.EOPNOTSUPP, f"{self.section} is not memory-mapped on this "
                                    "kernel (BPF_F_MMAPABLE unsupported); globals need kernel 5.5+",
                                    feature="mmapable_maps")
        return ffi.buffer(ffi.cast("char *", ptr), size[0])

    def type_name(self, name: str) -> str:
        """The BTF spelling of variable ``name``'s type (e.g. ``__u64[16]``)."""
        return self._var(name)[1].label

    def _var(self, name: str) -> tuple[int, Codec]:
        try:
            return self._vars[name]
        except KeyError:
            raise VariableNotFoundError(errno.ENOENT, f"{self.section} has no variable {name!r}; "
                                        f"it has: {', '.join(self._vars) or 'none'}") from None

    def __getitem__(self, name: str) -> Any:
        offset, codec = self._var(name)
        with self._core.lock:
            self._core.check_open()
            return codec.decode(self._memory(), offset)

    def __setitem__(self, name: str, value: Any) -> None:
        offset, codec = self._var(name)
        with self._core.lock:
            if self.section.startswith(".rodata"):
                self._core.require_unloaded(f"write {self.section} variable {name!r}")
            else:
                self._core.check_open()
            memory = self._memory()
            raw = encode_for(f"{self.section}[{name!r}]", codec, value,
                             memory[offset:offset + codec.size])
            memory[offset:offset + codec.size] = raw

    def __delitem__(self, name: str) -> None:
        raise TypeError(f"global variables cannot be deleted; assign {self.section}[{name!r}] instead")

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._vars))

    def __len__(self) -> int:
        return len(self._vars)

    def __repr__(self) -> str:
        return (f"<GlobalSection {self.section} of {self._core.label!r} {self._core.state}: "
                f"{list(self._vars)!r}>")
