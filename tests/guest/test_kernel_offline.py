"""handle_cgroup_offline() does not run under cgroup_mutex (issue 16).

The guard policy's offline callback spins until the test releases it (or 5 s
pass).  While it spins, the test creates another cgroup: mkdir takes
cgroup_mutex, so it can only finish while the callback still runs if the
callback does not hold that mutex.  The order is observed, not timed: the
callback is released only after mkdir returned, and it records whether it
had finished by then.
"""
from __future__ import annotations

import threading

from kerneltest import open_guard
from oomtest import wait_until


def test_the_offline_callback_runs_outside_cgroup_mutex(cgroups):
    parent = cgroups("offline")
    doomed = cgroups("offline/doomed")
    guard = open_guard(spin_ns=5_000_000_000)
    try:
        with guard.struct_ops["guard_policy"].attach(cgroup=doomed):
            doomed.path.rmdir()
            wait_until(lambda: guard.bss["offline_started"] == 1, timeout=60,
                       what="the offline callback to start")
            other = parent.path / "other"
            made = threading.Event()
            maker = threading.Thread(target=lambda: (other.mkdir(), made.set()))
            maker.start()
            made.wait(timeout=60)
            finished_before_mkdir = guard.bss["offline_finished"]
            guard.bss["release"] = 1
            maker.join(timeout=60)
            assert made.is_set(), "mkdir did not finish"
            assert finished_before_mkdir == 0, \
                "mkdir had to wait for the offline callback: it ran under cgroup_mutex"
            assert guard.bss["offline_id"] == doomed.id
            wait_until(lambda: guard.bss["offline_finished"] == 1, what="the callback to end")
            other.rmdir()
    finally:
        guard.close()
