"""How a kernel lets a struct_ops link target a cgroup, and what BPF_LINK_CREATE receives.

Kernels differ in where the cgroup goes (docs/upstream-abi.md):

* ``NONE``: struct_ops links have no target; a kernel of this kind *ignores*
  any cgroup given and attaches system-wide, so a cgroup is refused before
  any BPF call.
* ``RELATIVE_FD``: the BPF OOM series' v2 (our default kernel): the cgroup fd
  in ``link_create.cgroup.relative_fd``, ``target_fd`` unused; one struct_ops
  per cgroup, no ordering among a cgroup's attachments.
* ``TARGET_FD``: upstream's generic "struct_ops attached to a cgroup": the
  cgroup fd in ``link_create.target_fd``; a cgroup's attachments are ordered
  with ``BPF_F_BEFORE``/``BPF_F_AFTER`` and an anchor link.

Which one runs is read from vmlinux BTF (:func:`cgroup_mechanism`); what the
kernel receives is computed by :func:`link_create_args`, a pure function so
it can be checked on any kernel.
"""

from __future__ import annotations

import enum
import errno
from dataclasses import dataclass

from ._ffi import lib
from .btf import Btf, Kind
from .errors import InvalidValueError, NotSupportedError

__all__ = ["CgroupMechanism", "LinkCreateArgs", "cgroup_mechanism", "link_create_args"]


class CgroupMechanism(enum.Enum):
    """Where a kernel takes the cgroup of a struct_ops link (see the module doc)."""

    NONE = "none"
    RELATIVE_FD = "relative_fd"
    TARGET_FD = "target_fd"

    @property
    def orders(self) -> bool:
        """Whether a cgroup's attachments can be placed before or after one another."""
        return self is CgroupMechanism.TARGET_FD


@dataclass(frozen=True)
class LinkCreateArgs:
    """The fields of BPF_LINK_CREATE (attach type BPF_STRUCT_OPS) besides the map fd."""

    target_fd: int = 0
    relative_fd: int = 0
    flags: int = 0
    expected_revision: int = 0


def _members(btf: Btf, type_id: int) -> dict[str, int]:
    return {m.name: m.type_id for m in btf.resolve(type_id).members if m.name}


def cgroup_mechanism(btf: Btf) -> tuple[CgroupMechanism, str]:
    """The mechanism of the kernel whose BTF this is, and the fact that decided it.

    ``TARGET_FD``: ``union bpf_attr``'s ``query`` has ``type_id`` (BPF_PROG_QUERY
    of a struct_ops type, which comes with the generic mechanism);
    ``RELATIVE_FD``: ``struct bpf_struct_ops_link`` has ``cgroup_id`` (the
    series' v2); else ``NONE``.
    """
    attr = btf.find("bpf_attr", Kind.UNION)
    query = _members(btf, attr).get("query") if attr is not None else None
    if query is not None and "type_id" in _members(btf, query):
        return CgroupMechanism.TARGET_FD, "vmlinux BTF union bpf_attr has query.type_id"
    link = btf.find("bpf_struct_ops_link", Kind.STRUCT)
    if link is not None and "cgroup_id" in _members(btf, link):
        return CgroupMechanism.RELATIVE_FD, "vmlinux BTF struct bpf_struct_ops_link has cgroup_id"
    return CgroupMechanism.NONE, ("vmlinux BTF has neither bpf_attr.query.type_id nor "
                                  "bpf_struct_ops_link.cgroup_id")


def link_create_args(mechanism: CgroupMechanism, cgroup_fd: int | None, *,
                     before_fd: int | None = None, after_fd: int | None = None,
                     expected_revision: int = 0) -> LinkCreateArgs:
    """What BPF_LINK_CREATE must receive to attach to ``cgroup_fd`` (None: no cgroup) on a
    kernel of ``mechanism``, placed before or after the link ``before_fd``/``after_fd``.

    Refuses, with a sentence saying why, what the kernel cannot do: a cgroup
    where links have no target (NotSupportedError: it would attach
    system-wide), an order where the kernel keeps none (NotSupportedError),
    an order without a cgroup or both anchors at once (InvalidValueError).
    """
    ordered = before_fd is not None or after_fd is not None
    if before_fd is not None and after_fd is not None:
        raise InvalidValueError(errno.EINVAL, "give before= or after=, not both: an attachment "
                                "is placed relative to one anchor link")
    if cgroup_fd is None:
        if ordered or expected_revision:
            raise InvalidValueError(errno.EINVAL, "before=, after= and expected_revision order "
                                    "the attachments of one cgroup; give cgroup= as well")
        return LinkCreateArgs()
    if mechanism is CgroupMechanism.NONE:
        raise NotSupportedError(errno.EOPNOTSUPP, "this kernel's struct_ops links take no cgroup "
                                "(it would attach system-wide); attach without a cgroup or use "
                                "a kernel with cgroup-targeted struct_ops",
                                feature="struct_ops_cgroup_attach")
    if mechanism is CgroupMechanism.RELATIVE_FD:
        if ordered or expected_revision:
            raise NotSupportedError(errno.EOPNOTSUPP, "this kernel (the BPF OOM series' v2 "
                                    "interface) keeps one struct_ops per cgroup and orders them "
                                    "only by the cgroup hierarchy: before=, after= and "
                                    "expected_revision need the generic cgroup struct_ops link",
                                    feature="struct_ops_cgroup_order")
        return LinkCreateArgs(relative_fd=cgroup_fd)
    flags = 0
    if ordered:
        flags = (lib.BPF_F_BEFORE if before_fd is not None else lib.BPF_F_AFTER) | lib.BPF_F_LINK
    anchor = before_fd if before_fd is not None else after_fd
    return LinkCreateArgs(target_fd=cgroup_fd, relative_fd=anchor or 0, flags=flags,
                          expected_revision=expected_revision)
