"""OOM victims that never exit: tasks stuck in a FUSE request nobody answers.

The livelock bound of the BPF OOM code counts policy kills whose victims do
not finish exiting, so a test needs victims that cannot exit.  FUSE makes
them: once the daemon has read a request, fuse's request_wait_answer() can no
longer withdraw it, and a task SIGKILLed while it waits goes on waiting in
TASK_UNINTERRUPTIBLE until the answer comes or the connection is aborted.
The "daemon" here is the test itself: it answers FUSE_INIT, reads each
stuck task's request and never answers it.  The OOM reaper still frees the
victims' memory (they hold no mmap_lock), so every kill ends its OOM.
"""
from __future__ import annotations

import ctypes
import os
import select
import struct
import subprocess
import sys
from pathlib import Path

import bpfoom

# include/uapi/linux/fuse.h (UAPI, stable)
FUSE_INIT = 26
FUSE_KERNEL_VERSION, FUSE_KERNEL_MINOR_VERSION = 7, 31
FUSE_PARALLEL_DIROPS = 1 << 18  # lookups in one directory need not wait for each other
_IN_HEADER = struct.Struct("<IIQQIIIHH")  # len, opcode, unique, nodeid, uid, gid, pid, ...
_OUT_HEADER = struct.Struct("<IiQ")  # len, error, unique
_INIT_IN = struct.Struct("<IIII")  # major, minor, max_readahead, flags
# major, minor, max_readahead, flags, max_background, congestion_threshold, max_write,
# time_gran, max_pages, map_alignment, flags2, max_stack_depth, unused[6]
_INIT_OUT = struct.Struct("<IIIIHHIIHHII24x")
_READ_SIZE = 1 << 17  # at least FUSE_MIN_READ_BUFFER and max_write plus headers
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)

# Forks `count` children into the cgroup; each allocates and touches `mib` MiB,
# then looks up a name of its own under the FUSE mount (and waits there). The
# spawner prints their pids, then on EOF reaps them and exits.
_SPAWNER = r"""
import mmap, os, sys
procs, mib, mountpoint, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
pids = []
for _ in range(count):
    pid = os.fork()
    if pid == 0:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("0")
        with open(procs, "w") as f:
            f.write(str(os.getpid()))
        memory = mmap.mmap(-1, mib << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        for offset in range(0, len(memory), 4096):
            memory[offset] = 1
        try:
            os.stat(os.path.join(mountpoint, str(os.getpid())))
        except OSError:
            pass
        os._exit(0)
    pids.append(pid)
print(*pids, flush=True)
sys.stdin.read()
for pid in pids:
    os.waitpid(pid, 0)
"""


class UnansweredFuse:
    """A FUSE mount whose daemon answers FUSE_INIT and nothing else; close() aborts it."""

    def __init__(self, mountpoint: Path, timeout: float = 60.0) -> None:
        self.mountpoint = mountpoint
        self.timeout = timeout
        self.fd = os.open("/dev/fuse", os.O_RDWR)
        options = f"fd={self.fd},rootmode=40000,user_id=0,group_id=0".encode()
        if _libc.mount(b"bpfoom-stuck", str(mountpoint).encode(), b"fuse", 0, options) != 0:
            err = ctypes.get_errno()
            os.close(self.fd)
            raise OSError(err, f"mounting FUSE on {mountpoint}: {os.strerror(err)}")
        self.mounted = True
        try:
            opcode, unique, _, body = self.read_request()
            if opcode != FUSE_INIT:
                raise AssertionError(f"the first FUSE request was opcode {opcode}, not FUSE_INIT")
            _, _, max_readahead, flags = _INIT_IN.unpack_from(body)
            init = _INIT_OUT.pack(FUSE_KERNEL_VERSION, FUSE_KERNEL_MINOR_VERSION, max_readahead,
                                  flags & FUSE_PARALLEL_DIROPS, 0, 0, 4096, 1, 0, 0, 0, 0)
            os.write(self.fd, _OUT_HEADER.pack(_OUT_HEADER.size + len(init), 0, unique) + init)
        except BaseException:
            self.close()
            raise

    def read_request(self) -> tuple[int, int, int, bytes]:
        """(opcode, unique, caller's pid, body) of the next request; fails after the timeout."""
        ready, _, _ = select.select([self.fd], [], [], self.timeout)
        if not ready:
            raise AssertionError(f"no FUSE request within {self.timeout:.0f} s")
        data = os.read(self.fd, _READ_SIZE)
        _, opcode, unique, _, _, _, pid, _, _ = _IN_HEADER.unpack_from(data)
        return opcode, unique, pid, data[_IN_HEADER.size:]

    def hold_requests_of(self, pids: set[int]) -> None:
        """Read (and never answer) requests until each of `pids` has one read."""
        waiting = set(pids)
        while waiting:
            waiting.discard(self.read_request()[2])

    def close(self) -> None:
        """Abort the connection (the last /dev/fuse fd closed): waiting requests fail."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.mounted:
            _libc.umount2(str(self.mountpoint).encode(), MNT_DETACH)
            self.mounted = False


class StuckTasks:
    """`count` tasks in `cg`, each holding `mib` MiB, waiting on `fuse` for good."""

    def __init__(self, cg: bpfoom.Cgroup, fuse: UnansweredFuse, count: int, mib: int) -> None:
        self.proc = subprocess.Popen([sys.executable, "-S", "-c", _SPAWNER,
                                      str(cg.path / "cgroup.procs"), str(mib),
                                      str(fuse.mountpoint), str(count)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.pids = [int(pid) for pid in self.proc.stdout.readline().split()]
        fuse.hold_requests_of(set(self.pids))

    def close(self) -> None:
        """Reap the tasks: call after the FUSE connection was aborted."""
        self.proc.stdin.close()
        self.proc.wait(timeout=120)
        self.proc.stdout.close()


def sigkill_pending(pid: int) -> bool:
    """SIGKILL is pending on `pid` (a stuck victim that was killed but cannot act on it)."""
    pending = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("SigPnd:", "ShdPnd:")):
            pending |= int(line.split()[1], 16)
    return bool(pending & (1 << (9 - 1)))  # SIGKILL is 9
