"""The OOM layer's feature table: generic BPF facts plus the interface's types and kfuncs."""

from __future__ import annotations

from ..bpf.features import Feature, Features
from .abi import ABIS, OomAbi, oom_abi_feature

__all__ = ["KFUNCS", "POLICY_KINDS", "STRUCT_OPS_TYPES", "Feature", "Features", "features",
           "running_oom_abi"]

# The spec's struct_ops types and the kind of handler each makes (OomPolicy, PsiHandler),
# and its kfuncs: section 4 (memcg and OOM), section 5 (PSI).
POLICY_KINDS = {"bpf_oom_ops": "oom", "bpf_psi_ops": "psi"}
STRUCT_OPS_TYPES = tuple(POLICY_KINDS)
KFUNCS = (
    "bpf_get_root_mem_cgroup", "bpf_get_mem_cgroup", "bpf_put_mem_cgroup",
    "bpf_mem_cgroup_vm_events", "bpf_mem_cgroup_memory_events", "bpf_mem_cgroup_usage",
    "bpf_mem_cgroup_page_state", "bpf_mem_cgroup_flush_stats",
    "bpf_oom_kill_process", "bpf_task_is_oom_victim", "bpf_out_of_memory",
    "bpf_psi_create_trigger",
)

# "oom_abi": which kernel interface of bpf_oom_ops runs, value "v2" or "next" (bpfoom.oom.abi).
_features = Features(STRUCT_OPS_TYPES, KFUNCS, {"oom_abi": oom_abi_feature})


def features() -> Features:
    """What the running kernel supports for OOM policies, probed lazily once per process."""
    return _features


def running_oom_abi() -> OomAbi | None:
    """The running kernel's bpf_oom_ops interface; None when it has none or an unknown one."""
    value = _features["oom_abi"].value
    return next((abi for abi in ABIS if abi.name == value), None)
