"""What the running kernel supports, probed once per process: generic BPF facts.

A :class:`Features` table is built from the struct_ops types and kfuncs its
user cares about (the OOM layer's table is :func:`bpfoom.features`); this
layer knows no OOM names.  Each :class:`Feature` says what was checked.  ``supported`` is True or False
only when the probe was conclusive; ``None`` means unknown (for example the
kernel's BTF could not be read) and is never treated as supported.

The BTF probes read /sys/kernel/btf/vmlinux once, answer every BTF question
at the same time and free it again, so holding the answers costs nothing.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from ._ffi import ffi, lib
from .btf import Btf, Kind, vmlinux_btf
from .errors import BpfError, NotSupportedError, errno_name
from .struct_ops_target import CgroupMechanism, cgroup_mechanism

__all__ = ["BtfProbe", "Feature", "Features", "cgroup_attach_supported", "generic_features",
           "require_cgroup_attach", "running_cgroup_mechanism"]

_GENERIC = ("bpf_syscall", "btf", "struct_ops_link", "struct_ops_cgroup_attach",
            "struct_ops_cgroup_order")

# A caller's own question of vmlinux BTF, answered in the same read as the others.
BtfProbe = Callable[[Btf], "Feature"]


@dataclass(frozen=True)
class Feature:
    """One probe result: ``supported`` True/False (conclusive) or None (unknown).

    ``value`` names what was found where the answer is more than yes or no
    (which cgroup mechanism, which OOM interface); None elsewhere.
    """

    name: str
    supported: bool | None
    detail: str
    value: str | None = None

    def __bool__(self) -> bool:
        return self.supported is True

    @property
    def verdict(self) -> str:
        """"supported", "not supported" or "unknown"."""
        if self.supported is None:
            return "unknown"
        return "supported" if self.supported else "not supported"

    def __repr__(self) -> str:
        return f"<Feature {self.name}: {self.verdict} ({self.detail})>"


class Features(Mapping[str, Feature]):
    """Feature name -> Feature; each probe runs on first access and is cached."""

    def __init__(self, struct_ops_types: tuple[str, ...] = (), kfuncs: tuple[str, ...] = (),
                 btf_probes: Mapping[str, BtfProbe] | None = None) -> None:
        self._lock = threading.Lock()
        self._results: dict[str, Feature] = {}
        self._btf_facts: dict[str, Feature] | None = None
        self._struct_ops_types = struct_ops_types
        self._kfuncs = kfuncs
        self._btf_probes = dict(btf_probes or {})
        self._names = [*_GENERIC, *self._btf_probes, *struct_ops_types,
                       *(f"kfunc:{name}" for name in kfuncs)]

    def __getitem__(self, name: str) -> Feature:
        if name not in self._names:
            raise KeyError(name)
        with self._lock:
            found = self._results.get(name)
            if found is None:
                if name == "bpf_syscall":
                    found = _probe_bpf_syscall()
                else:
                    if self._btf_facts is None:
                        self._btf_facts = _probe_btf(self._struct_ops_types, self._kfuncs,
                                                     self._btf_probes)
                    found = self._btf_facts[name]
                self._results[name] = found
            return found

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def require(self, name: str) -> Feature:
        """The feature if supported; NotSupportedError naming it otherwise (unknown included)."""
        feature = self[name]
        if feature.supported is not True:
            state = "is not supported" if feature.supported is False else "could not be confirmed"
            raise NotSupportedError(errno.EOPNOTSUPP, f"{name} {state} on this kernel "
                                    f"({feature.detail}); run `bpfoom features` for details",
                                    feature=name)
        return feature

    def __repr__(self) -> str:
        """The whole table, one probe per line (probing what was not probed yet)."""
        width = max(map(len, self._names), default=0)
        rows = [f"  {f.name:<{width}}  {f.verdict:<13}  {f.value + ': ' if f.value else ''}{f.detail}"
                for f in self.values()]
        return "<Features\n" + "\n".join(rows) + ">"

    def as_dict(self) -> dict[str, dict[str, Any]]:
        """Every feature as plain data (for JSON)."""
        return {name: asdict(self[name]) for name in self}


_generic = Features()


def generic_features() -> Features:
    """The process-wide table of generic facts (no struct_ops types, no kfuncs)."""
    return _generic


def struct_ops_type(name: str) -> Feature:
    """Whether vmlinux BTF has struct_ops type ``name`` (probed on each call)."""
    return _probe_btf((name,), (), {})[name]


def require_cgroup_attach() -> None:
    """NotSupportedError unless struct_ops can be attached to a cgroup (BTF-only probe)."""
    _generic.require("struct_ops_cgroup_attach")


def cgroup_attach_supported() -> bool:
    return _generic["struct_ops_cgroup_attach"].supported is True


def running_cgroup_mechanism() -> CgroupMechanism:
    """How the running kernel takes a struct_ops link's cgroup; NONE when unknown (never guessed)."""
    feature = _generic["struct_ops_cgroup_attach"]
    if feature.supported is not True or feature.value is None:
        return CgroupMechanism.NONE
    return CgroupMechanism(feature.value)


def _probe_bpf_syscall() -> Feature:
    """A cheap real bpf() call: ask for the first link id."""
    next_id = ffi.new("__u32 *")
    rc = lib.bpf_link_get_next_id(0, next_id)
    if rc == 0 or rc == -errno.ENOENT:
        return Feature("bpf_syscall", True, "bpf(BPF_LINK_GET_NEXT_ID) succeeded")
    code = -rc
    why = {
        errno.EPERM: "run as root or grant CAP_SYS_ADMIN (also check sysctl "
                     "kernel.unprivileged_bpf_disabled)",
        errno.EACCES: "run as root or grant CAP_SYS_ADMIN",
        errno.ENOSYS: "the kernel was built without CONFIG_BPF_SYSCALL",
    }.get(code, "unexpected error")
    return Feature("bpf_syscall", False, f"bpf(BPF_LINK_GET_NEXT_ID) failed with "
                   f"{errno_name(code)}: {why}")


def _probe_btf(struct_ops_types: tuple[str, ...], kfuncs: tuple[str, ...],
               probes: Mapping[str, BtfProbe]) -> dict[str, Feature]:
    """Answer every vmlinux-BTF question in one read of /sys/kernel/btf/vmlinux."""
    names = ["btf", "struct_ops_link", "struct_ops_cgroup_attach", "struct_ops_cgroup_order",
             *probes, *struct_ops_types, *(f"kfunc:{k}" for k in kfuncs)]
    try:
        with vmlinux_btf() as btf:
            facts = _btf_facts(btf, struct_ops_types, kfuncs)
            facts.update((name, probe(btf)) for name, probe in probes.items())
            return facts
    except BpfError as err:
        why = f"vmlinux BTF could not be loaded ({errno_name(err.errno or errno.ENOENT)}); " \
              "use a kernel with CONFIG_DEBUG_INFO_BTF"
        facts = {n: Feature(n, None, why) for n in names}
        facts["btf"] = Feature("btf", False, why)
        return facts


def _btf_facts(btf: Btf, struct_ops_types: tuple[str, ...],
               kfuncs: tuple[str, ...]) -> dict[str, Feature]:
    facts = {"btf": Feature("btf", True, "/sys/kernel/btf/vmlinux loaded")}

    link_type = btf.find("bpf_link_type", Kind.ENUM)
    has_link = link_type is not None and any(
        m.name == "BPF_LINK_TYPE_STRUCT_OPS" for m in btf.type(link_type).members)
    facts["struct_ops_link"] = Feature(
        "struct_ops_link", has_link,
        "vmlinux BTF enum bpf_link_type " + ("has" if has_link else "lacks")
        + " BPF_LINK_TYPE_STRUCT_OPS")

    mechanism, why = cgroup_mechanism(btf)
    facts["struct_ops_cgroup_attach"] = Feature(
        "struct_ops_cgroup_attach", mechanism is not CgroupMechanism.NONE, why, mechanism.value)
    facts["struct_ops_cgroup_order"] = Feature(
        "struct_ops_cgroup_order", mechanism.orders,
        ("BPF_F_BEFORE/BPF_F_AFTER order a cgroup's struct_ops links" if mechanism.orders
         else "a cgroup's struct_ops links have no order") + f" ({why})", mechanism.value)

    for name in struct_ops_types:
        has_struct = btf.find(name, Kind.STRUCT) is not None
        has_value = btf.find(f"bpf_struct_ops_{name}", Kind.STRUCT) is not None
        detail = (f"vmlinux BTF struct {name}: {'present' if has_struct else 'absent'}, "
                  f"struct bpf_struct_ops_{name}: {'present' if has_value else 'absent'}")
        facts[name] = Feature(name, has_struct and has_value, detail)

    for kfunc in kfuncs:
        present = btf.find(kfunc, Kind.FUNC) is not None
        facts[f"kfunc:{kfunc}"] = Feature(
            f"kfunc:{kfunc}", present,
            f"vmlinux BTF {'has' if present else 'has no'} FUNC {kfunc}")
    return facts
