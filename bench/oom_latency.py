#!/usr/bin/env python3
"""OOM-to-relief latency: the kernel's own killer against BPF policies.

A cgroup with memory.max 64M holds a 40 MiB task in one leaf; a task in
another leaf allocates 48 MiB and crosses the limit.  Each variant (the
kernel with no policy, largest_leaf, priority attached to the cgroup) picks
the 40 MiB task.  Per run, on CLOCK_MONOTONIC, from the first
out_of_memory() (fentry, bench/oom_timing.bpf.c): until the victim is marked
(tracepoint oom/mark_victim), until it has exited (sched_process_exit), and
until the allocating task has all its memory (it stamps that itself).
Medians, min and max of --runs runs (default 20).  vm.oom_dump_tasks is 0
for the run.  Prints; asserts nothing.

Not measured here (left undone): psi_guard against a user-space
memory.pressure poller.

    python3 -m bpfoom.testing.vm -- .venv/bin/python bench/oom_latency.py [--json]
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

import bpfoom

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import benchlib  # noqa: E402

VARIANTS = (None, "largest_leaf", "priority")
LIMIT = "64M"
VICTIM_KIB = 40 << 10
GROW_MIB = 48
SYSCTLS = {"vm/oom_dump_tasks": "0"}


def one_run(top: Path, holder: Path, timing: benchlib.OomTiming) -> dict:
    victim = subprocess.Popen([str(holder), "hold", str(VICTIM_KIB), str(top / "victim")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        victim.stdout.readline()  # "ready 1"
        timing.reset()
        grow = subprocess.run([str(holder), "grow", str(top / "grower"), str(GROW_MIB)],
                              capture_output=True, text=True, timeout=300)
    finally:
        victim.stdin.close()
        victim.wait(timeout=60)
        victim.stdout.close()
    stamps = timing.stamps()
    done = grow.stdout.split()
    start = stamps["first_oom_at"]

    def since(at: int) -> float | None:
        return (at - start) / 1e3 if start and at else None

    return {"to_marked_us": since(stamps["victim_marked_at"]),
            "to_exited_us": since(stamps["victim_exited_at"]),
            "to_relief_us": since(int(done[1])) if len(done) == 2 else None,
            "grower_survived": grow.returncode == 0}


def spread(values: list[float | None]) -> dict:
    seen = [v for v in values if v is not None]
    if not seen:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(seen), "min": min(seen), "max": max(seen), "n": len(seen)}


def measure(runs: int, holder: Path, timing: benchlib.OomTiming) -> dict:
    top = benchlib.CGROUP_ROOT / f"bpfoom-bench-latency-{os.getpid()}"
    top.mkdir()
    try:
        (top / "cgroup.subtree_control").write_text("+memory")
        (top / "memory.max").write_text(LIMIT)
        for leaf in ("victim", "grower"):
            (top / leaf).mkdir()
            (top / leaf / "memory.swap.max").write_text("0")
        results = {}
        for name in VARIANTS:
            policy = bpfoom.OomPolicy.load(name) if name else None
            try:
                if policy is not None:
                    policy.attach(cgroup=top)
                measured = [one_run(top, holder, timing) for _ in range(runs)]
            finally:
                if policy is not None:
                    policy.close()
            results[name or "kernel"] = {
                **{key: spread([m[key] for m in measured])
                   for key in ("to_marked_us", "to_exited_us", "to_relief_us")},
                "grower_survived": sum(m["grower_survived"] for m in measured), "runs": runs}
        return results
    finally:
        benchlib.remove_tree(top)


def main(argv: list[str] | None = None) -> int:
    args = benchlib.parse_args(__doc__, argv, {"runs": (20, "OOMs per variant")})
    info = benchlib.machine()
    with benchlib.timed_oom_setup(SYSCTLS) as (holder, timing):
        results = measure(args.runs, holder, timing)
    lines = [benchlib.describe(info),
             f"from the first out_of_memory() to ... (µs; median [min-max] of {args.runs} runs)",
             f"{'variant':<13} {'victim marked':>24} {'victim exited':>24} {'allocation done':>24}"]
    kernel = results["kernel"]
    for name, r in results.items():
        cells = []
        for key in ("to_marked_us", "to_exited_us", "to_relief_us"):
            s = r[key]
            cells.append("-" if s["median"] is None else
                         f"{s['median']:.0f} [{s['min']:.0f}-{s['max']:.0f}]")
        lines.append(f"{name:<13} {cells[0]:>24} {cells[1]:>24} {cells[2]:>24}"
                     f"  ({r['grower_survived']}/{r['runs']} allocations done)")
    for name in VARIANTS[1:]:
        mine, theirs = results[name]["to_relief_us"]["median"], kernel["to_relief_us"]["median"]
        if mine and theirs:
            lines.append(f"{name}: relief {mine / theirs:.2f}x the kernel's")
    benchlib.emit({"benchmark": "oom_latency", "machine": info, "results": results,
                   "sysctls": SYSCTLS, "limit": LIMIT, "victim_kib": VICTIM_KIB,
                   "grow_mib": GROW_MIB}, args.json, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
