#!/usr/bin/env python3
"""Decision cost: a BPF OOM policy's victim choice against the kernel's own.

For trees of 10, 100 and 1,000 leaf memcgs, each with a process holding a
little memory, a process in one more leaf grows past the tree's memory.max
until it is OOM-killed (it is the largest task and its leaf the largest, so
every policy and the kernel pick it, and the tree stays the same from one
round to the next).  Rounds interleave the variants (the order rotating),
so drift in the machine hits all alike.  Each round is timed with fentry/fexit
(bench/oom_timing.bpf.c) in its first out_of_memory(): the decision is that
call's time minus the kill it made (oom_kill_process() for the kernel with
no policy attached, bpf_oom_kill_process() for a policy: largest_leaf,
priority, largest_task attached to the tree's top).  The kernel's own
select_bad_process() is inlined in this kernel, so it cannot be timed alone;
both sides therefore carry out_of_memory()'s small common preamble.  For a
policy the table also shows bpf_handle_oom() minus its kill (the handler
alone) and its struct_ops program's run time per call from bpf_prog_info
(kernel.bpf_stats_enabled=1), as cross-checks.  The kill, the OOM report
(vm.oom_dump_tasks is 0 for the run: the per-task listing would swamp
everything) and reclaim before the OOM are excluded.
Target: a policy at most 1.0x the kernel at 1,000 leaves.  Prints; asserts
nothing.

    python3 -m bpfoom.testing.vm -- .venv/bin/python bench/decision_cost.py [--json]

Needs root, the bpfoom kernel (bpf_oom_ops), gcc and clang-19 (the VM has them).
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

SIZES = (10, 100, 1000)
POLICIES = ("largest_leaf", "priority", "largest_task")
HOLD_KIB = 128
HEADROOM_MIB = 8
GROW_MIB = 64
TARGET_RATIO = 1.0
SYSCTLS = {"kernel/bpf_stats_enabled": "1", "vm/oom_dump_tasks": "0"}


def prog_stats(policy: bpfoom.OomPolicy | None) -> tuple[int, int]:
    """(run_time_ns, run_cnt) of the policy's handle_out_of_memory program (fdinfo)."""
    if policy is None:
        return 0, 0
    program = next(p for p in policy.object.programs.values()
                   if p.section.endswith("/handle_out_of_memory"))
    fields = dict(line.split(":", 1) for line in
                  Path(f"/proc/self/fdinfo/{program.fd}").read_text().splitlines() if ":" in line)
    return int(fields.get("run_time_ns", 0)), int(fields.get("run_cnt", 0))


def one_round(top: Path, trigger: Path, holder: Path, timing: benchlib.OomTiming,
              policy: bpfoom.OomPolicy | None) -> dict:
    usage = int((top / "memory.current").read_text())
    (top / "memory.max").write_text(str(usage + (HEADROOM_MIB << 20)))
    timing.reset()
    run_before, count_before = prog_stats(policy)
    grow = subprocess.run([str(holder), "grow", str(trigger), str(GROW_MIB)],
                          capture_output=True, timeout=300)
    run_after, count_after = prog_stats(policy)
    (top / "memory.max").write_text("max")
    first = timing.first_oom()
    # The first OOM of the round minus the kill it made: the kernel's own
    # select_bad_process() is inlined (no fentry), so both sides are timed the same way.
    kill = first["oom_kill_process" if policy is None else "bpf_oom_kill_process"]
    decision = first["out_of_memory"]["ns"] - (kill["ns"] if kill else 0) \
        if first["out_of_memory"] and first["out_of_memory"]["calls"] else None
    handler = None
    if policy is not None and first["bpf_handle_oom"]:
        handler = first["bpf_handle_oom"]["ns"] - (kill["ns"] if kill else 0)
    return {"killed": grow.returncode == -9, "decision_ns": decision, "handler_ns": handler,
            "first_oom": first,
            "prog_run_ns": run_after - run_before, "prog_runs": count_after - count_before}


def settle(top: Path) -> None:
    """Wait until no OOM victim of the previous round is still exiting."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if "populated 1" in (top / "trigger" / "cgroup.events").read_text():
            time.sleep(0.05)
            continue
        return


def measure(leaves: int, rounds: int, holder: Path, timing: benchlib.OomTiming) -> dict:
    top, made = benchlib.make_tree(f"bpfoom-bench-decision-{os.getpid()}", leaves)
    trigger = top / "trigger"
    trigger.mkdir()
    (trigger / "memory.swap.max").write_text("0")
    holders = subprocess.Popen([str(holder), "hold", str(HOLD_KIB), *map(str, made)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        ready = holders.stdout.readline().split()
        variants: dict[str, list[dict]] = {"kernel": [], **{name: [] for name in POLICIES}}
        policies = {name: bpfoom.OomPolicy.load(name) for name in POLICIES}
        try:
            order: list[str] = list(variants)
            for _ in range(rounds):  # interleaved, the order rotating: drift hits every variant
                for name in order:
                    policy = policies.get(name)
                    if policy is not None:
                        policy.attach(cgroup=top)
                    try:
                        settle(top)
                        variants[name].append(one_round(top, trigger, holder, timing, policy))
                    finally:
                        if policy is not None:
                            policy.detach()
                order = order[1:] + order[:1]
        finally:
            for policy in policies.values():
                policy.close()
    finally:
        holders.stdin.close()
        holders.wait(timeout=120)
        holders.stdout.close()
        benchlib.remove_tree(top)
    summary = {}
    for name, runs in variants.items():
        decisions = [r["decision_ns"] for r in runs if r["decision_ns"] is not None]
        prog = [r["prog_run_ns"] / r["prog_runs"] for r in runs if r["prog_runs"]]
        handler = [r["handler_ns"] for r in runs if r["handler_ns"] is not None]
        summary[name] = {
            "decision_us_median": statistics.median(decisions) / 1e3 if decisions else None,
            "decision_us_min": min(decisions) / 1e3 if decisions else None,
            "decision_us_max": max(decisions) / 1e3 if decisions else None,
            "out_of_memory_us_median": statistics.median(
                r["first_oom"]["out_of_memory"]["ns"] for r in runs) / 1e3,
            "prog_run_us_per_call_median": statistics.median(prog) / 1e3 if prog else None,
            "handler_us_median": statistics.median(handler) / 1e3 if handler else None,
            "rounds_killed": sum(r["killed"] for r in runs), "rounds": len(runs)}
    kernel = summary["kernel"]["decision_us_median"]
    for name in POLICIES:
        mine = summary[name]["decision_us_median"]
        summary[name]["ratio_to_kernel"] = mine / kernel if mine and kernel else None
    return {"leaves": leaves, "holders": int(ready[1]) if len(ready) == 2 else 0,
            "summary": summary, "runs": variants}


def main(argv: list[str] | None = None) -> int:
    args = benchlib.parse_args(__doc__, argv, {"rounds": (11, "OOMs per variant and size")},
                               sizes=SIZES)
    info = benchlib.machine()
    with benchlib.timed_oom_setup(SYSCTLS) as (holder, timing):
        results = [measure(size, args.rounds, holder, timing) for size in args.sizes]
        traced = timing.functions
    lines = [benchlib.describe(info),
             f"time to choose an OOM victim (median of {args.rounds} OOMs, µs; first OOM of each "
             "round; kill and report excluded)",
             f"traced: {', '.join(traced)}",
             f"{'leaves':>7} {'variant':<13} {'decision':>9} {'min':>8} {'max':>8} "
             f"{'ratio':>6} {'oom() total':>11} {'handler':>8} {'prog/call':>9} {'killed':>7}"]

    def cell(value, spec: str) -> str:
        return format(value, spec) if value is not None else "-"

    for r in results:
        for name, s in r["summary"].items():
            lines.append(
                f"{r['leaves']:>7} {name:<13} {cell(s['decision_us_median'], '9.1f')} "
                f"{cell(s['decision_us_min'], '8.1f')} {cell(s['decision_us_max'], '8.1f')} "
                f"{cell(s.get('ratio_to_kernel'), '6.2f')} {s['out_of_memory_us_median']:>11.1f} "
                f"{cell(s['handler_us_median'], '8.1f')} "
                f"{cell(s['prog_run_us_per_call_median'], '9.1f')} "
                f"{s['rounds_killed']:>3}/{s['rounds']:<3}")
    benchlib.emit({"benchmark": "decision_cost", "machine": info, "results": results,
                   "traced": traced, "target_ratio": TARGET_RATIO,
                   "sysctls": SYSCTLS}, args.json, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
