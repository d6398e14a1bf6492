"""One OOM, one kill: while a victim of the same OOM domain is still exiting,
neither a BPF policy nor the kernel's killer kills again (issue 16, "overkill").

The scenario is spec section 6's tree with overkill_leaf.bpf.c, a policy that
behaves like the series' selftest: kill the largest leaf, and return 1 without
killing when it meets an OOM victim.  One kill (cg4's task) frees enough.
Before the fix the kernel's killer followed the policy's kill with a second
one (cg1's oom_score_adj 1000 task) while cg4's dying leader had already
left the memcg's task list and its mm was not yet freed.  That race is not
under the test's control.  A second race went the same way about one run
in 15: the kill remembered the victim's memcg only after the victim could
pass exit_mm(), which clears mm->owner, so it looked like the root's and did
not count.  Five runs here (about 30 s) catch a one-in-15 race two times in
five; test_kernel_stress.py runs it 20 times with and without the policy and
reports kills per OOM.
"""
from __future__ import annotations

import bpfoom
from kerneltest import overkill_run
from oomtest import BPF_DIR


RUNS = 5


def test_the_policy_kills_exactly_once_per_oom(cgroups, hogs):
    policy = bpfoom.BpfObject.open(BPF_DIR / "overkill_leaf.bpf.o")
    try:
        policy.load()
        results = []
        for run in range(RUNS):
            policy.bss["kills"] = 0
            result = overkill_run(cgroups, hogs, f"ours{run}", policy)
            results.append(dict(result, policy_kills=policy.bss["kills"]))
        assert all(r["killed"] == ["cg3/cg4"] and r["kills"] == 1 and r["policy_kills"] == 1
                   for r in results), results
    finally:
        policy.close()


def test_the_kernel_alone_kills_until_the_shortage_is_gone(cgroups, hogs):
    """Control: the kernel's killer takes cg1 (oom_score_adj 1000) first; 10M is not enough."""
    result = overkill_run(cgroups, hogs, "default", None)
    assert "cg1" in result["killed"], result
    assert "cg2" not in result["killed"], result
    assert result["kills"] == len(result["killed"]), result
