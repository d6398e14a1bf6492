"""`bpfoom status`: the handler chain it prints is the one the kernel walks at a real OOM.

parent (largest_leaf) / child (observe, memory.max 48M): observe declines, so
the kernel goes on to the parent's policy, which kills; `status child`
must list observe, then largest_leaf, then a system-wide policy, then the
kernel's killer.
"""
from __future__ import annotations

import json
import subprocess
import sys

from oomtest import policy_lines, sigkilled
from policytest import first_kill, holders, overrun
from policytest import load_policy  # noqa: F401 (a fixture)


def status(*args: str) -> dict:
    done = subprocess.run([sys.executable, "-P", "-m", "bpfoom", "status", *args, "--json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_status_predicts_the_chain_the_kernel_walks(load_policy, cgroups, hogs, kernel_log):
    parent = cgroups("parent")
    child = cgroups("parent/child", memory_max="48M")
    work, alloc = cgroups("parent/child/work"), cgroups("parent/child/alloc")
    on_parent, on_child, system = (load_policy(n) for n in ("largest_leaf", "observe", "largest_task"))
    links = [on_child.attach(cgroup=child), on_parent.attach(cgroup=parent), system.attach()]

    shown = status(str(work.path))
    chain = [(step["handler"], step["policy"], step["cgroup"]) for step in shown["chain"]]
    assert chain == [("policy", "observe", str(child.path)), ("policy", "largest_leaf", str(parent.path)),
                     ("policy", "largest_task", None), ("kernel", "default", None)]
    assert [step["link_id"] for step in shown["chain"][:3]] == [link.id for link in links]
    by_link = {a["link_id"]: a for a in shown["attachments"]}
    assert by_link[links[0].id]["cgroup_id"] == child.id
    assert [s["policy"] for s in status()["chain"]] == ["largest_task", "default"]  # a system-wide OOM

    holder = holders(hogs, {"holder": work}, {"holder": 24})["holder"]
    overrun(hogs, alloc, 32)
    # observe (first) declined; the second in status's chain killed
    assert first_kill(kernel_log) == (holder.pid, "bpfoom largest_leaf")
    assert sigkilled(holder.wait_dead())
    assert policy_lines(kernel_log)[0] == "oom_policy=largest_leaf"
    dry_run = next(e for e in on_child.events(timeout=5))
    assert dry_run.action == "dry_run"
