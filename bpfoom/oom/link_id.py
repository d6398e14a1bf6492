"""Struct_ops links by kernel id or pin: what ``bpfoom detach --link ID`` / ``--pin PATH`` need.

A link attached and pinned by another process is only reachable through its
id (from ``bpfoom list``) or its pin.  Before detaching, the kernel is asked
what the link is: a struct_ops link (not a tracing, cgroup or other link),
registering a ``bpf_oom_ops`` or ``bpf_psi_ops`` (an OOM policy or PSI
handler), unless the caller accepts any struct_ops type.  So a typo in an id
or a path cannot detach some other program's link.
"""

from __future__ import annotations

import errno
import os

from ..bpf.btf import vmlinux_btf
from ..bpf.errors import BpfError, InvalidValueError, NotFoundError
from ..bpf.kernel_objects import detach_link, open_link_by_id, open_map_by_id
from ..bpf.link import Link, LinkInfo, link_info_from_fd
from .attachments import struct_ops_value
from .features import POLICY_KINDS

__all__ = ["detach_struct_ops_link", "check_policy_link", "struct_ops_type", "pinned_policy_link"]


def struct_ops_type(map_id: int) -> str | None:
    """The struct_ops type (e.g. ``bpf_oom_ops``) of the struct_ops map ``map_id``, from the
    kernel's BTF; None when the map is gone.  Opening a map by id needs CAP_SYS_ADMIN: without
    it, PermissionDeniedError rather than a wrong answer."""
    fd = open_map_by_id(map_id)
    if fd is None:
        return None
    os.close(fd)
    with vmlinux_btf() as kernel:
        return struct_ops_value(map_id, kernel)[0]


def check_policy_link(info: LinkInfo, what: str, any_struct_ops: bool = False) -> str | None:
    """InvalidValueError unless ``info`` is a struct_ops link registering an OOM policy or PSI
    handler (any struct_ops type with ``any_struct_ops``).  Returns its struct_ops type (None:
    the link is detached already, its map gone, so there is nothing left to tell)."""
    if info.type != "struct_ops":
        raise InvalidValueError(errno.EINVAL, f"{what} is a link of type {info.type} (program "
                                f"{info.prog_id}), not a struct_ops policy; bpfoom detaches only "
                                "policies' links (`bpfoom list` shows them)")
    if not info.map_id:
        return None
    struct_name = struct_ops_type(info.map_id)
    if struct_name not in POLICY_KINDS and not any_struct_ops:
        raise InvalidValueError(errno.EINVAL, f"{what} registers a {struct_name or 'struct_ops'}, "
                                "not an OOM policy or PSI handler (bpf_oom_ops, bpf_psi_ops); add "
                                "--all to detach any struct_ops link (`bpfoom list --all` shows them)")
    return struct_name


def pinned_policy_link(path: str | os.PathLike[str], any_struct_ops: bool = False) -> Link:
    """Open the link pinned at ``path`` after checking it is a policy's (check_policy_link)."""
    what = f"the BPF object pinned at {os.fsdecode(path)!r}"
    try:
        link = Link.from_pinned(path)
    except BpfError as exc:
        if exc.errno == errno.EINVAL:  # pinned, but not a link: a map or a program
            raise InvalidValueError(errno.EINVAL, f"{what} is not a BPF link (a pinned map or "
                                    "program); bpfoom detaches only policies' links") from None
        raise
    try:
        check_policy_link(link.info(), f"the link pinned at {os.fsdecode(path)!r}", any_struct_ops)
    except BaseException:
        link.close()
        raise
    return link


def detach_struct_ops_link(link_id: int, any_struct_ops: bool = False) -> LinkInfo:
    """Detach the policy link ``link_id`` (any struct_ops link with ``any_struct_ops``);
    returns what it was."""
    fd = open_link_by_id(link_id)
    if fd is None:
        raise NotFoundError(errno.ENOENT, f"there is no BPF link with id {link_id}; "
                            "`bpfoom list` shows the attached ones")
    try:
        info = link_info_from_fd(fd)
        check_policy_link(info, f"BPF link {link_id}", any_struct_ops)
        detach_link(fd, f"BPF link {link_id}")
        return info
    finally:
        os.close(fd)
