"""A policy's decisions lost to a full ring buffer are reported, never hidden."""
from __future__ import annotations

import bpfoom
from oomtest import sigkilled
from policytest import load_policy  # noqa: F401 (a fixture)

OOMS = 8


def test_a_tiny_decision_ring_reports_its_overrun(load_policy, cgroups, hogs):
    policy = load_policy("largest_leaf", ring_size=4096)  # one page: room for 5 decisions
    top = cgroups("tiny_ring", memory_max="32M")
    leaf = cgroups("tiny_ring/leaf")
    policy.attach(cgroup=top)
    for _ in range(OOMS):  # each OOM decided and its victim dead before the next; nobody reads
        hog = hogs(leaf, 64, gated=True)
        hog.go()
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
