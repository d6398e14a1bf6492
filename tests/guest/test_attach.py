"""Attaching bpf_oom_ops: to a memcg (the link records the cgroup id), system-wide,
one policy per target (EBUSY), detach frees the slot, bad targets attach nothing."""
from __future__ import annotations

import errno
import os

import pytest

import bpfoom
from oomtest import BPF_DIR, link_ids


def test_cgroup_attach_records_the_cgroup_id(probe, cgroups):
    cg = cgroups("policy")
    with probe.struct_ops["probe_policy"].attach(cgroup=cg) as link:
        info = link.info()
        assert info.type == "struct_ops"
        assert info.cgroup_id == cg.id == os.stat(cg.path).st_ino
        assert info.map_id == probe.struct_ops["probe_policy"].id
        assert link.id in link_ids()


def test_system_wide_attach_has_no_cgroup(probe):
    with probe.struct_ops["probe_policy"].attach() as link:
        assert link.info().cgroup_id in (0, None)


@pytest.mark.parametrize("target", ["cgroup", "system"])
def test_second_policy_on_the_same_target_is_busy(probe, cgroups, target):
    cg = cgroups("busy") if target == "cgroup" else None
    first = probe.struct_ops["probe_policy"]
    other = probe.struct_ops["probe_policy2"]
    with first.attach(cgroup=cg):
        before = link_ids()
        for ops in (other, first):  # another map, and the same map again
            with pytest.raises(bpfoom.BusyError) as caught:
                ops.attach(cgroup=cg)
            assert caught.value.errno == errno.EBUSY
        assert link_ids() == before


def test_detach_frees_the_slot(probe, cgroups):
    cg = cgroups("slot")
    ops = probe.struct_ops["probe_policy"]
    for target in (cg, None):
        link = ops.attach(cgroup=target)
        link.detach()
        assert link.id not in link_ids()
        with probe.struct_ops["probe_policy2"].attach(cgroup=target) as again:
            assert again.info().cgroup_id in ((cg.id,) if target else (0, None))
        link.close()


def test_policies_on_different_targets_coexist(probe, cgroups):
    parent, child = cgroups("p"), cgroups("p/c")
    ops = probe.struct_ops["probe_policy"]
    with ops.attach(cgroup=parent) as a, ops.attach(cgroup=child) as b, ops.attach() as c:
        assert {a.info().cgroup_id, b.info().cgroup_id} == {parent.id, child.id}
        assert {a.id, b.id, c.id} <= link_ids()


def test_a_non_cgroup_fd_attaches_nothing(probe):
    before = link_ids()
    fd = os.open("/tmp", os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(bpfoom.CgroupError):
            probe.struct_ops["probe_policy"].attach(cgroup=bpfoom.Cgroup.from_fd(fd))
    finally:
        os.close(fd)
    assert link_ids() == before


def test_a_cgroup_without_its_own_memcg_is_refused_by_the_kernel(probe, cgroups):
    """The kernel's own check (not bpfoom's): memory not enabled for the cgroup -> EINVAL."""
    leaf = cgroups("no_memcg")
    plain = bpfoom.Cgroup.create(leaf.path / "child")  # leaf's subtree_control has no +memory
    before = link_ids()
    try:
        with pytest.raises(bpfoom.BpfError) as caught:
            probe.struct_ops["probe_policy"].attach(cgroup=plain)
        assert caught.value.errno == errno.EINVAL
        assert link_ids() == before
    finally:
        plain.remove()
        plain.close()


def test_a_removed_cgroup_attaches_nothing(probe, cgroups):
    """An fd kept open on a deleted cgroup: the kernel finds no live memcg (ENOENT)."""
    cg = cgroups("gone")
    cg.write("cgroup.subtree_control", "+memory")
    doomed = bpfoom.Cgroup.create(cg.path / "doomed")
    fd = os.dup(doomed.fd)  # remove() closes the Cgroup; this fd outlives the directory
    doomed.remove()
    doomed.close()
    before = link_ids()
    try:
        with bpfoom.Cgroup.from_fd(fd) as raw, pytest.raises(bpfoom.BpfError) as caught:
            probe.struct_ops["probe_policy"].attach(cgroup=raw)
        assert caught.value.errno == errno.ENOENT
        assert link_ids() == before
    finally:
        os.close(fd)


def test_a_policy_without_an_oom_handler_is_refused():
    """handle_out_of_memory is mandatory: the kernel rejects the struct_ops value.

    libbpf hands a link-based struct_ops value to the kernel at attach, not
    at load, so that is where the refusal shows.
    """
    obj = bpfoom.BpfObject.open(BPF_DIR / "oom_no_handler.bpf.o")
    try:
        obj.load()
        before = link_ids()
        with pytest.raises(bpfoom.BpfError) as caught:
            obj.struct_ops["handlerless"].attach()
        assert caught.value.errno == errno.EINVAL
        assert link_ids() == before
    finally:
        obj.close()


def test_an_order_is_refused_where_the_kernel_keeps_none(probe, cgroups):
    """v2 keeps one policy per cgroup: before=/after= say so and attach nothing (docs/upstream-abi.md)."""
    assert bpfoom.features()["oom_abi"].value == "v2"
    cg = cgroups("order")
    with probe.struct_ops["probe_policy"].attach(cgroup=cg) as anchor:
        before = link_ids()
        for where in ({"before": anchor}, {"after": anchor}):
            with pytest.raises(bpfoom.NotSupportedError, match="orders them only by the cgroup "
                               "hierarchy") as caught:
                probe.struct_ops["probe_policy2"].attach(cgroup=cg, **where)
            assert caught.value.errno == errno.EOPNOTSUPP
            assert caught.value.feature == "struct_ops_cgroup_order"
        assert link_ids() == before
