"""A system-wide policy kills in a mempolicy OOM without locking up (issue 22, defect 1).

bpf_oom_kill_process() checked a system-wide OOM's cpuset/mempolicy domain
(oom_cpuset_eligible()) under find_lock_task_mm()'s task_lock, and
mempolicy_in_oom_domain() takes task_lock on every thread, the locked one
included: an OOM of an MPOL_BIND allocation (CONSTRAINT_MEMORY_POLICY) whose
system-wide policy called the kill kfunc locked up holding oom_lock.

Needs two NUMA nodes, which the normal VM does not have; run it with
    python -m bpfoom.testing.vm --numa 2 --memory 1G -- env BPFOOM_REQUIRE_VM_TESTS=1 \\
        .venv/bin/python -m pytest tests/guest/test_kernel_numa.py -q -p no:cacheprovider
The allocator binds itself to node 1 and allocates more than the node has
(512M with --memory 1G: filling it under TCG takes a while, hence the
longer wait).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kerneltest import MODE_KILL, guard_attempts, open_guard
from oomtest import await_oom_report_window, killed_pids

# Filling a node under TCG on a busy host took over a minute.
FILL_TIMEOUT_S = 300
NODES = sorted(Path("/sys/devices/system/node").glob("node[0-9]*"))

pytestmark = pytest.mark.skipif(
    len(NODES) < 2, reason="needs two NUMA nodes (boot the VM with --numa 2)")

# Joins the cgroup, becomes killable, binds its memory to node 1 (set_mempolicy
# MPOL_BIND), says so, then allocates until killed.
_BOUND_ALLOCATOR = r"""
import ctypes, os, sys
with open(sys.argv[1], "w") as procs:
    procs.write(str(os.getpid()))
with open("/proc/self/oom_score_adj", "w") as adj:
    adj.write("1000")
libc = ctypes.CDLL(None, use_errno=True)
mask = ctypes.c_ulong(1 << 1)
if libc.syscall(238, 2, ctypes.byref(mask), 64) != 0:  # set_mempolicy(MPOL_BIND, node 1)
    sys.exit(f"set_mempolicy: {os.strerror(ctypes.get_errno())}")
print("bound", flush=True)
held = []
while True:
    held.append(b"x" * (16 << 20))
"""


def test_a_system_wide_policy_kills_in_a_mempolicy_oom(cgroups, kernel_log):
    await_oom_report_window()  # the constraint line read below is rate-limited
    cg = cgroups("numa")
    guard = open_guard(mode=MODE_KILL)
    allocator = subprocess.Popen([sys.executable, "-S", "-c", _BOUND_ALLOCATOR,
                                  str(cg.path / "cgroup.procs")],
                                 stdout=subprocess.PIPE, text=True)
    try:
        assert allocator.stdout.readline().strip() == "bound"
        guard.bss["target_pid"] = allocator.pid
        with guard.struct_ops["guard_policy"].attach():  # system-wide
            status = allocator.wait(timeout=FILL_TIMEOUT_S)
        assert status == -9, f"the allocator exited with {status}"
        assert guard_attempts(guard)[0] == (0, True)
        assert killed_pids(kernel_log)[0] == (allocator.pid, "bpfoom guard")
        assert any(line.startswith("oom-kill:constraint=CONSTRAINT_MEMORY_POLICY,")
                   for line in kernel_log.lines()), "not a mempolicy OOM"
    finally:
        if allocator.poll() is None:
            allocator.kill()
            allocator.wait()
        allocator.stdout.close()
        guard.close()
