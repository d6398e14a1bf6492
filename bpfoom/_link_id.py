"""Struct_ops links by kernel id: what ``bpfoom detach --link ID`` needs.

A link attached and pinned by another process is only reachable through its
id (from ``bpfoom list``) or its pin; this opens it by id, checks it is a
struct_ops link (so a typo cannot detach some other kind of BPF link), and
detaches it.
"""

from __future__ import annotations

import errno
import os

from ._ffi import lib
from .errors import InvalidValueError, NotFoundError, check
from .link import LinkInfo, link_info_from_fd

__all__ = ["detach_struct_ops_link"]


def detach_struct_ops_link(link_id: int) -> LinkInfo:
    """Detach the struct_ops link ``link_id``; returns what it was."""
    fd = lib.bpf_link_get_fd_by_id(link_id)
    if fd == -errno.ENOENT:
        raise NotFoundError(errno.ENOENT, f"there is no BPF link with id {link_id}; "
                            "`bpfoom list` shows the attached ones")
    check(fd, f"open BPF link {link_id}")
    try:
        info = link_info_from_fd(fd)
        if info.type != "struct_ops":
            raise InvalidValueError(errno.EINVAL, f"BPF link {link_id} is a {info.type} link, not a "
                                    "struct_ops policy; `bpfoom list` shows the policy links")
        check(lib.bpf_link_detach(fd), f"detach BPF link {link_id}")
        return info
    finally:
        os.close(fd)
