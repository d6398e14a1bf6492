#!/usr/bin/env python3
"""OOM-to-relief latency: the kernel's own killer against BPF policies.

A cgroup with memory.max 64M holds a 40 MiB task in one leaf; a task in
another leaf allocates 48 MiB and crosses the limit.  Each variant (the
kernel with no policy, largest_leaf, priority attached to the cgroup) picks
the 40 MiB task.  Per run, on CLOCK_MONOTONIC, from the first
out_of_memory() (fentry, bench/oom_timing.bpf.c): until the victim is sent
SIGKILL (signal_generate), until it is marked (oom/mark_victim, which the
kernel fires after the signal, so a victim on the other CPU may exit first),
until it has exited (sched_process_exit), and
until the allocating task has all its memory (it stamps that itself).
Medians, min and max of --runs runs (default 20).  vm.oom_dump_tasks is 0
for the run.

Pressure: a task in a fresh cgroup (memory.high 32M, memory.max 256M as a
safety net, no swap) touches 32 MiB, stamps the moment it reached
memory.high, and goes on allocating 1 MiB at a time: above memory.high with
nothing to reclaim it is throttled, a sustained "full" stall that never
reaches memory.max.  Timed from that stamp to the task's exit: psi_guard
(its defaults: 100 ms of full stall in a 1 s window; it declares an OOM and
the kernel's killer takes the task) against a user-space poller reading
memory.pressure once a second the way systemd-oomd does, killing through
cgroup.kill when "full avg10" has stayed above a limit for a duration:
systemd-oomd's defaults (60%, 30 s; --oomd-runs runs, default 5, since
each takes about 40 s) and psi_guard's own threshold (10%, at once).
Prints; asserts nothing.

    python3 -m bpfoom.testing.vm -- .venv/bin/python bench/oom_latency.py [--json]
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
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
PRESS_HIGH_MIB = 32
PRESS_MAX = "256M"
# name -> (full avg10 limit in %, seconds it must stay above): systemd-oomd's
# DefaultMemoryPressureLimit/DurationSec, and psi_guard's 100 ms per 1 s window.
POLLERS = {"poller_oomd_defaults": (60.0, 30.0), "poller_10pct": (10.0, 0.0)}
POLL_INTERVAL_S = 1.0


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

    return {"to_signalled_us": since(stamps["victim_signalled_at"]),
            "to_marked_us": since(stamps["victim_marked_at"]),
            "to_exited_us": since(stamps["victim_exited_at"]),
            "to_relief_us": since(int(done[1])) if len(done) == 2 else None,
            "grower_survived": grow.returncode == 0,
            "victim_marked": stamps["marked_pid"] == stamps["victim_pid"] != 0}


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
                   for key in ("to_signalled_us", "to_marked_us", "to_exited_us",
                               "to_relief_us")},
                "grower_survived": sum(m["grower_survived"] for m in measured),
                "victim_marked": sum(m["victim_marked"] for m in measured), "runs": runs}
        return results
    finally:
        benchlib.remove_tree(top)


def full_avg10(leaf: Path) -> float:
    for line in (leaf / "memory.pressure").read_text().splitlines():
        if line.startswith("full "):
            return float(line.split()[1].split("=")[1])
    raise RuntimeError(f"{leaf}/memory.pressure has no 'full' line")


def poll_and_kill(leaf: Path, hog: subprocess.Popen, limit: float, duration_s: float) -> int:
    """systemd-oomd's loop: every second, kill the cgroup once full avg10 stayed above
    ``limit`` for ``duration_s``.  Returns when the kill was sent (CLOCK_MONOTONIC ns)."""
    above_since = None
    due = time.monotonic()
    while hog.poll() is None:
        now = time.monotonic_ns()
        if full_avg10(leaf) > limit:
            above_since = above_since or now
            if now - above_since >= duration_s * 1e9:
                (leaf / "cgroup.kill").write_text("1")
                return now
        else:
            above_since = None
        due += POLL_INTERVAL_S
        time.sleep(max(0.0, due - time.monotonic()))
    return 0


def pressure_run(leaf: Path, holder: Path, timing: benchlib.OomTiming,
                 poller: tuple[float, float] | None) -> dict:
    leaf.mkdir()
    try:
        (leaf / "memory.swap.max").write_text("0")
        (leaf / "memory.max").write_text(PRESS_MAX)
        (leaf / "memory.high").write_text(f"{PRESS_HIGH_MIB}M")
        timing.reset()
        hog = subprocess.Popen([str(holder), "press", str(leaf), str(PRESS_HIGH_MIB)],
                               stdout=subprocess.PIPE, text=True)
        timing.watch(hog.pid)
        try:
            over = int(hog.stdout.readline().split()[1])
            kill_sent = poll_and_kill(leaf, hog, *poller) if poller else 0
            hog.wait(timeout=600)
        finally:
            if hog.poll() is None:
                hog.kill()
                hog.wait()
            hog.stdout.close()
        stamps = timing.stamps()
        events = dict(line.split() for line in (leaf / "memory.events").read_text().splitlines())
    finally:
        benchlib.remove_tree(leaf)

    def since(at: int) -> float | None:
        return (at - over) / 1e3 if at else None

    return {"to_kill_sent_us": since(kill_sent),
            "to_signalled_us": since(stamps["victim_signalled_at"]),
            "to_marked_us": since(stamps["victim_marked_at"]),
            "to_exited_us": since(stamps["victim_exited_at"]), "killed": hog.returncode == -9,
            "memory_max_hit": int(events["max"]) > 0}


def measure_pressure(runs: int, oomd_runs: int, holder: Path, timing: benchlib.OomTiming) -> dict:
    top = benchlib.CGROUP_ROOT / f"bpfoom-bench-pressure-{os.getpid()}"
    top.mkdir()
    try:
        (top / "cgroup.subtree_control").write_text("+memory")
        variants: dict[str, list[dict]] = {}
        top_id = bpfoom.Cgroup.id_of(top)
        with bpfoom.PsiHandler.load("psi_guard", guard_children_of=top_id) as guard:
            guard.attach()  # guards each cgroup created under top from now on
            variants["psi_guard"] = [pressure_run(top / f"guarded{i}", holder, timing, None)
                                     for i in range(runs)]
            guard.detach()
        for name, rule in POLLERS.items():
            count = oomd_runs if name == "poller_oomd_defaults" else runs
            variants[name] = [pressure_run(top / f"{name}{i}", holder, timing, rule)
                              for i in range(count)]
    finally:
        benchlib.remove_tree(top)
    return {name: {**{key: spread([m[key] for m in measured])
                      for key in ("to_kill_sent_us", "to_signalled_us", "to_marked_us",
                                  "to_exited_us")},
                   "killed": sum(m["killed"] for m in measured),
                   "memory_max_hit": sum(m["memory_max_hit"] for m in measured),
                   "runs": len(measured)}
            for name, measured in variants.items()}


def main(argv: list[str] | None = None) -> int:
    args = benchlib.parse_args(__doc__, argv, {
        "runs": (20, "OOMs per variant (and pressure runs of psi_guard and the 10%% poller)"),
        "oomd_runs": (5, "pressure runs of the poller with systemd-oomd's defaults (0: none)")})
    info = benchlib.machine()
    with benchlib.timed_oom_setup(SYSCTLS) as (holder, timing):
        results = measure(args.runs, holder, timing)
        pressure = measure_pressure(args.runs, args.oomd_runs, holder, timing)
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
    lines += ["", f"sustained full pressure: from reaching memory.high ({PRESS_HIGH_MIB}M) to the "
              "task's exit (ms; median [min-max])",
              f"{'variant':<21} {'to exit':>26} {'killed':>7} {'memory.max hit':>15}"]
    for name, r in pressure.items():
        s = r["to_exited_us"]
        cell = "-" if s["median"] is None else \
            f"{s['median'] / 1e3:.0f} [{s['min'] / 1e3:.0f}-{s['max'] / 1e3:.0f}]"
        lines.append(f"{name:<21} {cell:>26} {r['killed']:>3}/{r['runs']:<3} "
                     f"{r['memory_max_hit']:>15}")
    guard = pressure["psi_guard"]["to_exited_us"]["median"]
    for name in POLLERS:
        theirs = pressure[name]["to_exited_us"]["median"]
        if guard and theirs:
            lines.append(f"{name}: {theirs / guard:.1f}x psi_guard's time")
    benchlib.emit({"benchmark": "oom_latency", "machine": info, "results": results,
                   "pressure": pressure, "pollers": POLLERS, "sysctls": SYSCTLS, "limit": LIMIT,
                   "victim_kib": VICTIM_KIB, "grow_mib": GROW_MIB,
                   "pressure_high_mib": PRESS_HIGH_MIB}, args.json, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
