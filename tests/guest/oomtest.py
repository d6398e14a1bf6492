"""Helpers for the guest kernel tests: capability check, kernel log slices, the recording
policy's controls (see oom_probe.bpf.c), and a fast allocator.

Memory cgroups and memory hogs come from bpfoom.testing (the same code as the
pytest plugin's fixtures); their old names here stay importable."""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

import bpfoom
from bpfoom.testing import (DEATH_TIMEOUT_S, MemoryHog, memory_events,  # noqa: F401 (re-exported)
                            remove_cgroup_tree)

REPO = Path(__file__).resolve().parents[2]
BPF_DIR = REPO / "tests" / "bpf" / "oom"
CGROUP_ROOT = Path("/sys/fs/cgroup")
Hog = MemoryHog  # the name these tests used before bpfoom.testing
kill_and_remove = remove_cgroup_tree

# Actions of oom_probe.bpf.c's `actions` map.
DECLINE, KILL_PID, CLAIM_WITHOUT_KILL, KILL_CURRENT = 0, 1, 2, 3


def missing_capability() -> str | None:
    """Why these tests cannot run here, or None when they can."""
    if os.environ.get("BPFOOM_IN_VM") != "1":
        return ("not inside the bpfoom VM (BPFOOM_IN_VM unset): run "
                "`python3 -m bpfoom.testing.vm -- .venv/bin/python -m pytest tests/guest`")
    if os.geteuid() != 0:
        return "needs root inside the VM"
    feats = bpfoom.features()
    for name in ("bpf_oom_ops", "struct_ops_cgroup_attach", "kfunc:bpf_oom_kill_process"):
        if feats[name].supported is not True:
            return f"the running kernel lacks {name}: {feats[name].detail}"
    controllers = (CGROUP_ROOT / "cgroup.subtree_control")
    if not controllers.exists() or "memory" not in controllers.read_text().split():
        return f"{CGROUP_ROOT} is not a cgroup2 root with +memory in cgroup.subtree_control"
    return None


# Forks one child per request (no interpreter start-up per OOM, which costs
# seconds under TCG): each child joins the cgroup, allocates the MiB asked
# for, and exits 0; the forker answers "<pid> <wait status>" per child.
_FORKER = r"""
import mmap, os, sys
procs, oom_score_adj = sys.argv[1], sys.argv[2]
for line in sys.stdin:
    pid = os.fork()
    if pid == 0:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(oom_score_adj)
        with open(procs, "w") as f:
            f.write(str(os.getpid()))
        memory = mmap.mmap(-1, int(line) << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        for offset in range(0, len(memory), 4096):
            memory[offset] = 1
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    print(pid, status, flush=True)
"""


class Forker:
    """Runs allocations of a given size in fresh children inside one cgroup.

    `oom_score_adj` -1000 makes the children an OOM that only a kill of
    something else can end.
    """

    def __init__(self, cg: bpfoom.Cgroup, oom_score_adj: int = 0) -> None:
        self.cgroup = cg
        self.proc = subprocess.Popen([sys.executable, "-S", "-c", _FORKER,
                                      str(cg.path / "cgroup.procs"), str(oom_score_adj)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def allocate(self, mib: int, timeout: float = DEATH_TIMEOUT_S) -> tuple[int, int]:
        """(child pid, exit code as subprocess reports it: -9 means SIGKILL)."""
        self.proc.stdin.write(f"{mib}\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            pytest.fail(f"an allocation of {mib} MiB in {self.cgroup.path} did not end "
                        f"within {timeout:.0f} s")
        pid, status = self.proc.stdout.readline().split()
        return int(pid), os.waitstatus_to_exitcode(int(status))

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        self.proc.stdout.close()


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    """Poll `predicate` until true; fail the test with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what or predicate}")
        time.sleep(0.05)


# -- kernel log -----------------------------------------------------------------

class KernelLog:
    """The kernel log records written since this object was created (from /dev/kmsg)."""

    def __init__(self) -> None:
        self._fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(self._fd, 0, os.SEEK_END)
        self._lines: list[str] = []

    def lines(self) -> list[str]:
        while True:
            try:
                record = os.read(self._fd, 8192)
            except BlockingIOError:
                break
            except BrokenPipeError:  # overwritten records; keep reading
                continue
            if not record:
                break
            text = record.decode(errors="replace")
            self._lines.append(text.split(";", 1)[1].rstrip("\n") if ";" in text else text)
        return list(self._lines)

    def close(self) -> None:
        os.close(self._fd)


# epoll_wait, epoll_pwait and epoll_pwait2 on x86_64: where `bpfoom events --follow` sleeps.
EPOLL_WAIT_SYSCALLS = {232, 281, 441}


def waiting_in_epoll(pid: int) -> bool:
    """Whether process ``pid``'s main thread sleeps in epoll_wait: a follower started with
    Popen has finished starting (importing bpfoom takes seconds under TCG) and waits for
    events, so what happens from now on reaches it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        current = Path(f"/proc/{pid}/syscall").read_text().split()
    except OSError:
        return False
    return state == "S" and bool(current) and current[0].isdigit() \
        and int(current[0]) in EPOLL_WAIT_SYSCALLS


def policy_lines(log: KernelLog) -> list[str]:
    """The oom_policy=<name> lines of the OOM reports in `log`.

    The report header carrying them is rate-limited by the kernel (oom_rs: 10
    per 5 s, shared by every OOM kill): call await_oom_report_window() before
    the OOM whose report a test reads.
    """
    return [line for line in log.lines() if line.startswith("oom_policy=")]


# oom_kill_process()'s oom_rs: DEFAULT_RATELIMIT_INTERVAL, DEFAULT_RATELIMIT_BURST.
OOM_REPORT_INTERVAL_S = 5.0
# Printed by every oom_kill_process() call that reaches the rate limit, never rate-limited.
_OOM_KILL_RECORD = ("invoked oom-killer", ": Killed process ", "is already exiting. Skip killing")


def _kmsg_records() -> list[tuple[float, str]]:
    """(seconds since boot, text) of every record still in the kernel's log buffer."""
    records = []
    fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    try:
        while True:
            try:
                raw = os.read(fd, 8192)
            except BlockingIOError:
                break
            except BrokenPipeError:  # overwritten records; keep reading
                continue
            header, _, text = raw.decode(errors="replace").partition(";")
            records.append((int(header.split(",")[2]) / 1e6, text.split("\n", 1)[0]))
    finally:
        os.close(fd)
    return records


def await_oom_report_window() -> float:
    """Sleep until the next OOM reports print in full; return the seconds waited.

    The rate limit's window starts at an oom_kill_process() call and lasts 5 s,
    and every such call logs a line that is never rate-limited ("Killed
    process"): so 5 s after the last of those lines, the next 10 reports print.
    "Now" is the timestamp the kernel gives a marker written to /dev/kmsg.
    """
    marker = f"bpfoom-test: waiting for a fresh OOM report window ({time.monotonic_ns()})"
    with open("/dev/kmsg", "w") as kmsg:
        kmsg.write(marker + "\n")
    records = _kmsg_records()
    now = next(stamp for stamp, text in reversed(records) if text == marker)
    kills = [stamp for stamp, text in records if any(m in text for m in _OOM_KILL_RECORD)]
    wait = max(0.0, kills[-1] + OOM_REPORT_INTERVAL_S + 0.2 - now) if kills else 0.0
    time.sleep(wait)
    return wait


# -- BPF objects ----------------------------------------------------------------

def killed_pids(log: KernelLog) -> list[tuple[int, str]]:
    """(pid, reason) of every "<reason>: Killed process <pid> (...)" line in `log`, in order."""
    found = []
    for line in log.lines():
        reason, marker, rest = line.partition(": Killed process ")
        if marker:
            found.append((int(rest.split()[0]), reason))
    return found


def open_probe(name: str | None = "bpfoom_probe") -> bpfoom.BpfObject:
    """oom_probe.bpf.o, loaded, with `probe_policy` named `name`."""
    obj = bpfoom.BpfObject.open(BPF_DIR / "oom_probe.bpf.o")
    if name is not None:
        obj.struct_ops["probe_policy"].fields["name"] = name
    obj.load()
    return obj


def set_action(obj: bpfoom.BpfObject, cgroup_id: int, kind: int, pid: int = 0) -> None:
    obj.maps["actions"][cgroup_id] = {"kind": kind, "pid": pid}


def recorded_calls(obj: bpfoom.BpfObject) -> list[tuple[int, int]]:
    """(ctx cgroup id, OOMing memcg's cgroup id) per handle_out_of_memory call, in order."""
    count = min(obj.bss["calls"], 64)
    return list(zip(obj.bss["call_ctx_ids"][:count], obj.bss["call_oom_ids"][:count]))


def sigkilled(status: int | str) -> bool:
    """Killed by SIGKILL: an exit status (-9, as subprocess reports it) or a
    MemoryHog.wait_dead() answer ("SIGKILL")."""
    return status in (-signal.SIGKILL, "SIGKILL")


def link_ids() -> set[int]:
    """Ids of the attached struct_ops links (a detached link reports no map)."""
    return {info.id for info in bpfoom.links() if info.map_id}


# -- PSI (bpf_psi_ops, psi_probe.bpf.c) ------------------------------------------

# include/linux/psi_types.h enum psi_res, and the "full" bit of spec section 5.
PSI_IO, PSI_MEM, PSI_CPU = 0, 1, 2
BPF_PSI_FULL = 0x80000000
# enum bpf_oom_flags
BPF_OOM_FLAGS_WAIT_ON_OOM_LOCK, BPF_OOM_FLAGS_LAST = 1 << 0, 1 << 1
# psi_probe.bpf.c's array sizes
PSI_MAX_TRIGGERS = 4
PSI_MAX_RECORDS = 64


@dataclass(frozen=True)
class Trigger:
    """One trigger psi_probe's init() creates: cgroup id (0: system), resource, limits."""

    cgroup_id: int
    resource: int
    threshold_us: int = 100_000
    window_us: int = 1_000_000


def open_psi_probe(*triggers: Trigger, init_ret: int = 0, constraint: str = "") -> bpfoom.BpfObject:
    """psi_probe.bpf.o, loaded, its init() set to create `triggers` and return `init_ret`;
    its declared OOMs show `constraint` (a constant string: fixed at load)."""
    obj = bpfoom.BpfObject.open(BPF_DIR / "psi_probe.bpf.o")
    try:
        obj.rodata["oom_constraint"] = constraint
        obj.load()
        set_psi_triggers(obj, *triggers)
        obj.bss["init_ret"] = init_ret
    except BaseException:
        obj.close()
        raise
    return obj


def set_psi_triggers(obj: bpfoom.BpfObject, *triggers: Trigger) -> None:
    """What the next init() of `obj` creates."""
    assert len(triggers) <= PSI_MAX_TRIGGERS
    padded = list(triggers) + [Trigger(0, 0, 0, 0)] * (PSI_MAX_TRIGGERS - len(triggers))
    obj.bss["trigger_cgroup_ids"] = [t.cgroup_id for t in padded]
    obj.bss["trigger_resources"] = [t.resource for t in padded]
    obj.bss["trigger_thresholds_us"] = [t.threshold_us for t in padded]
    obj.bss["trigger_windows_us"] = [t.window_us for t in padded]
    obj.bss["nr_triggers"] = len(triggers)


def psi_records(obj: bpfoom.BpfObject, kind: str) -> list[int]:
    """The ids psi_probe recorded: kind "event" (trigger cgroup ids), "online" or "offline"."""
    count = {"event": "events", "online": "onlines", "offline": "offlines"}[kind]
    return list(obj.bss[f"{kind}_ids"][:min(obj.bss[count], PSI_MAX_RECORDS)])


def psi_oom_returns(obj: bpfoom.BpfObject) -> list[int]:
    """What each bpf_out_of_memory call of psi_probe returned, in order."""
    made = min(obj.bss["oom_done"], PSI_MAX_RECORDS)
    return list(obj.bss["oom_rets"][:made])


def psimon_threads() -> int:
    """How many PSI RT polling kthreads exist: one per psi_group with a privileged trigger."""
    count = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                count += (entry / "comm").read_text().strip() == "psimon"
            except OSError:
                pass
    return count


def struct_ops_map_ids() -> set[int]:
    """Ids of the kernel's struct_ops maps (bpftool, the guest shares the host's)."""
    out = subprocess.run(["bpftool", "-j", "map", "show"], capture_output=True, text=True,
                         check=True).stdout
    return {entry["id"] for entry in json.loads(out) if entry.get("type") == "struct_ops"}

