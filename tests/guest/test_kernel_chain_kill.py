"""One OOM, one victim through the handler chain (issue 22, defect 4).

A policy that kills and returns 0 lets the walk go on to its ancestors'
policies and the system-wide one.  They are still asked, but once a policy
killed for this OOM (oom_control), bpf_oom_kill_process() refuses them with
-EALREADY: before the fix the ancestor's policy killed a second task for the
same shortage.  Both policies are the guard (guard_policy.bpf.c), which
records what the kfunc answered.
"""
from __future__ import annotations

import errno

from bpfoom.testing import memory_events
from kerneltest import MODE_KILL, MODE_KILL_PASS, guard_attempts, open_guard
from oomtest import killed_pids, sigkilled


def test_an_ancestor_policy_cannot_kill_again_for_the_same_oom(cgroups, hogs, kernel_log):
    top = cgroups("chain")
    leaf = cgroups("chain/leaf", memory_max="48M")
    first, second = hogs(leaf, 20), hogs(leaf, 8)
    assert first.wait_for("allocated") and second.wait_for("allocated")
    # The leaf's policy kills `first` and lets the walk go on; top's tries `second`.
    inner = open_guard(mode=MODE_KILL_PASS, target_pid=first.pid)
    outer = open_guard(mode=MODE_KILL, target_pid=second.pid)
    try:
        with inner.struct_ops["guard_policy"].attach(cgroup=leaf), \
                outer.struct_ops["guard_policy"].attach(cgroup=top):
            allocator = hogs(leaf, 24)  # over the limit until `first` is gone, not after
            assert sigkilled(first.wait_dead()), "the leaf's policy did not kill"
            assert allocator.wait_for("allocated", 120), "the allocator never got its memory"
        assert guard_attempts(inner)[0] == (0, True)
        assert guard_attempts(outer)[0] == (-errno.EALREADY, True), \
            f"the ancestor's kill was answered {guard_attempts(outer)[0]}, want -EALREADY"
        assert outer.bss["kills"] == 0
        assert second.alive and allocator.alive
        assert killed_pids(kernel_log) == [(first.pid, "bpfoom guard")]
        assert memory_events(leaf)["oom_kill"] == 1
    finally:
        inner.close()
        outer.close()
