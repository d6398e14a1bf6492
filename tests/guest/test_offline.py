"""Deleting a cgroup with an attached policy: handle_cgroup_offline gets its id,
the link is detached and the memcg's slot is free again."""
from __future__ import annotations

import bpfoom
from oomtest import link_ids, wait_until


def test_offline_calls_the_policy_and_frees_the_slot(probe, cgroups):
    parent = cgroups("offline")
    parent.write("cgroup.subtree_control", "+memory")
    doomed = bpfoom.Cgroup.create(parent.path / "doomed")
    doomed_id = doomed.id
    link = probe.struct_ops["probe_policy"].attach(cgroup=doomed)
    try:
        doomed.remove()
        wait_until(lambda: probe.bss["offlines"] >= 1, what="handle_cgroup_offline")
        assert probe.bss["offlines"] == 1
        assert probe.bss["offline_ids"][0] == doomed_id
        assert probe.bss["offline_ctx_ids"][0] == doomed_id
        # The kernel detaches the link from a work item after the callback.
        wait_until(lambda: link.id not in link_ids(), what="the offlined link to be detached")
        assert not link.info().map_id
        # A new cgroup at the same path is a new memcg with a free slot.
        again = bpfoom.Cgroup.create(parent.path / "doomed")
        try:
            assert again.id != doomed_id
            with probe.struct_ops["probe_policy"].attach(cgroup=again) as second:
                assert second.info().cgroup_id == again.id
        finally:
            again.remove()
            again.close()
    finally:
        link.close()
        doomed.close()


def test_only_the_deleted_cgroups_policy_is_told(probe, cgroups):
    """A parent's policy stays attached and hears nothing when its child goes."""
    parent = cgroups("parent")
    parent.write("cgroup.subtree_control", "+memory")
    child = bpfoom.Cgroup.create(parent.path / "child")
    child_id = child.id
    ops = probe.struct_ops["probe_policy"]
    with ops.attach(cgroup=parent) as parent_link, ops.attach(cgroup=child) as child_link:
        child.remove()
        child.close()
        wait_until(lambda: child_link.id not in link_ids(), what="the child's link to be detached")
        assert probe.bss["offlines"] == 1
        assert probe.bss["offline_ids"][0] == child_id
        assert parent_link.id in link_ids()
        assert parent_link.info().cgroup_id == parent.id
