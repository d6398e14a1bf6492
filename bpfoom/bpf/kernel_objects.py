"""BPF objects the kernel holds, reached by id, fd or pin: for tools that did not create them.

A process that lists or inspects what others attached (``bpfoom list``, the
daemon) holds no BpfObject: it has a link id, a map id from link info, a pin
path.  These functions are the raw fd level of the object layer for that
use, so the layers above never touch cdata.  Each ``open_*`` returns an fd
the caller owns (``os.close`` it), or None when the object went away meanwhile.
:func:`bpfoom.bpf.map.map_info` and :func:`bpfoom.bpf.link.link_info_from_fd`
describe such fds.
"""

from __future__ import annotations

import errno
import os

from ._ffi import ffi, lib
from .errors import check

__all__ = ["fd_kind", "open_map_by_id", "open_program_by_id", "open_link_by_id",
           "open_pinned", "pin_fd", "lookup_bytes", "program_map_ids", "detach_link"]


def fd_kind(fd: int) -> str | None:
    """"map", "program", "link" (or "object of another kind") as /proc says of a BPF fd.

    None when /proc cannot tell (not mounted); a non-BPF fd is "object of
    another kind" too.
    """
    try:
        with open(f"/proc/self/fdinfo/{fd}") as fdinfo:
            keys = {line.split(":", 1)[0] for line in fdinfo}
    except OSError:
        return None
    for key, kind in (("map_type", "map"), ("prog_type", "program"), ("link_type", "link")):
        if key in keys:
            return kind
    return "object of another kind"


def _opened(fd: int, action: str) -> int | None:
    if fd in (-errno.ENOENT, -errno.EAGAIN):  # gone, or another process is still creating it
        return None
    return check(fd, action)


def open_map_by_id(map_id: int) -> int | None:
    """An owned fd of map ``map_id`` (needs CAP_SYS_ADMIN); None if there is none."""
    return _opened(lib.bpf_map_get_fd_by_id(map_id), f"open BPF map {map_id}")


def open_program_by_id(prog_id: int) -> int | None:
    """An owned fd of program ``prog_id`` (needs CAP_SYS_ADMIN); None if there is none."""
    return _opened(lib.bpf_prog_get_fd_by_id(prog_id), f"open BPF program {prog_id}")


def open_link_by_id(link_id: int) -> int | None:
    """An owned fd of link ``link_id`` (needs CAP_SYS_ADMIN); None if there is none."""
    return _opened(lib.bpf_link_get_fd_by_id(link_id), f"open BPF link {link_id}")


def open_pinned(path: str | os.PathLike[str]) -> int | None:
    """An owned fd of whatever BPF object is pinned at ``path``; None if nothing (usable) is."""
    fd = lib.bpf_obj_get(os.fsencode(path))
    return fd if fd >= 0 else None


def pin_fd(fd: int, path: str | os.PathLike[str], *, advice: str | None = None) -> None:
    """Pin the BPF object ``fd`` at ``path`` on bpffs (BusyError if the path is taken)."""
    check(lib.bpf_obj_pin(fd, os.fsencode(path)), f"pin a BPF object at {os.fsdecode(path)!r}",
          advice=advice)


def lookup_bytes(fd: int, key: bytes, value_size: int, what: str = "a BPF map") -> bytes | None:
    """The raw value under ``key`` in map ``fd``; None if the map holds no such key."""
    value = ffi.new("char[]", value_size)
    rc = lib.bpf_map_lookup_elem(fd, ffi.from_buffer(key), value)
    if rc == -errno.ENOENT:
        return None
    check(rc, f"read {what}")
    return bytes(ffi.buffer(value, value_size))


def program_map_ids(fd: int) -> list[int]:
    """Ids of the maps program ``fd`` uses."""
    info = ffi.new("struct bpf_prog_info *")
    size = ffi.new("__u32 *", ffi.sizeof("struct bpf_prog_info"))
    check(lib.bpf_prog_get_info_by_fd(fd, info, size), "query a BPF program")
    count = info.nr_map_ids
    ids = ffi.new("__u32[]", max(count, 1))
    info = ffi.new("struct bpf_prog_info *")
    info.nr_map_ids = count
    info.map_ids = int(ffi.cast("uintptr_t", ids))
    size[0] = ffi.sizeof("struct bpf_prog_info")
    check(lib.bpf_prog_get_info_by_fd(fd, info, size), "list the maps of a BPF program")
    return list(ids[0:min(count, info.nr_map_ids)])


def detach_link(fd: int, what: str = "the BPF link") -> None:
    """Detach link ``fd`` now, whoever holds it or pinned it."""
    check(lib.bpf_link_detach(fd), f"detach {what}")

