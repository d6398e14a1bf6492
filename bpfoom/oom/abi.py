"""The two kernel interfaces of BPF OOM policies, in one place, and which one runs.

* ``v2``: the BPF OOM series' v2 (the README's kernel interface; our default
  kernel).  ``handle_out_of_memory(struct bpf_oom_ctx *, struct oom_control *)``
  and ``handle_cgroup_offline``; the cgroup goes in ``relative_fd``;
  system-wide is "no cgroup" (ctx cgroup id 0); one policy per cgroup, the
  OOM walks up from the OOMing cgroup to the first policy that frees memory.
* ``next``: the shape upstream is taking: ``bpf_oom_ops`` on the generic
  cgroup struct_ops link.  ``handle_out_of_memory(struct oom_control *,
  struct cgroup *attached_cgrp)``, no offline callback; the cgroup goes in
  ``target_fd``; system-wide is "attached to the root cgroup"; a cgroup holds
  many attachments, ordered with before=/after=, inherited by descendants
  (which run first).

The interface is told from vmlinux BTF: the parameter types of
``bpf_oom_ops.handle_out_of_memory``, cross-checked with how the kernel takes a
struct_ops link's cgroup (:func:`bpfoom.bpf.struct_ops_target.cgroup_mechanism`).
A shape matching neither (an intermediate upstream version) is reported as
unknown and nothing is attached to a cgroup on it.  docs/upstream-abi.md says
what cannot be hidden.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from ..bpf.btf import Btf, Kind
from ..bpf.cgroup import Cgroup, CgroupTarget
from ..bpf.errors import NotSupportedError
from ..bpf.features import Feature
from ..bpf.struct_ops_target import (CgroupMechanism, LinkCreateArgs, cgroup_mechanism,
                                     link_create_args)

__all__ = ["ABIS", "NEXT", "V2", "OomAbi", "attach_target", "detect_oom_abi", "oom_abi_feature"]

ROOT_CGROUP_ID = 1  # cgroup2's root directory is kernfs node 1


@dataclass(frozen=True)
class OomAbi:
    """One kernel interface of ``bpf_oom_ops`` and what it does differently."""

    name: str
    mechanism: CgroupMechanism
    handler_params: tuple[str, ...]  # handle_out_of_memory's parameter types, as BTF spells them
    system_wide_is_root_cgroup: bool  # None attaches to the root cgroup (else: to no cgroup)
    orders: bool  # before=/after= place an attachment among its cgroup's others
    inherits: bool  # a cgroup's attachments run for OOMs of its descendants, descendants first
    several_per_cgroup: bool  # more than one policy per cgroup (else EBUSY)
    offline_callback: bool  # handle_cgroup_offline is called when an attached cgroup goes
    query_lists: bool  # BPF_PROG_QUERY on a cgroup lists its attachments

    def link_create_args(self, cgroup_fd: int | None, *, before_fd: int | None = None,
                         after_fd: int | None = None) -> LinkCreateArgs:
        """What BPF_LINK_CREATE receives on this interface for a policy attached to
        ``cgroup_fd`` (None: system-wide; on ``next`` pass the root cgroup's fd, as
        :meth:`bpfoom.OomPolicy.attach` does), before or after an anchor link's fd."""
        return link_create_args(self.mechanism, cgroup_fd, before_fd=before_fd, after_fd=after_fd)

    @property
    def system_wide(self) -> str:
        """What ``attach(cgroup=None)`` does on this interface, in words."""
        return "attached to the root cgroup" if self.system_wide_is_root_cgroup else \
            "attached to no cgroup (cgroup id 0)"


V2 = OomAbi("v2", CgroupMechanism.RELATIVE_FD, ("struct bpf_oom_ctx *", "struct oom_control *"),
            system_wide_is_root_cgroup=False, orders=False, inherits=False,
            several_per_cgroup=False, offline_callback=True, query_lists=False)
NEXT = OomAbi("next", CgroupMechanism.TARGET_FD, ("struct oom_control *", "struct cgroup *"),
              system_wide_is_root_cgroup=True, orders=True, inherits=True,
              several_per_cgroup=True, offline_callback=False, query_lists=True)
ABIS = (V2, NEXT)


def _handler_params(btf: Btf) -> tuple[str, ...] | None:
    """handle_out_of_memory's parameter types in ``btf``, or None without bpf_oom_ops."""
    ops = btf.find("bpf_oom_ops", Kind.STRUCT)
    if ops is None:
        return None
    slot = next((m for m in btf.type(ops).members if m.name == "handle_out_of_memory"), None)
    if slot is None or not btf.is_func_pointer(slot.type_id):
        return ()
    proto = btf.resolve(btf.resolve(slot.type_id).ref)
    return tuple(btf.describe(param.type_id) for param in proto.members)


def detect_oom_abi(btf: Btf) -> tuple[OomAbi | None, str]:
    """The interface of the kernel whose BTF this is (None: none or unknown) and why."""
    params = _handler_params(btf)
    if params is None:
        return None, "vmlinux BTF has no struct bpf_oom_ops"
    shape = f"bpf_oom_ops.handle_out_of_memory({', '.join(params)})"
    abi = next((a for a in ABIS if a.handler_params == params), None)
    if abi is None:
        return None, f"vmlinux BTF has {shape}, which is neither v2 nor next: unknown interface"
    mechanism, why = cgroup_mechanism(btf)
    if mechanism is not abi.mechanism:
        return None, (f"vmlinux BTF has {shape} ({abi.name}) but its struct_ops cgroup mechanism "
                      f"is {mechanism.value} ({why}), not {abi.mechanism.value}: unknown interface")
    return abi, f"vmlinux BTF has {shape}; {why}"


def oom_abi_feature(btf: Btf) -> Feature:
    """The ``oom_abi`` entry of :func:`bpfoom.features`: value "v2" or "next" when known."""
    abi, why = detect_oom_abi(btf)
    if abi is not None:
        return Feature("oom_abi", True, why, abi.name)
    unknown = btf.find("bpf_oom_ops", Kind.STRUCT) is not None
    return Feature("oom_abi", None if unknown else False, why)


def attach_target(abi: OomAbi | None, cgroup: CgroupTarget | None) -> CgroupTarget | None:
    """The cgroup a policy's link targets for ``attach(cgroup=)`` on ``abi``: ``None`` means
    system-wide, which the next interface spells as the root cgroup."""
    if cgroup is not None or abi is None or not abi.system_wide_is_root_cgroup:
        return cgroup
    try:
        return Cgroup.from_id(ROOT_CGROUP_ID)
    except OSError as err:
        raise NotSupportedError(errno.EOPNOTSUPP, "system-wide on this kernel (the next "
                                "interface) means attached to the root cgroup, which this "
                                f"process cannot open ({err}); run it where the cgroup2 root is "
                                "mounted", feature="oom_abi") from err
