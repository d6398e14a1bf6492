"""The OOM layer's feature table: generic BPF facts plus the interface's types and kfuncs."""

from __future__ import annotations

from ..bpf.features import Feature, Features

__all__ = ["KFUNCS", "POLICY_KINDS", "STRUCT_OPS_TYPES", "Feature", "Features", "features"]

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

_features = Features(STRUCT_OPS_TYPES, KFUNCS)


def features() -> Features:
    """What the running kernel supports for OOM policies, probed lazily once per process."""
    return _features
