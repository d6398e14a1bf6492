"""bpfoom.memcg_stats refuses what is not a memory cgroup v2 root, and says why.

The numbers themselves need the memcg kfuncs and a cgroup2 memory
controller: tests/guest/test_memcg_stats.py checks them in the VM.
"""
from __future__ import annotations

import pytest

import bpfoom
from conftest import require

pytestmark = pytest.mark.usefixtures("bpf_privileges")

MEMCG_KFUNCS = ("bpf_get_mem_cgroup", "bpf_mem_cgroup_usage", "bpf_mem_cgroup_memory_events")


def test_paths_that_are_no_cgroup2_directory(tmp_path, cgroup_v1_memory):
    with pytest.raises(bpfoom.NotFoundError, match="does not exist"):
        bpfoom.memcg_stats(tmp_path / "missing")
    with pytest.raises(bpfoom.CgroupError, match="not a cgroup v2 directory"):
        bpfoom.memcg_stats(tmp_path)
    with pytest.raises(bpfoom.CgroupError, match="cgroup v1"):
        bpfoom.memcg_stats(cgroup_v1_memory)


def test_wrong_types_and_capacities(cgroup2_dir):
    with pytest.raises(TypeError, match="root"):
        bpfoom.memcg_stats(42)
    with pytest.raises(TypeError, match="capacity"):
        bpfoom.MemcgStatsReader(cgroup2_dir, capacity=2.5)
    with pytest.raises(ValueError, match="capacity"):
        bpfoom.MemcgStatsReader(cgroup2_dir, capacity=0)


def test_a_kernel_without_memcg_kfuncs_or_a_cgroup_without_memcg(cgroup2_dir):
    """Without the kfuncs (this host's 6.18): NotSupportedError naming one; with them, a
    cgroup whose parent does not enable +memory is refused as having no memory controller."""
    feats = bpfoom.features()
    lacking = [k for k in MEMCG_KFUNCS if feats[f"kfunc:{k}"].supported is not True]
    has_memory = "memory" in (cgroup2_dir / "cgroup.controllers").read_text().split()
    if lacking:
        with pytest.raises(bpfoom.NotSupportedError) as caught:
            bpfoom.memcg_stats(cgroup2_dir)
        assert caught.value.feature.startswith("kfunc:bpf_")
    elif not has_memory:
        with pytest.raises(bpfoom.CgroupError, match="no memory controller"):
            bpfoom.memcg_stats(cgroup2_dir)
    else:
        require(False, "this kernel has the memcg kfuncs and the test cgroup a memcg: "
                    "nothing to refuse (tests/guest/test_memcg_stats.py covers it)")
