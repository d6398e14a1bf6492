"""Sleepable OOM handlers touching user memory (issue 16).

A bpf_oom_ops handler may read the memory of the task whose charge failed
(bpf_copy_from_user: it runs in that task) and of another task
(bpf_copy_from_user_task), faulting pages in if need be, while the
allocating context is in the middle of its page fault.  It must get the
bytes, kill, and leave no deadlock or lock report (the lockdep lane runs
this file).  oom_reader.bpf.c reads a marker the victim wrote and printed
the address of, then kills the victim.
"""
from __future__ import annotations

import subprocess
import sys

import pytest

import bpfoom
from bpfoom.testing import DEATH_TIMEOUT_S
from kerneltest import proc_state
from oomtest import BPF_DIR

MARKER = b"bpfoom-marker-16"  # 16 bytes: oom_reader.bpf.c's READ_LEN

# Joins the cgroup, becomes killable (the test runner is -1000, inherited), writes the
# marker, says where it is, then allocates until killed.
_VICTIM = r"""
import ctypes, os, sys
with open(sys.argv[1], "w") as procs:
    procs.write(str(os.getpid()))
with open("/proc/self/oom_score_adj", "w") as adj:
    adj.write("0")
marker = ctypes.create_string_buffer(sys.argv[2].encode(), 16)
print(ctypes.addressof(marker), flush=True)
sys.stdin.readline()
held = []
while True:
    held.append(b"x" * (1 << 20))
"""


def test_a_handler_reads_the_allocating_tasks_memory_and_another_tasks_then_kills(cgroups):
    cg = cgroups("reader", memory_max="32M")
    victim = subprocess.Popen([sys.executable, "-S", "-c", _VICTIM, str(cg.path / "cgroup.procs"),
                               MARKER.decode()],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    obj = bpfoom.BpfObject.open(BPF_DIR / "oom_reader.bpf.o")
    try:
        address = int(victim.stdout.readline())
        obj.load()
        obj.bss["target_pid"] = victim.pid
        obj.bss["target_addr"] = address
        obj.bss["own_addr"] = address
        with obj.struct_ops["reader_policy"].attach(cgroup=cg):
            victim.stdin.write("go\n")
            victim.stdin.flush()
            try:
                status = victim.wait(timeout=DEATH_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pytest.fail(f"the victim is still alive after {DEATH_TIMEOUT_S:.0f} s: "
                            f"{obj.bss['calls']} handler calls, reads "
                            f"{obj.data['own_ret']}/{obj.data['task_ret']}, "
                            f"kill {obj.data['kill_ret']}, state {proc_state(victim.pid)}, "
                            f"memory.current {cg.read('memory.current').strip()}")
        assert status == -9, f"the victim exited with {status}"
        assert obj.bss["calls"] >= 1
        assert obj.data["kill_ret"] == 0
        assert (obj.data["own_ret"], obj.bss["own_bytes"]) == (0, MARKER.decode())
        assert (obj.data["task_ret"], obj.bss["task_bytes"]) == (0, MARKER.decode())
    finally:
        obj.close()
        if victim.poll() is None:
            victim.kill()
            victim.wait()
        victim.stdin.close()
        victim.stdout.close()
