"""`dry_run = true` on any shipped policy: at a real OOM it reports whom it would kill (action
dry_run, the pids) and kills nobody; the kernel's own killer decides (its kill in the log)."""
from __future__ import annotations

import pytest

from oomtest import sigkilled
from policytest import KERNEL_REASON, collect, first_kill, holders, overrun
from policytest import load_policy  # noqa: F401 (a fixture)


@pytest.mark.parametrize("policy_name", ["largest_leaf", "largest_task"])
def test_a_dry_run_reports_and_leaves_the_kill_to_the_kernel(policy_name, load_policy, cgroups,
                                                             hogs, kernel_log):
    policy = load_policy(policy_name, dry_run=True)
    top = cgroups("dry", memory_max="48M")
    leaves = {name: cgroups(f"dry/{name}") for name in ("big", "small", "alloc")}
    policy.attach(cgroup=top)
    started = holders(hogs, leaves, {"big": 20, "small": 8})
    overrun(hogs, leaves["alloc"], 28)
    pid, reason = first_kill(kernel_log)
    assert reason == KERNEL_REASON  # not "bpfoom ...": the policy killed nobody
    events = collect(policy, lambda seen: any(e.action == "dry_run" for e in seen))
    [dry] = [e for e in events if e.action == "dry_run"][:1]
    assert started["big"].pid in dry.pids
    if pid == started["big"].pid:
        assert sigkilled(started["big"].wait_dead())
