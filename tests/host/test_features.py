"""bpfoom.features() agrees with the kernel's own BTF, read here independently."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

import bpfoom
import facts
from conftest import require

SPEC_KFUNCS = (
    "bpf_get_root_mem_cgroup", "bpf_get_mem_cgroup", "bpf_put_mem_cgroup",
    "bpf_mem_cgroup_vm_events", "bpf_mem_cgroup_memory_events", "bpf_mem_cgroup_usage",
    "bpf_mem_cgroup_page_state", "bpf_mem_cgroup_flush_stats",
    "bpf_oom_kill_process", "bpf_task_is_oom_victim", "bpf_out_of_memory",
)


@pytest.fixture
def kernel_btf():
    if not facts.VMLINUX_BTF.exists():
        require(False, f"needs kernel BTF at {facts.VMLINUX_BTF} (CONFIG_DEBUG_INFO_BTF)")
    return facts.vmlinux_btf_index()


def test_every_documented_feature_is_reported():
    feats = bpfoom.features()
    expected = {"bpf_syscall", "btf", "struct_ops_link", "struct_ops_cgroup_attach",
                "bpf_oom_ops", "bpf_psi_ops"} | {f"kfunc:{name}" for name in SPEC_KFUNCS}
    assert expected <= set(feats)
    for name in expected:
        feature = feats[name]
        assert feature.name == name
        assert feature.supported in (True, False, None)
        assert feature.detail


def test_struct_types_match_the_kernel_btf(kernel_btf):
    structs, _ = kernel_btf
    feats = bpfoom.features()
    assert feats["btf"].supported is True
    assert feats["bpf_oom_ops"].supported is ("bpf_oom_ops" in structs)
    assert feats["bpf_psi_ops"].supported is ("bpf_psi_ops" in structs)
    has_cgroup_id = "cgroup_id" in structs.get("bpf_struct_ops_link", set())
    assert feats["struct_ops_cgroup_attach"].supported is has_cgroup_id


def test_kfuncs_match_the_kernel_btf(kernel_btf):
    _, funcs = kernel_btf
    feats = bpfoom.features()
    for name in SPEC_KFUNCS:
        assert feats[f"kfunc:{name}"].supported is (name in funcs), name


def test_bpf_syscall_and_struct_ops_link_work_as_root(tcp_struct_ops):
    feats = bpfoom.features()
    assert feats["bpf_syscall"].supported is True
    assert feats["struct_ops_link"].supported is True


def test_require_names_the_missing_feature(kernel_btf):
    structs, _ = kernel_btf
    if "bpf_oom_ops" in structs:
        require(False, "this kernel has bpf_oom_ops; require() cannot fail for it")
    with pytest.raises(bpfoom.NotSupportedError) as caught:
        bpfoom.features().require("bpf_oom_ops")
    assert caught.value.feature == "bpf_oom_ops"
    assert "bpf_oom_ops" in str(caught.value)


def test_cli_json_matches_the_api():
    done = subprocess.run([sys.executable, "-P", "-m", "bpfoom.cli", "features", "--json"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    reported = json.loads(done.stdout)
    feats = bpfoom.features()
    as_dict = reported if isinstance(reported, dict) else {item["name"]: item for item in reported}
    for name, feature in feats.items():
        entry = as_dict[name]
        assert (entry["supported"] if isinstance(entry, dict) else entry) == feature.supported, name
