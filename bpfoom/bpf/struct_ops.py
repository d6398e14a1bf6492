"""StructOpsMap: a struct_ops map of a BpfObject, its data fields, programs and attach().

Attaching returns an owned :class:`~bpfoom.bpf.link.Link`; a cgroup target is
refused on kernels whose struct_ops links would ignore it (they would attach
system-wide).
"""

from __future__ import annotations

import errno
from types import MappingProxyType
from collections.abc import Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from . import _log
from ._ffi import CData, ffi, lib
from .btf import BtfType, Codec, Kind, RecordCodec, encode_for, vmlinux_btf
from .cgroup import Cgroup, CgroupTarget
from .errors import (NotSupportedError,
                     StateError, VariableNotFoundError, check_ptr)
from .features import require_cgroup_attach, running_cgroup_mechanism
from .link import Link, adopt_link
from .map import Map
from .struct_ops_target import CgroupMechanism, LinkCreateArgs, link_create_args

if TYPE_CHECKING:
    from .object import ObjectCore

__all__ = ["StructOpsMap", "StructOpsFields"]


class StructOpsMap(Map):
    """A struct_ops map: data fields (before load), its programs, and attach()."""

    is_struct_ops = True

    def __init__(self, core: ObjectCore, ptr: CData, name: str) -> None:
        super().__init__(core, ptr, name)
        self._core = core
        btf = core.btf
        self._struct_id: int = lib.bpf_map__btf_value_type_id(ptr)
        # Only the name now (repr shows it after close); the members when asked.
        self.struct_name: str = (btf.resolved_name(self._struct_id)
                                 if btf is not None and self._struct_id else "")
        self._struct_type: BtfType | None = None
        self._fields: StructOpsFields | None = None

    @property
    def owner(self) -> ObjectCore:
        """Its BpfObject's core: a struct_ops map is always an object's."""
        return self._core

    @property
    def _struct(self) -> BtfType | None:
        """The struct_ops value's BTF type, parsed at first use (object open, lock held)."""
        btf = self._core.btf
        if self._struct_type is None and self._struct_id and btf is not None:
            self._struct_type = btf.resolve(self._struct_id)
        return self._struct_type

    def layout_problem(self) -> str | None:
        """Why libbpf must not copy this map's value at load, or None: a member past the
        struct's end in the object's BTF (BpfObject.load() refuses the object then)."""
        btf, t = self._core.btf, self._struct
        if btf is None or t is None:
            return None
        try:
            for m in t.members:
                end = m.offset // 8 + btf.size_of(m.type_id)
                if m.offset < 0 or end > t.size:
                    return (f"member {m.name!r} of struct {t.name} ends at byte {end}, past the "
                            f"struct's {t.size} bytes")
        except (OSError, RecursionError) as exc:  # a type id BTF does not have, or a type cycle
            return f"its BTF type cannot be read ({exc})"
        return None

    def __repr__(self) -> str:
        return f"<StructOpsMap {self.name!r} struct {self.struct_name}{self._repr_detail()}>"

    @property
    def is_link(self) -> bool:
        """Whether the map is link-based (SEC(".struct_ops.link")), which attach() needs."""
        return bool(self._meta(self._source.flags) & lib.BPF_F_LINK)

    @property
    def fields(self) -> "StructOpsFields":
        """Data members (not program slots) of the struct_ops value, writable before load()."""
        with self._core.lock:
            self._core.check_open()  # the codec reads the object's BTF: not after close()
            if self._fields is None:
                self._fields = StructOpsFields(self, self._struct)
            return self._fields

    @property
    def programs(self) -> Mapping[str, str]:
        """Program slot (struct member) -> name of the program libbpf put there (read-only)."""
        core = self._core
        with core.lock:
            core.check_open()
            data, _ = _value_memory(self._ptr)
            by_address = {int(ffi.cast("uintptr_t", p)): n for n, p in core.program_ptrs.items()}
            btf = core.btf
            assert btf is not None  # BpfObject.open() refuses an object without BTF
            out: dict[str, str] = {}
            for member in self._struct.members if self._struct else ():
                if member.name and btf.is_func_pointer(member.type_id):
                    offset = member.offset // 8
                    address = int.from_bytes(data[offset:offset + 8], "little")
                    if address in by_address:
                        out[member.name] = by_address[address]
            return MappingProxyType(out)

    def kernel_value(self) -> bytes:
        """The value the kernel expects for this map: the struct in the kernel's layout with
        program fds in the slots, built the way libbpf builds it at load.

        Needed to switch a link libbpf did not create (one opened from a pin)
        to this map (:meth:`Link.update`); call it with ``owner.lock`` held, object loaded.
        """
        with vmlinux_btf() as kernel:
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
            local = self._core.btf
            assert local is not None  # BpfObject.open() refuses an object without BTF
            memory, _ = _value_memory(self._ptr)
            programs = {int(ffi.cast("uintptr_t", p)): p for p in self._core.program_ptrs.values()}
            value = bytearray(wrapper.size)
            struct = self._struct
            assert struct is not None  # a loaded struct_ops map's value type was resolved at open
            for member in struct.members:
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
                        fd: int = lib.bpf_program__fd(program)
                        value[at:at + 8] = fd.to_bytes(8, "little")
                else:
                    value[at:at + size] = chunk
            return bytes(value)

    def attach(self, cgroup: CgroupTarget | None = None, *, before: Link | None = None,
               after: Link | None = None, expected_revision: int = 0) -> Link:
        """Register the struct_ops with the kernel through a link; returns the Link.

        ``cgroup`` None attaches system-wide; a path, a :class:`Cgroup` or a
        cgroup id (an int is always an id; wrap a raw fd with
        ``Cgroup.from_fd``) attaches to that cgroup, which needs a kernel with
        cgroup-targeted struct_ops (else NotSupportedError, raised before any
        BPF call so nothing can attach system-wide by mistake).  ``before`` /
        ``after`` (a link of the same cgroup) and ``expected_revision`` order
        the cgroup's attachments on kernels whose mechanism orders them
        (``features()["struct_ops_cgroup_order"]``); elsewhere
        NotSupportedError says so.  See :mod:`bpfoom.bpf.struct_ops_target`.
        """
        # Our own fd for the cgroup: a caller's Cgroup closed meanwhile cannot pull it away.
        target = None if cgroup is None else Cgroup.of(cgroup)
        try:
            if target is not None:
                require_cgroup_attach()
            mechanism = running_cgroup_mechanism()
            args = link_create_args(mechanism, None if target is None else target.fd,
                                    before_fd=None if before is None else before.fd,
                                    after_fd=None if after is None else after.fd,
                                    expected_revision=expected_revision)
            with self._core.lock:
                self._core.require_loaded(f"attach struct_ops map {self.name!r}")
                if not self.is_link:
                    raise StateError(errno.EINVAL, f"cannot attach struct_ops map {self.name!r}: it is "
                                     "not link-based; declare it in SEC(\".struct_ops.link\")")
                with _log.capture() as warnings:
                    link = self._link_create(args)
                code = ffi.errno
                where = ("system-wide" if target is None
                         else f"to cgroup {str(target.path)!r} (id {target.id})")
                check_ptr(link, f"attach struct_ops map {self.name!r} {where}",
                          advice=self._attach_advice(code, mechanism, target is not None),
                          detail=_log.cause(warnings))
                return adopt_link(Link, link, f"struct_ops {self.name}", struct_ops=True)
        finally:
            if target is not None:
                target.close()

    def _link_create(self, args: LinkCreateArgs) -> Any:
        """libbpf's attach call that puts ``args`` into BPF_LINK_CREATE (NULL + errno on failure)."""
        if args.target_fd:
            opts = ffi.new("struct bpf_cgroup_opts *")
            opts.sz = ffi.sizeof("struct bpf_cgroup_opts")
            opts.flags, opts.relative_fd = args.flags, args.relative_fd
            opts.expected_revision = args.expected_revision
            return lib.bpf_map__attach_cgroup_opts(self._ptr, args.target_fd, opts)
        legacy = ffi.new("struct bpf_struct_ops_opts *")
        legacy.sz = ffi.sizeof("struct bpf_struct_ops_opts")
        legacy.flags, legacy.relative_fd = args.flags, args.relative_fd
        legacy.expected_revision = args.expected_revision
        return lib.bpf_map__attach_struct_ops_opts(self._ptr, legacy)

    def _attach_advice(self, code: int, mechanism: CgroupMechanism, to_cgroup: bool) -> str | None:
        if code in (errno.EEXIST, errno.EBUSY):
            return ("the target already has this struct_ops (or one of the same name) "
                    "attached; detach that first")
        if to_cgroup and code in (errno.EINVAL, errno.EOPNOTSUPP) \
                and mechanism is CgroupMechanism.TARGET_FD:
            return (f"struct {self.struct_name} may not accept cgroup targets on this kernel "
                    "(a type opts in); attach it without a cgroup")
        if code == errno.ESTALE:
            return "the cgroup's attachments changed since expected_revision; read it again"
        return None


class StructOpsFields(MutableMapping[str, Any]):
    """The data members of a struct_ops value by name, typed from BTF.

    Readable any time the object is open, writable only before load().
    Program slots are not here (see StructOpsMap.programs); nor are other
    pointers, which belong to the kernel.
    """

    def __init__(self, map_: StructOpsMap, struct: BtfType | None) -> None:
        """Built by StructOpsMap.fields (``struct``: its value's type) with the object's lock
        held (it reads the BTF)."""
        self._map = map_
        self._core = core = map_.owner
        btf = core.btf
        assert btf is not None  # BpfObject.open() refuses an object without BTF
        members: list[tuple[str, int, int, Codec]] = [] if struct is None else [
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
        core = self._core
        with core.lock:
            core.check_open()
            memory, _ = _value_memory(core.map_ptrs[self._map.name])
            return self._codec.decode(memory)[name]

    def __setitem__(self, name: str, value: Any) -> None:
        self._check_name(name)
        core = self._core
        with core.lock:
            core.require_unloaded(f"write field {name!r} of struct_ops map {self._map.name!r}")
            memory, size = _value_memory(core.map_ptrs[self._map.name])
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


def _value_memory(map_ptr: CData) -> tuple[CData, int]:
    """libbpf's copy of a struct_ops value (program slots hold program pointers) and its size;
    the object's lock held, object open."""
    size = ffi.new("size_t *")
    ptr = lib.bpf_map__initial_value(map_ptr, size)
    length: int = size[0]
    return ffi.buffer(ffi.cast("char *", ptr), length), length
