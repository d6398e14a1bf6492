#!/usr/bin/env python3
"""A BPF OOM policy, attached from Python, decides a real out-of-memory kill.

The story (needs root and a kernel with bpf_oom_ops; `./scripts/demo` boots one):

    demo            memory.max 80 MiB, no swap   <- largest_leaf attached here
    ├── cache       10 MiB, oom_score_adj 1000   <- the kernel's own killer would pick this
    ├── database    40 MiB, oom_score_adj -1000  <- must never be killed
    └── jobs
        ├── render  30 MiB                       <- the largest killable leaf: the policy's pick
        └── thumbs  20 MiB

cache, render and thumbs allocate first (60 MiB); then the database asks for
its 40 MiB and the cgroup runs out of memory.  The policy kills every task of
the largest leaf cgroup that holds no unkillable task, reports its decision
on its ring buffer, and this script checks that the kernel did just that.

Exit status: 0 if the policy's victim (and only it) died, 1 otherwise.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import bpfoom
from bpfoom.testing import MemoryHog

CGROUP_ROOT = Path("/sys/fs/cgroup")
LIMIT_MIB = 80
# name -> (MiB, oom_score_adj); allocated in this order, the last one overruns the limit.
WORKLOADS = {
    "cache": (10, 1000),
    "jobs/render": (30, 0),
    "jobs/thumbs": (20, 0),
    "database": (40, -1000),
}
POLICY_PICK = "jobs/render"
KERNEL_PICK = "cache"
# Generous: a VM without KVM on a busy host starts Python slowly.
STEP_TIMEOUT_S = 120
NEEDED = ("bpf_oom_ops", "struct_ops_cgroup_attach", "kfunc:bpf_oom_kill_process")

_start = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - _start:5.1f}s] {text}", flush=True)


@dataclass
class Workload:
    """One memory hog in its own leaf cgroup."""

    name: str
    cgroup: bpfoom.Cgroup
    mib: int
    oom_score_adj: int
    hog: MemoryHog | None = None

    def start(self) -> bool:
        """Start the hog (it allocates once released); True once it is in its cgroup."""
        self.hog = MemoryHog.start(self.cgroup, self.mib, self.oom_score_adj, wait_joined=False)
        return self.hog.wait_for("joined", STEP_TIMEOUT_S)

    def died(self, timeout: float) -> bool:
        try:
            self.hog.proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def stop(self) -> None:
        if self.hog is not None:
            self.hog.stop()


def check_kernel() -> bool:
    feats = bpfoom.features()
    missing = [name for name in NEEDED if not feats[name]]
    for name in missing:
        say(f"the running kernel lacks {name}: {feats[name].detail}")
    if missing:
        say("this demo needs bpfoom's patched kernel: run ./scripts/demo, which boots it in a VM")
        return False
    controllers = CGROUP_ROOT / "cgroup.subtree_control"
    if not controllers.exists() or "memory" not in controllers.read_text().split():
        say(f"{CGROUP_ROOT} is not a cgroup2 root with the memory controller enabled")
        return False
    return True


def make_cgroup(path: Path, memory_max: str | None = None) -> bpfoom.Cgroup:
    """A child cgroup with its own memory controller and no swap."""
    (path.parent / "cgroup.subtree_control").write_text("+memory")
    cg = bpfoom.Cgroup.create(path)
    if (path / "memory.swap.max").exists():
        cg.write("memory.swap.max", "0")
    if memory_max is not None:
        cg.write("memory.max", memory_max)
    return cg


def remove_tree(path: Path) -> None:
    """Kill whatever is left in the demo's cgroups and remove them, deepest first."""
    if not path.exists():
        return
    for child in (p for p in path.iterdir() if p.is_dir()):
        remove_tree(child)
    (path / "cgroup.kill").write_text("1")
    deadline = time.monotonic() + 10
    while path.exists():
        try:
            path.rmdir()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class KernelLog:
    """Kernel log lines written after this object was made (from /dev/kmsg)."""

    def __init__(self) -> None:
        self.fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(self.fd, 0, os.SEEK_END)

    def lines(self) -> list[str]:
        found = []
        while True:
            try:
                record = os.read(self.fd, 8192).decode(errors="replace")
            except BlockingIOError:
                return found
            except BrokenPipeError:  # records overwritten meanwhile
                continue
            found.append(record.split(";", 1)[-1].rstrip("\n"))

    def close(self) -> None:
        os.close(self.fd)


def oom_kills(cg: bpfoom.Cgroup) -> int:
    events = dict(line.split() for line in cg.read("memory.events").splitlines())
    return int(events["oom_kill"])


def mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"


def run(top_path: Path) -> bool:
    top = make_cgroup(top_path, memory_max=f"{LIMIT_MIB}M")
    make_cgroup(top_path / "jobs")
    workloads = {}
    for name, (size, adj) in WORKLOADS.items():
        workloads[name] = Workload(name, make_cgroup(top_path / name), size, adj)
    say(f"built {top_path} (memory.max {LIMIT_MIB} MiB, no swap):")
    for w in workloads.values():
        note = {KERNEL_PICK: "  <- the kernel's default victim (highest oom_score_adj)",
                "database": "  <- unkillable"}.get(w.name, "")
        say(f"    {w.name:<12} {w.mib:>3} MiB  oom_score_adj {w.oom_score_adj:>5}{note}")
    try:
        for w in workloads.values():
            if not w.start():
                say(f"{w.name}'s process did not start within {STEP_TIMEOUT_S} s; giving up")
                return False
        by_id = {w.cgroup.id: w for w in workloads.values()}
        by_pid = {w.hog.pid: w for w in workloads.values()}

        with bpfoom.OomPolicy.load("largest_leaf") as policy:
            policy.attach(cgroup=top)
            for item in bpfoom.attached():
                if item.cgroup_id == top.id:
                    say(f"attached policy {item.policy_name!r} to {item.cgroup_path} "
                        f"(link {item.link_id})")
            say(f"policy: {policy.info.description}")

            *first, last = workloads.values()
            for w in first:
                w.hog.release()
                if not w.hog.wait_allocated(STEP_TIMEOUT_S):
                    say(f"{w.name} could not allocate {w.mib} MiB below the limit; giving up")
                    return False
            say(f"{', '.join(w.name for w in first)} hold their memory; "
                f"memory.current of {top_path.name}: {mib(int(top.read('memory.current')))}")
            say(f"releasing {last.name}: {last.mib} MiB more than fits, the cgroup runs out of memory")
            kernel_log = KernelLog()
            last.hog.release()

            decision = None
            for event in policy.events(timeout=STEP_TIMEOUT_S):
                if event.action == "killed":
                    decision = event
                    break
                say(f"policy event: {event}")
            if decision is None:
                say(f"the policy reported no kill within {STEP_TIMEOUT_S} s")
                return False
            victim = by_id.get(decision.victim_cgroup_id)
            victim_name = victim.name if victim else f"cgroup id {decision.victim_cgroup_id}"
            pids = ", ".join(f"{pid} ({by_pid[pid].name if pid in by_pid else '?'})"
                             for pid in decision.pids)
            say(f"the policy decided: kill every task of {victim_name} "
                f"(reason {decision.reason}, {mib(decision.usage_bytes)} of anonymous memory, "
                f"largest of {decision.candidates} killable leaves)")
            say(f"    killed pids: {pids}")
            say(f"    event as JSON: {decision.to_json()}")

            for w in workloads.values():
                if w.name in (POLICY_PICK, victim_name):
                    w.died(STEP_TIMEOUT_S)
            last_ok = last.hog.wait_allocated(STEP_TIMEOUT_S)
            later = list(policy.events(timeout=0.5))
            for event in later:
                say(f"later policy event: {event}")
            policy.detach()
            say("policy detached")
        report = [line for line in kernel_log.lines()
                  if line.startswith("oom_policy=") or "Killed process" in line
                  or "invoked oom-killer" in line]
        kernel_log.close()
        say("the kernel's log of the OOM:")
        for line in report:
            say(f"    {line}")

        say("what the kernel did (memory.events oom_kill, process state):")
        dead = []
        for w in workloads.values():
            state = "alive"
            code = w.hog.proc.poll()
            if code is not None:
                state = f"killed by signal {-code}" if code < 0 else f"exited {code}"
                dead.append(w.name)
            say(f"    {w.name:<12} oom_kill {oom_kills(w.cgroup)}  {state}")
        say(f"{last.name} {'got' if last_ok else 'did NOT get'} its {last.mib} MiB after the kill")
        right = (victim_name == POLICY_PICK and dead == [POLICY_PICK]
                 and oom_kills(workloads[POLICY_PICK].cgroup) == 1 and last_ok)
        if right:
            say(f"as expected: largest_leaf killed {POLICY_PICK}, the largest leaf it may kill; "
                f"the kernel's default killer would have picked {KERNEL_PICK} "
                f"(oom_score_adj {WORKLOADS[KERNEL_PICK][1]}, only {WORKLOADS[KERNEL_PICK][0]} MiB)")
        else:
            say(f"UNEXPECTED: wanted only {POLICY_PICK} killed, got the decision {victim_name} "
                f"and dead workloads {dead or 'none'}")
        return right
    finally:
        for w in workloads.values():
            w.stop()
        top.close()
        for w in workloads.values():
            w.cgroup.close()


def main() -> int:
    say(f"bpfoom {bpfoom.__version__} OOM demo on Linux {os.uname().release}")
    if not check_kernel():
        return 1
    say("kernel: bpf_oom_ops, cgroup-attached struct_ops and the OOM kfuncs are present")
    top_path = CGROUP_ROOT / f"bpfoom-demo-{os.getpid()}"
    try:
        ok = run(top_path)
    finally:
        remove_tree(top_path)
        say(f"removed {top_path}")
    left = [item for item in bpfoom.attached() if item.policy_name == "largest_leaf"]
    if left:
        say(f"BUG: still attached after the demo: {left}")
        ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
