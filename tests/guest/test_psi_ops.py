"""struct bpf_psi_ops: triggers created by init(), events, cgroup callbacks, refusals,
and detaching (patch 0007), through the recording handler psi_probe.bpf.c."""
from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest

import bpfoom
from bpfoom.testing import cgroup_stat, memory_stat
from kerneltest import in_child
from oomtest import (BPF_DIR, BPF_PSI_FULL, CGROUP_ROOT, PSI_CPU, PSI_IO, PSI_MEM, Trigger,
                     link_ids, open_psi_probe, psi_records, psimon_threads, set_psi_triggers,
                     struct_ops_map_ids, wait_until)

EVENT_TIMEOUT_S = 60.0
# Triggers one bpf_psi_ops may hold at a time (patch 0011).
TRIGGERS_PER_OPS = 1024
NO_SUCH_CGROUP = (1 << 62) + 12345


@pytest.fixture
def pressured(cgroups, hogs) -> bpfoom.Cgroup:
    """A cgroup whose hog is throttled by a low memory.high (no swap): a steady memory stall."""
    cg = cgroups("psi-pressured")
    cg.write("memory.high", "16M")
    hogs(cg, 256)  # throttled for far longer than any test here takes
    return cg


def test_init_creates_triggers_and_events_arrive_only_for_pressure(cgroups, pressured):
    idle = cgroups("psi-idle")
    baseline = psimon_threads()
    # The hog is the pressured cgroup's only task: its stall is "full" there.
    obj = open_psi_probe(Trigger(pressured.id, PSI_MEM | BPF_PSI_FULL, 50_000, 500_000),
                         Trigger(idle.id, PSI_MEM, 10_000, 500_000),
                         Trigger(0, PSI_MEM, 10_000, 500_000))
    try:
        with obj.struct_ops["psi_probe"].attach():
            assert obj.bss["inits"] == 1
            assert list(obj.bss["create_rets"][:3]) == [0, 0, 0]
            # One RT polling thread per watched psi_group: pressured, idle, system.
            assert psimon_threads() == baseline + 3
            wait_until(lambda: {pressured.id, 0} <= set(psi_records(obj, "event")),
                       EVENT_TIMEOUT_S, "events for the pressured cgroup and the system")
            time.sleep(1.0)
            assert idle.id not in psi_records(obj, "event")
        wait_until(lambda: psimon_threads() == baseline, 10, "the triggers to be destroyed")
        stopped = obj.bss["events"]
        time.sleep(1.5)
        assert obj.bss["events"] == stopped, "events after detach"
    finally:
        obj.close()


@pytest.mark.parametrize("init_ret, expected", [(1, errno.EINVAL), (-errno.EPERM, errno.EPERM)])
def test_failing_init_fails_attach_and_leaves_nothing(cgroups, init_ret, expected):
    watched = cgroups("psi-init-fails")
    baseline = psimon_threads()
    links_before = link_ids()
    obj = open_psi_probe(Trigger(watched.id, PSI_MEM), Trigger(0, PSI_IO), init_ret=init_ret)
    try:
        with pytest.raises(bpfoom.BpfError) as caught:
            obj.struct_ops["psi_probe"].attach()
        assert caught.value.errno == expected
        # init() ran and its triggers existed, then went with the failed attach.
        assert obj.bss["inits"] == 1
        assert list(obj.bss["create_rets"][:2]) == [0, 0]
        assert psimon_threads() == baseline
        assert link_ids() == links_before
        # The map is free for a working attach afterwards.
        obj.bss["init_ret"] = 0
        with obj.struct_ops["psi_probe"].attach():
            assert obj.bss["inits"] == 2
            assert psimon_threads() == baseline + 2
    finally:
        obj.close()
    wait_until(lambda: psimon_threads() == baseline, 10, "the triggers to be destroyed")


def test_create_trigger_refusals():
    baseline = psimon_threads()
    obj = open_psi_probe(Trigger(0, 7),                                  # no such resource
                         Trigger(0, PSI_CPU | 0x4000, 100_000, 1_000_000),  # stray bits
                         Trigger(0, PSI_MEM, 0, 1_000_000),             # zero threshold
                         Trigger(NO_SUCH_CGROUP, PSI_MEM))              # no such cgroup
    try:
        with obj.struct_ops["psi_probe"].attach():
            assert list(obj.bss["create_rets"]) == [-errno.EINVAL, -errno.EINVAL,
                                                    -errno.EINVAL, -errno.ENOENT]
            assert psimon_threads() == baseline
        set_psi_triggers(obj, Trigger(0, PSI_MEM, 100_000, 20_000_000),  # window > 10 s
                         Trigger(0, PSI_MEM, 2_000_000, 1_000_000))      # threshold > window
        with obj.struct_ops["psi_probe"].attach():
            assert list(obj.bss["create_rets"][:2]) == [-errno.EINVAL, -errno.EINVAL]
    finally:
        obj.close()


def slab_bytes(cg: bpfoom.Cgroup) -> int:
    return memory_stat(cg)["slab_unreclaimable"]


def test_triggers_are_capped_per_ops_and_charged_to_its_owner(cgroups):
    """At most 1,024 triggers per ops (-ENOSPC past it), charged to the memcg of the attacher."""
    owner = cgroups("psi-owner")
    baseline = psimon_threads()
    obj = open_psi_probe(Trigger(0, PSI_MEM, 500_000, 1_000_000))
    obj.bss["extra_triggers"] = TRIGGERS_PER_OPS + 50

    def attach_from_owner() -> int:
        """Attach from inside `owner`; how much its unreclaimable slab grew meanwhile."""
        (owner.path / "cgroup.procs").write_text("0")
        before = slab_bytes(owner)
        with obj.struct_ops["psi_probe"].attach():
            # memory.stat is flushed every 2 s at the latest; a psi_trigger is > 128 bytes.
            wait_until(lambda: slab_bytes(owner) - before >= TRIGGERS_PER_OPS * 128, 30,
                       "the triggers to be charged to the attaching task's cgroup")
            return slab_bytes(owner) - before

    try:
        assert in_child(attach_from_owner) >= TRIGGERS_PER_OPS * 128
        assert obj.bss["create_rets"][0] == 0
        assert obj.bss["extra_created"] == TRIGGERS_PER_OPS - 1
        assert obj.bss["extra_refusal"] == -errno.ENOSPC
        wait_until(lambda: psimon_threads() == baseline, 10, "the triggers to be destroyed")
        # Destroyed triggers give their slots back: the next attach gets as many.
        obj.bss["extra_created"] = 0
        obj.bss["extra_refusal"] = 0
        with obj.struct_ops["psi_probe"].attach():
            assert obj.bss["extra_created"] == TRIGGERS_PER_OPS - 1
            assert obj.bss["extra_refusal"] == -errno.ENOSPC
    finally:
        obj.close()


def test_triggers_a_work_item_creates_are_charged_to_the_attacher(cgroups):
    """handle_cgroup_online runs on a kernel work item: its triggers are charged to the
    memcg the ops was attached from all the same, not to the kworker's (the root)."""
    owner, births = cgroups("psi-owner"), cgroups("psi-births")
    new_cgroups, per_cgroup = 8, 32
    total = new_cgroups * per_cgroup
    obj = open_psi_probe(Trigger(0, PSI_MEM, 500_000, 1_000_000))
    obj.bss["online_triggers"] = per_cgroup
    home = own_cgroup()

    def attach_then_leave() -> int:
        """Attach from inside `owner`, leave it, make cgroups; how much `owner`'s slab grew."""
        (owner.path / "cgroup.procs").write_text("0")
        with obj.struct_ops["psi_probe"].attach():
            # The charge target is fixed at registration: leave `owner`, so nothing this
            # task allocates from here on lands there.
            (home / "cgroup.procs").write_text("0")
            before = slab_bytes(owner)
            for index in range(new_cgroups):
                (births.path / f"born{index}").mkdir()
            wait_until(lambda: obj.bss["online_created"] == total or obj.bss["online_refusal"],
                       30, "handle_cgroup_online to create triggers on every new cgroup")
            wait_until(lambda: slab_bytes(owner) - before >= total * 128, 30,
                       "the work item's triggers to be charged to the attaching task's cgroup")
            return slab_bytes(owner) - before

    try:
        assert in_child(attach_then_leave) >= total * 128
        assert obj.bss["online_refusal"] == 0
        assert obj.bss["online_created"] == total
    finally:
        obj.close()


def test_an_ops_outliving_its_owners_cgroup_lets_that_cgroup_be_freed(cgroups, bpffs_dir):
    """The ops keeps its owner as an obj_cgroup, reparented when the owner's cgroup is
    removed: the cgroup is freed, not left dying for as long as the ops lives."""
    parent = cgroups("psi-owners")
    owner = cgroups("psi-owners/owner")
    obj = open_psi_probe(Trigger(0, PSI_MEM, 500_000, 1_000_000))  # charged to `owner`
    pin = bpffs_dir / "psi_probe"

    def attach_and_pin() -> int:
        """Attach from inside `owner` and pin; the child's exit frees what it charged there."""
        (owner.path / "cgroup.procs").write_text("0")
        link = obj.struct_ops["psi_probe"].attach()
        link.pin(pin)
        return link.id

    try:
        link_id = in_child(attach_and_pin)
        assert obj.bss["create_rets"][0] == 0 and link_id in link_ids()
        drop_page_cache(owner)
        owner.remove()
        wait_until(lambda: freed_after_dropping_caches(parent), 30,
                   "the removed owner cgroup to be freed while its ops is still attached")
        assert link_id in link_ids()
    finally:
        obj.close()


def drop_page_cache(cg: bpfoom.Cgroup) -> None:
    """Reclaim `cg`'s page cache, which would pin its memcg after removal whatever the ops does."""
    deadline = time.monotonic() + 30
    while memory_stat(cg)["file"] and time.monotonic() < deadline:
        try:
            cg.write("memory.reclaim", "64M")
        except OSError as err:  # EAGAIN: less than asked was reclaimable
            if err.errno != errno.EAGAIN:
                raise
    assert memory_stat(cg)["file"] == 0, f"{cg.path} kept page cache that reclaim could not drop"


def dying_descendants(cg: bpfoom.Cgroup) -> int:
    """Removed cgroups under `cg` the kernel has not freed yet (cgroup.stat)."""
    return cgroup_stat(cg)["nr_dying_descendants"]


def freed_after_dropping_caches(cg: bpfoom.Cgroup) -> bool:
    """Drop every clean page cache page, then whether `cg` has no dying descendant left.

    memory.stat is flushed lazily (only past a per-CPU batch of updates), so a few pages
    of page cache can read as zero and still pin a removed memcg; a removed cgroup's own
    memory.reclaim is gone. Dropping caches system-wide frees those pages; what the ops
    holds (a css reference would) is not page cache and keeps the cgroup dying.
    """
    Path("/proc/sys/vm/drop_caches").write_text("1")
    return dying_descendants(cg) == 0

def own_cgroup() -> Path:
    """This process's cgroup2 directory."""
    relative = Path("/proc/self/cgroup").read_text().splitlines()[0].split("::", 1)[1]
    return CGROUP_ROOT / relative.lstrip("/")


def kernel_symbol(name: str) -> int:
    for line in Path("/proc/kallsyms").read_text().splitlines():
        address, _, symbol = line.split()[:3]
        if symbol == name:
            return int(address, 16)
    raise LookupError(f"{name} is not in /proc/kallsyms")


def test_cgroups_come_and_go_without_psi_work_while_no_ops_is_registered(cgroups):
    """The cgroup notifier queues nothing (and allocates nothing) until an ops is registered."""
    parent = cgroups("psi-churn")
    parent.write("cgroup.subtree_control", "+memory")

    def churn(count: int) -> None:
        for n in range(count):
            bpfoom.Cgroup.create(parent.path / f"c{n}").remove()

    counter = bpfoom.BpfObject.open(BPF_DIR / "psi_cgroup_work.bpf.o")
    try:
        counter.rodata["work_func"] = kernel_symbol("bpf_psi_cgroup_workfn")
        counter.rodata["target_tgid"] = os.getpid()
        counter.load()
        with counter.programs["count_queue"].attach():
            churn(20)
            assert counter.bss["queued"] == 0
            obj = open_psi_probe()
            try:
                with obj.struct_ops["psi_probe"].attach():
                    churn(20)
            finally:
                obj.close()
            # One queueing per mkdir and per rmdir while the ops was there.
            assert counter.bss["queued"] == 40
            churn(20)
            assert counter.bss["queued"] == 40
    finally:
        counter.close()


@pytest.mark.parametrize("source, kfunc", [
    ("psi_trigger_from_oom.bpf.o", "bpf_psi_create_trigger"),
    ("psi_declare_from_oom.bpf.o", "bpf_out_of_memory"),
])
def test_other_struct_ops_cannot_call_psi_kfuncs(source, kfunc):
    obj = bpfoom.BpfObject.open(BPF_DIR / source)
    try:
        with pytest.raises(bpfoom.VerifierError) as caught:
            obj.load()
    finally:
        obj.close()
    assert f"calling kernel function {kfunc} is not allowed" in (caught.value.log or "")


def test_cgroup_link_is_refused(cgroups):
    cg = cgroups("psi-link")
    obj = open_psi_probe()
    try:
        with pytest.raises(bpfoom.NotSupportedError):
            obj.struct_ops["psi_probe"].attach(cgroup=cg)
        assert obj.bss["inits"] == 0
    finally:
        obj.close()


def test_cgroup_online_and_offline(cgroups):
    parent = cgroups("psi-lifecycle")
    parent.write("cgroup.subtree_control", "+memory")
    doomed = bpfoom.Cgroup.create(parent.path / "doomed")
    doomed_id = doomed.id
    baseline = psimon_threads()
    obj = open_psi_probe(Trigger(doomed_id, PSI_MEM))
    try:
        with obj.struct_ops["psi_probe"].attach():
            assert psimon_threads() == baseline + 1
            fresh = bpfoom.Cgroup.create(parent.path / "fresh")
            try:
                wait_until(lambda: fresh.id in psi_records(obj, "online"), 30,
                           "handle_cgroup_online for the new cgroup")
            finally:
                fresh.remove()
                fresh.close()
            doomed.remove()
            wait_until(lambda: doomed_id in psi_records(obj, "offline"), 30,
                       "handle_cgroup_offline for the deleted cgroup")
            # Its trigger went with it: the group's RT polling thread is gone.
            wait_until(lambda: psimon_threads() == baseline, 10, "the trigger to be destroyed")
            assert doomed_id not in psi_records(obj, "online")
    finally:
        doomed.close()
        obj.close()


def test_detach_while_triggers_fire(pressured):
    baseline = psimon_threads()
    obj = open_psi_probe(Trigger(pressured.id, PSI_MEM, 5_000, 100_000),
                         Trigger(0, PSI_MEM, 5_000, 100_000))
    obj.bss["event_spin_loops"] = 1 << 20  # handlers still running when unregistration starts
    try:
        ops = obj.struct_ops["psi_probe"]
        for _ in range(5):
            with ops.attach():
                seen = obj.bss["events"]
                wait_until(lambda: obj.bss["events"] > seen + 2, EVENT_TIMEOUT_S,
                           "events to fire")
        wait_until(lambda: psimon_threads() == baseline, 10, "the triggers to be destroyed")
        stopped = obj.bss["events"]
        time.sleep(1.0)
        assert obj.bss["events"] == stopped, "events after detach"
    finally:
        obj.close()


def test_attach_detach_cycles_leave_nothing(cgroups):
    watched = cgroups("psi-cycles")
    baseline = psimon_threads()
    links_before = link_ids()
    maps_before = struct_ops_map_ids()
    obj = open_psi_probe(Trigger(watched.id, PSI_MEM), Trigger(0, PSI_CPU))
    try:
        ops = obj.struct_ops["psi_probe"]
        for _ in range(100):
            ops.attach().close()
        assert obj.bss["inits"] == 100
        assert list(obj.bss["create_rets"][:2]) == [0, 0]
        assert psimon_threads() == baseline
        assert link_ids() == links_before
    finally:
        obj.close()
    wait_until(lambda: struct_ops_map_ids() <= maps_before, 30, "the struct_ops map to be freed")


def test_features_report_psi_support():
    feats = bpfoom.features()
    for name in ("bpf_psi_ops", "kfunc:bpf_psi_create_trigger", "kfunc:bpf_out_of_memory"):
        assert feats[name].supported is True, feats[name].detail
