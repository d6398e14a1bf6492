"""attached(): which OOM policies and PSI handlers the kernel runs, and where.

Everything comes from the kernel, so policies attached by other processes
(or by tools other than bpfoom) show up too: the struct_ops links (by
enumerating link ids), each link's map value (the ``name`` the kernel
copied at registration, read through the map's vmlinux BTF type), the
target cgroup (by id, found under the cgroup2 mounts) and pins (by scanning
the mounted BPF filesystems for pinned links).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..bpf.btf import Btf, vmlinux_btf
from ..bpf.cgroup import mounts
from ..bpf.kernel_objects import fd_kind, lookup_bytes, open_map_by_id, open_pinned
from ..bpf.link import link_info_from_fd, links
from ..bpf.map import map_info
from .features import POLICY_KINDS

__all__ = ["Attachment", "attached", "cgroup_paths", "struct_ops_value"]

_WRAPPER_PREFIX = "bpf_struct_ops_"


@dataclass(frozen=True)
class Attachment:
    """One attached OOM policy or PSI handler as the kernel reports it.

    ``cgroup_path`` None with ``cgroup_id`` 0 means system-wide; None with a
    non-zero id means the cgroup was not found under a cgroup2 mount.
    """

    policy_name: str | None
    kind: str
    cgroup_path: str | None
    cgroup_id: int
    link_id: int
    map_id: int
    pin_path: str | None


def cgroup_paths(ids: set[int]) -> dict[int, str]:
    """cgroup id (directory inode) -> path, for the ids asked for."""
    found: dict[int, str] = {}
    for mount in mounts("cgroup2"):
        for directory, _, _ in os.walk(mount):
            try:
                inode = os.stat(directory).st_ino
            except OSError:
                continue
            if inode in ids and inode not in found:
                found[inode] = directory
                if len(found) == len(ids):
                    return found
    return found


def _pins(ids: set[int]) -> dict[int, str]:
    """link id -> pin path, for links pinned on a mounted BPF filesystem."""
    found: dict[int, str] = {}
    for mount in mounts("bpf"):
        for directory, _, files in os.walk(mount):
            for name in files:
                path = os.path.join(directory, name)
                fd = open_pinned(path)
                if fd is None:
                    continue
                try:
                    if fd_kind(fd) not in ("link", None):
                        continue  # a pinned map or program (whose info would read as a link's)
                    info = link_info_from_fd(fd)
                except OSError:
                    continue  # a pinned map or program
                finally:
                    os.close(fd)
                if info.id in ids:
                    found.setdefault(info.id, path)
    return found


def struct_ops_value(map_id: int, kernel: Btf) -> tuple[str | None, str | None]:
    """(struct_ops type name, registered ``name``) of a struct_ops map, by id."""
    fd = open_map_by_id(map_id)
    if fd is None:
        return None, None
    try:
        info = map_info(fd)
        wrapper = kernel.type(info.btf_vmlinux_value_type_id)
        struct_name = wrapper.name[len(_WRAPPER_PREFIX):] if wrapper.name.startswith(
            _WRAPPER_PREFIX) else wrapper.name
        value = lookup_bytes(fd, bytes(4), info.value_size, f"struct_ops map {map_id}")
        if value is None:
            return struct_name, None
        data = next((m for m in wrapper.members if m.name == "data"), None)
        if data is None:
            return struct_name, None
        name_member = next((m for m in kernel.resolve(data.type_id).members if m.name == "name"), None)
        if name_member is None:
            return struct_name, None
        start = (data.offset + name_member.offset) // 8
        raw = value[start:start + kernel.size_of(name_member.type_id)]
        return struct_name, raw.split(b"\0", 1)[0].decode(errors="replace")
    finally:
        os.close(fd)


def attached() -> list[Attachment]:
    """Every attached bpf_oom_ops / bpf_psi_ops, ordered by link id (needs CAP_SYS_ADMIN)."""
    candidates = [(info, info.map_id) for info in links() if info.map_id]
    if not candidates:
        return []
    with vmlinux_btf() as kernel:
        values = {map_id: struct_ops_value(map_id, kernel) for _, map_id in candidates}
    ours = [(info, map_id, POLICY_KINDS[struct_name])
            for info, map_id in candidates
            for struct_name in (values[map_id][0],) if struct_name in POLICY_KINDS]
    paths = cgroup_paths({info.cgroup_id for info, _, _ in ours if info.cgroup_id})
    pins = _pins({info.id for info, _, _ in ours})
    return [
        Attachment(policy_name=values[map_id][1], kind=kind,
                   cgroup_path=paths.get(info.cgroup_id) if info.cgroup_id else None,
                   cgroup_id=info.cgroup_id or 0, link_id=info.id, map_id=map_id,
                   pin_path=pins.get(info.id))
        for info, map_id, kind in sorted(ours, key=lambda item: item[0].id)
    ]

