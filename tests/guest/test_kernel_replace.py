"""Atomic replacement of a bpf_oom_ops policy (issue 22, BPF_LINK_UPDATE).

Link.update() switches an attached link to another loaded bpf_oom_ops map:
the link keeps its cgroup and its place in the chain, and no OOM in between
finds the cgroup without a policy.  Before the kernel implemented the
struct_ops update callback for bpf_oom_ops, every update was refused
(EOPNOTSUPP), so a replacement meant detach + attach, with a window.

The OOM load: hogs of 64M, one after another, in a leaf of a 32M cgroup; the
policy (overkill_leaf.bpf.c, two instances) kills each.  A kill by the
kernel's own killer ("Memory cgroup out of memory") would mean an OOM found
no policy.
"""
from __future__ import annotations

import errno
import threading

import pytest

import bpfoom
from bpfoom.testing import MemoryHog, memory_events
from oomtest import BPF_DIR, REPO, killed_pids, wait_until

POLICY_REASON = "overkill leaf"
UPDATES = 4


def open_leaf_policy() -> bpfoom.BpfObject:
    obj = bpfoom.BpfObject.open(BPF_DIR / "overkill_leaf.bpf.o")
    try:
        obj.load()
    except BaseException:
        obj.close()
        raise
    return obj


@pytest.fixture
def policies():
    objs = [open_leaf_policy(), open_leaf_policy()]
    yield objs
    for obj in objs:
        obj.close()


def oom_load(leaf: bpfoom.Cgroup, stop: threading.Event, deaths: list[str]) -> None:
    """64M hogs in `leaf`, one after another, until `stop`; how each ended."""
    while not stop.is_set():
        hog = MemoryHog.start(leaf, 64, gated=False)
        try:
            deaths.append(hog.wait_dead(120))
        finally:
            hog.stop()


def test_update_under_a_continuous_oom_load_leaves_no_oom_to_the_kernel(
        cgroups, kernel_log, policies):
    top = cgroups("replace", memory_max="32M")
    leaf = cgroups("replace/w")
    a, b = policies
    maps = [obj.struct_ops["overkill_leaf"] for obj in policies]
    stop, deaths = threading.Event(), []
    with maps[0].attach(cgroup=top) as link:
        loader = threading.Thread(target=oom_load, args=(leaf, stop, deaths))
        loader.start()
        try:
            for n in range(UPDATES):
                before = len(deaths)
                wait_until(lambda: len(deaths) > before, 120, "an OOM kill under the load")
                link.update(maps[(n + 1) % 2])
                assert link.info().map_id == maps[(n + 1) % 2].id
                assert link.info().cgroup_id == top.id
        finally:
            stop.set()
            loader.join()
    kills = killed_pids(kernel_log)
    assert kills and all(reason == POLICY_REASON for _, reason in kills), kills
    assert a.bss["kills"] > 0 and b.bss["kills"] > 0, (a.bss["kills"], b.bss["kills"])
    assert memory_events(top)["oom_kill"] == a.bss["kills"] + b.bss["kills"]
    assert all(death == "SIGKILL" for death in deaths), deaths


def test_update_to_another_struct_ops_type_is_refused(cgroups, policies):
    top = cgroups("replace-type", memory_max="32M")
    with bpfoom.BpfObject.open(REPO / "examples" / "tcp_cc" / "tcp_cc.bpf.o") as tcp:
        tcp.load()
        with policies[0].struct_ops["overkill_leaf"].attach(cgroup=top) as link:
            with pytest.raises(OSError) as refused:
                link.update(tcp.struct_ops["bpfoom_demo"])
            assert refused.value.errno == errno.EINVAL
            assert link.info().map_id == policies[0].struct_ops["overkill_leaf"].id


def test_update_of_a_link_whose_cgroup_is_gone_is_refused(cgroups, policies):
    gone = cgroups("replace-gone")
    link = policies[0].struct_ops["overkill_leaf"].attach(cgroup=gone)
    try:
        gone.path.rmdir()
        wait_until(lambda: not link.info().map_id, 30, "the offline detach of the link")
        with pytest.raises(OSError) as refused:
            link.update(policies[1].struct_ops["overkill_leaf"])
        assert refused.value.errno == errno.ENOLINK
    finally:
        link.close()
