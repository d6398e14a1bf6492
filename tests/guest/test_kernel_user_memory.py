"""What a sleepable OOM handler may do with user memory (issue 16; issue 22, defect 3).

The charge that failed may come from a page fault that holds the mmap_lock
of the allocating task's mm, so handlers run with page faults disabled:

- allowed: reading the allocating task's resident memory (bpf_copy_from_user;
  the handler runs in that task), then killing;
- refused at run time: reading a page the task never touched fails with
  -EFAULT instead of faulting it in (before the fix it was faulted in: 0);
- refused at load: reading another task's memory (bpf_copy_from_user_task
  and the kfuncs like it go through access_process_vm(), which takes the
  target mm's mmap_lock and faults pages in whatever pagefault_disable()
  says; the target may be the faulting task itself).

No deadlock, no lock report (the lockdep lane runs this file).
oom_reader.bpf.c reads a marker the victim wrote and the untouched page it
mapped, both at addresses the victim printed, then kills the victim.
"""
from __future__ import annotations

import errno
import subprocess
import sys

import pytest

import bpfoom
from bpfoom.testing import DEATH_TIMEOUT_S
from kerneltest import proc_state
from oomtest import BPF_DIR

MARKER = b"bpfoom-marker-16"  # 16 bytes: oom_reader.bpf.c's READ_LEN

# Joins the cgroup, becomes killable (the test runner is -1000, inherited), writes the
# marker, maps a page it never touches, says where both are, then allocates until killed.
_VICTIM = r"""
import ctypes, mmap, os, sys
with open(sys.argv[1], "w") as procs:
    procs.write(str(os.getpid()))
with open("/proc/self/oom_score_adj", "w") as adj:
    adj.write("0")
marker = ctypes.create_string_buffer(sys.argv[2].encode(), 16)
far = mmap.mmap(-1, mmap.PAGESIZE)
far_view = (ctypes.c_char * mmap.PAGESIZE).from_buffer(far)
print(ctypes.addressof(marker), ctypes.addressof(far_view), flush=True)
sys.stdin.readline()
held = []
while True:
    held.append(b"x" * (1 << 20))
"""


def test_a_handler_reads_resident_memory_of_the_allocating_task_but_faults_nothing_in(cgroups):
    cg = cgroups("reader", memory_max="32M")
    victim = subprocess.Popen([sys.executable, "-S", "-c", _VICTIM, str(cg.path / "cgroup.procs"),
                               MARKER.decode()],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    obj = bpfoom.BpfObject.open(BPF_DIR / "oom_reader.bpf.o")
    try:
        own, far = (int(word) for word in victim.stdout.readline().split())
        obj.load()
        obj.bss["target_pid"] = victim.pid
        obj.bss["own_addr"] = own
        obj.bss["far_addr"] = far
        with obj.struct_ops["reader_policy"].attach(cgroup=cg):
            victim.stdin.write("go\n")
            victim.stdin.flush()
            try:
                status = victim.wait(timeout=DEATH_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pytest.fail(f"the victim is still alive after {DEATH_TIMEOUT_S:.0f} s: "
                            f"{obj.bss['calls']} handler calls, reads "
                            f"{obj.data['own_ret']}/{obj.data['far_ret']}, "
                            f"kill {obj.data['kill_ret']}, state {proc_state(victim.pid)}, "
                            f"memory.current {cg.read('memory.current').strip()}")
        assert status == -9, f"the victim exited with {status}"
        assert obj.bss["calls"] >= 1
        assert obj.data["kill_ret"] == 0
        assert (obj.data["own_ret"], obj.bss["own_bytes"]) == (0, MARKER.decode())
        assert obj.data["far_ret"] == -errno.EFAULT, \
            f"reading an untouched page answered {obj.data['far_ret']}: it was faulted in"
    finally:
        obj.close()
        if victim.poll() is None:
            victim.kill()
            victim.wait()
        victim.stdin.close()
        victim.stdout.close()


def test_reading_another_tasks_memory_is_refused_at_load():
    obj = bpfoom.BpfObject.open(BPF_DIR / "oom_reader_task.bpf.o")
    try:
        with pytest.raises(bpfoom.VerifierError) as caught:
            obj.load()
    finally:
        obj.close()
    assert "bpf_copy_from_user_task" in (caught.value.log or ""), caught.value.log
