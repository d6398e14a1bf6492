"""Where policies live: bpfoom.attached(), cgroup deletion, and pins that outlive
the process that attached them."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import bpfoom
from oomtest import link_ids, sigkilled, wait_until
from policytest import collect, first_kill, holders, overrun
from policytest import load_policy  # noqa: F401 (a fixture)

BPFFS = Path("/sys/fs/bpf")


def run_python(code: str, *args: str) -> str:
    """Run `code` in a fresh interpreter (another process); its stdout."""
    done = subprocess.run([sys.executable, "-P", "-c", code, *args], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_attached_reports_name_cgroup_and_link(load_policy, cgroups):
    policy = load_policy("largest_task")
    cg = cgroups("listed")
    link = policy.attach(cgroup=cg)
    found = [item for item in bpfoom.attached() if item.link_id == link.id]
    assert len(found) == 1
    item = found[0]
    assert (item.policy_name, item.kind, item.cgroup_path, item.cgroup_id, item.pin_path) == (
        "largest_task", "oom", str(cg.path), cg.id, None)
    assert item.map_id == link.info().map_id


def test_deleting_the_cgroup_detaches_the_policy_and_reports_it(load_policy, cgroups):
    policy = load_policy("largest_leaf")
    cg = cgroups("doomed")
    link = policy.attach(cgroup=cg)
    doomed_id = cg.id
    cg.close()
    cg.path.rmdir()

    offline, = collect(policy, lambda seen: any(e.action == "cgroup_offline" for e in seen))
    assert (offline.scope_cgroup_id, offline.victim_cgroup_id) == (doomed_id, doomed_id)
    wait_until(lambda: not link.info().map_id, what="the link to report detached")
    assert link.id not in link_ids()
    assert all(item.link_id != link.id for item in bpfoom.attached())


PIN_AND_EXIT = r"""
import sys, bpfoom
policy = bpfoom.OomPolicy.load("largest_leaf")
link = policy.attach(cgroup=sys.argv[1], pin=sys.argv[2])
print(link.id)
"""

DETACH_BY_PIN = r"""
import sys, bpfoom
link = bpfoom.Link.from_pinned(sys.argv[1])
link.detach()
link.unpin()
link.close()
"""


def test_a_pinned_policy_outlives_its_process_and_is_detached_through_its_pin(
        cgroups, hogs, kernel_log):
    top = cgroups("pinned", memory_max="40M")
    work, alloc = cgroups("pinned/work"), cgroups("pinned/alloc")
    pin = BPFFS / f"bpfoom-test-{os.getpid()}"
    link_id = int(run_python(PIN_AND_EXIT, str(top.path), str(pin)))
    try:
        item, = [item for item in bpfoom.attached() if item.link_id == link_id]
        assert (item.policy_name, item.cgroup_id, item.pin_path) == ("largest_leaf", top.id,
                                                                      str(pin))
        holder = holders(hogs, {"holder": work}, {"holder": 16})["holder"]
        overrun(hogs, alloc, 30)  # 46 MiB wanted in 40
        assert first_kill(kernel_log) == (holder.pid, "bpfoom largest_leaf")
        assert sigkilled(holder.wait_dead())
    finally:
        if pin.exists():
            run_python(DETACH_BY_PIN, str(pin))
    assert not pin.exists()
    assert link_id not in link_ids()
    assert all(item.link_id != link_id for item in bpfoom.attached())
