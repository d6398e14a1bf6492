"""Helpers for the kernel-guarantee tests (test_kernel_*.py, issue 16).

The guard policy (guard_policy.bpf.c), processes in odd states (zombies,
vfork children), running a function in a child with fewer capabilities, a
raw BPF_LINK_CREATE for struct_ops types bpfoom itself would refuse, and the
overkill scenario (one OOM, how many kills).
"""
from __future__ import annotations

import ctypes
import os
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import bpfoom
from bpfoom.testing import MemoryHog, memory_events, remove_cgroup_tree
from oomtest import BPF_DIR, wait_until

# guard_policy.bpf.c's modes
MODE_DECLINE, MODE_KILL, MODE_KILL_CLAIM, MODE_CLAIM, MODE_KILL_TWICE, MODE_KILL_PASS = range(6)
GUARD_RECORDS = 32

# include/uapi/linux/capability.h
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER = 1, 2, 3
CAP_SYS_ADMIN, CAP_BPF, CAP_PERFMON = 21, 39, 38
_CAPABILITY_VERSION_3 = 0x20080522
_SYS_CAPSET = 126  # x86_64
_SYS_BPF = 321  # x86_64
# include/uapi/linux/bpf.h (UAPI, stable)
BPF_LINK_CREATE = 28
BPF_STRUCT_OPS = 44


def open_guard(**bss) -> bpfoom.BpfObject:
    """guard_policy.bpf.o, loaded, with its globals set from `bss`."""
    obj = bpfoom.BpfObject.open(BPF_DIR / "guard_policy.bpf.o")
    try:
        obj.load()
        for name, value in bss.items():
            obj.bss[name] = value
    except BaseException:
        obj.close()
        raise
    return obj


def guard_attempts(obj: bpfoom.BpfObject) -> list[tuple[int, bool]]:
    """(bpf_oom_kill_process's return, oc->bpf_memory_freed right after) per attempt."""
    count = min(obj.bss["attempts"], GUARD_RECORDS)
    return list(zip(obj.bss["rets"][:count], obj.bss["freed_after"][:count]))


def proc_state(pid: int) -> str:
    """The one-letter state of /proc/<pid>/stat ('' if gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[0]


def zombie_in(cg: bpfoom.Cgroup) -> subprocess.Popen:
    """A child that joins `cg`, exits and stays a zombie (unreaped) until the caller waits."""
    proc = subprocess.Popen([sys.executable, "-S", "-c",
                             "import os, sys\n"
                             "open('/proc/self/oom_score_adj', 'w').write('0')\n"
                             "open(sys.argv[1], 'w').write(str(os.getpid()))\n",
                             str(cg.path / "cgroup.procs")])
    wait_until(lambda: proc_state(proc.pid) == "Z", what=f"{proc.pid} to become a zombie")
    return proc


_VFORK_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

/* Waits for a line (the test moved us into a cgroup), sets oom_score_adj 0,
 * allocates argv[1] MiB, prints its pid; a vfork child prints its own and
 * waits in the vfork. */
int main(int argc, char **argv)
{
	size_t size = strtoul(argv[1], NULL, 10) << 20;
	char line[16], *memory;
	pid_t child;

	FILE *adj;

	if (!fgets(line, sizeof(line), stdin))
		return 1;
	/* The test runner's -1000 is inherited: be an ordinary task. */
	adj = fopen("/proc/self/oom_score_adj", "w");
	if (!adj || fputs("0", adj) < 0 || fclose(adj))
		return 1;
	memory = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (memory == MAP_FAILED)
		return 1;
	memset(memory, 1, size);
	printf("%d\n", getpid());
	fflush(stdout);
	child = vfork();
	if (child == 0) {
		char buf[16];
		int n = 0, pid = getpid(), d = 1;

		while (pid / d >= 10)
			d *= 10;
		for (; d; d /= 10)
			buf[n++] = '0' + (pid / d) % 10;
		buf[n++] = '\n';
		if (write(1, buf, n) != n)
			_exit(1);
		for (;;)
			pause();
	}
	waitpid(child, NULL, 0);
	return 0;
}
"""


@dataclass
class VforkPair:
    proc: subprocess.Popen  # the parent, blocked in vfork()
    child_pid: int  # its child, still inside the vfork (shares the parent's mm)

    @property
    def alive(self) -> bool:
        """Both still there (the child neither gone nor a zombie), like MemoryHog.alive."""
        return self.proc.poll() is None and proc_state(self.child_pid) not in ("", "Z")

    def stop(self) -> None:
        for pid in (self.child_pid, self.proc.pid):
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        self.proc.wait()
        self.proc.stdin.close()
        self.proc.stdout.close()


def vfork_pair_in(cg: bpfoom.Cgroup, mib: int, workdir: Path) -> VforkPair:
    """A parent holding `mib` MiB in `cg` whose vfork child waits (never execs)."""
    source = workdir / "vfork_holder.c"
    binary = workdir / "vfork_holder"
    source.write_text(_VFORK_C)
    subprocess.run(["cc", "-O2", "-o", str(binary), str(source)], check=True)
    proc = subprocess.Popen([str(binary), str(mib)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    cg.write("cgroup.procs", str(proc.pid))
    proc.stdin.write("go\n")
    proc.stdin.flush()
    assert int(proc.stdout.readline()) == proc.pid
    child = int(proc.stdout.readline())
    wait_until(lambda: proc_state(child) == "S", what=f"vfork child {child} to sleep")
    return VforkPair(proc, child)


# -- capabilities -----------------------------------------------------------------

class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


_libc = ctypes.CDLL(None, use_errno=True)


def keep_only_caps(caps: set[int]) -> None:
    """Drop every capability of this process (uid stays 0) except `caps`."""
    header = _CapHeader(_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for cap in caps:
        data[cap // 32].effective |= 1 << (cap % 32)
        data[cap // 32].permitted |= 1 << (cap % 32)
    if _libc.syscall(_SYS_CAPSET, ctypes.byref(header), data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"capset: {os.strerror(err)}")


def in_child(fn: Callable[[], int], *, caps: set[int] | None = None,
             oom_score_adj: int | None = None, timeout: float = 120.0) -> int:
    """Run `fn` in a forked child (with only `caps`, if given); its int result, or -1000-signal."""
    bpfoom.features()  # probe in the parent: the child may lack what probing needs
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 255
        try:
            os.close(read_end)
            if oom_score_adj is not None:
                Path("/proc/self/oom_score_adj").write_text(str(oom_score_adj))
            if caps is not None:
                keep_only_caps(caps)
            os.write(write_end, str(fn()).encode())
            code = 0
        except BaseException as err:  # report, never unwind into pytest
            os.write(write_end, f"error {err!r}".encode())
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        answer = reader.read().decode()
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return -1000 - os.WTERMSIG(status)
    if answer.startswith("error"):
        raise AssertionError(f"the child failed: {answer}")
    return int(answer)


def attach_errno(ops: bpfoom.StructOpsMap, cgroup: bpfoom.Cgroup | None = None) -> int:
    """0 if `ops` attaches (then detached again), else the errno of the refusal."""
    try:
        link = ops.attach(cgroup=cgroup) if cgroup is not None else ops.attach()
    except OSError as err:
        return err.errno or -1
    link.close()
    return 0


# -- raw link creation --------------------------------------------------------------

def raw_struct_ops_link(map_fd: int, cgroup_fd: int = 0) -> int:
    """BPF_LINK_CREATE for a struct_ops map, naming a cgroup fd as the spec says: fd or -errno.

    The map's value must be set already (libbpf sets it at the first attach).
    """
    attr = ctypes.create_string_buffer(64)
    struct.pack_into("=IIII", attr, 0, map_fd, 0, BPF_STRUCT_OPS, 0)
    struct.pack_into("=I", attr, 16, cgroup_fd)  # link_create.cgroup.relative_fd
    fd = _libc.syscall(_SYS_BPF, BPF_LINK_CREATE, attr, ctypes.sizeof(attr))
    return fd if fd >= 0 else -ctypes.get_errno()


# -- the overkill scenario (spec section 6's tree) -----------------------------------

SIZES = {"cg1": 10, "cg2": 40, "cg3/cg4": 30, "cg3/cg5": 20}
ADJ = {"cg1": 1000, "cg2": -1000}


def overkill_run(make_cgroup: Callable[..., bpfoom.Cgroup], start_hog: Callable[..., MemoryHog],
                 name: str, policy: bpfoom.BpfObject | None) -> dict:
    """One OOM in the reference tree; returns {"kills": n, "killed": [cgroups], ...}.

    cg1, cg4 and cg5 allocate in turn (60M of the 80M), then cg2's 40M
    overruns the limit once.  cg2 (oom_score_adj -1000) is never a victim, so
    once it has allocated the OOM is over and every kill it caused is in
    oom_test's hierarchical memory.events.  With `policy` (overkill_leaf)
    attached to oom_test and cg3 it decides first; without, the kernel does.
    """
    top = make_cgroup(f"{name}/oom_test", memory_max="80M")
    groups = {g: make_cgroup(f"{name}/oom_test/{g}") for g in SIZES}
    hogs = {g: start_hog(groups[g], mib, oom_score_adj=ADJ.get(g, 0), gated=True)
            for g, mib in SIZES.items()}
    links = []
    try:
        for g in ("cg1", "cg3/cg4", "cg3/cg5"):
            hogs[g].release()
            assert hogs[g].wait_for("allocated"), f"{g} could not allocate below the limit"
        if policy is not None:
            ops = policy.struct_ops["overkill_leaf"]
            links = [ops.attach(cgroup=top), ops.attach(cgroup=make_cgroup(f"{name}/oom_test/cg3"))]
        hogs["cg2"].release()
        assert hogs["cg2"].wait_for("allocated", 120), "cg2 never got its memory"
        killed = sorted(g for g, hog in hogs.items() if not hog.alive)
        return {"kills": memory_events(top)["oom_kill"], "killed": killed,
                "ooms": memory_events(top)["oom"]}
    finally:
        for link in links:
            link.close()
        for hog in hogs.values():
            hog.stop()
        remove_cgroup_tree(top.path)
