"""A policy's decisions lost to a full ring buffer are reported, never hidden."""
from __future__ import annotations

import json
import subprocess
import sys

import bpfoom
from oomtest import sigkilled
from policytest import load_policy  # noqa: F401 (a fixture)

OOMS = 8


def bpfoom_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-P", "-m", "bpfoom", *args], capture_output=True,
                          text=True, timeout=300)


def test_a_tiny_decision_ring_reports_its_overrun(load_policy, cgroups, hogs):
    policy = load_policy("largest_leaf", ring_size=4096)  # one page: room for 5 decisions
    top = cgroups("tiny_ring", memory_max="32M")
    leaf = cgroups("tiny_ring/leaf")
    policy.attach(cgroup=top)
    for _ in range(OOMS):  # each OOM decided and its victim dead before the next; nobody reads
        hog = hogs(leaf, 64, gated=True)
        hog.release()
        assert sigkilled(hog.wait_dead(timeout=60))
    made = policy.object.bss["decisions_made"]
    assert made >= OOMS

    received = list(policy.events(timeout=2))
    decisions = [e for e in received if isinstance(e, bpfoom.DecisionEvent)]
    overruns = [e for e in received if isinstance(e, bpfoom.OverrunEvent)]
    assert len(overruns) == 1, [str(e) for e in received]
    assert received[-1] is overruns[0]  # after what did arrive
    assert overruns[0].source == "largest_leaf"
    assert overruns[0].lost == overruns[0].total_lost == policy.events_dropped
    assert len(decisions) + overruns[0].lost == made
    assert overruns[0].to_json()["kind"] == "overrun"


def test_bpfoom_events_reports_what_a_pinned_ring_lost(cgroups, hogs, bpffs_dir):
    """`bpfoom attach` pins the drop counter with the ring: `bpfoom events` reports losses too."""
    top = cgroups("tiny_pinned_ring", memory_max="32M")
    leaf = cgroups("tiny_pinned_ring/leaf")
    pin = bpffs_dir / "tiny"
    done = bpfoom_cli("attach", "largest_leaf", "--cgroup", str(top.path), "--ring-size", "4096",
                      "--pin", str(pin))
    assert done.returncode == 0, done.stderr
    try:
        for _ in range(OOMS):  # nobody reads while they happen
            hog = hogs(leaf, 64, gated=True)
            hog.release()
            assert sigkilled(hog.wait_dead(timeout=60))
        shown = bpfoom_cli("events", "--json", "--pin-dir", str(bpffs_dir))
        assert shown.returncode == 0, shown.stderr
        received = [json.loads(line) for line in shown.stdout.splitlines()]
    finally:
        gone = bpfoom_cli("detach", "--pin", str(pin))
    assert gone.returncode == 0, gone.stderr
    decisions = [e for e in received if e["kind"] == "decision"]
    overruns = [e for e in received if e["kind"] == "overrun"]
    assert len(overruns) == 1 and received[-1] == overruns[0], received
    assert overruns[0]["source"] == "tiny" and overruns[0]["lost"] == overruns[0]["total_lost"]
    assert len(decisions) + overruns[0]["lost"] >= OOMS  # one decision per OOM at least
    assert all(d["policy"] == "largest_leaf" and d["victim_cgroup_id"] == leaf.id
               for d in decisions)
