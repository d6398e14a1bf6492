#!/usr/bin/env python3
"""Stats of every memcg under a root: one BPF iterator pass against reading cgroupfs.

For trees of 10, 100, 1,000 and 5,000 leaf memcgs (in groups of 100, so
there are a few more memcgs than leaves) it times, alternating, the same
snapshot taken two ways: bpfoom.MemcgStatsReader.read() (one cgroup-iterator
pass with the memcg kfuncs; the program loaded once, as a polling daemon
keeps it) and Python walking the tree reading memory.current, memory.stat,
memory.events and memory.pressure of each cgroup.  It also times the one-shot
bpfoom.memcg_stats() (loads the program each call).  Target: at least 10x
at 1,000.  It prints; it asserts nothing.

    python3 -m bpfoom.testing.vm -- .venv/bin/python bench/stats_read.py [--json]

Needs root, cgroup2 with the memory controller, and the memcg kfuncs (the VM).
"""
from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path

import bpfoom

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

SIZES = (10, 100, 1000, 5000)
TARGET_AT_1000 = 10.0


def _pressure(text: str) -> dict:
    found = {}
    for line in text.splitlines():
        kind, *pairs = line.split()
        for pair in pairs:
            key, value = pair.split("=")
            found[f"{kind}_{key}"] = float(value) if "." in value else int(value)
    return found


def _keyed(path: str, keys: tuple[str, ...]) -> dict[str, int]:
    """The ``keys`` of a flat-keyed cgroup file ("name value" lines)."""
    found = {}
    with open(path) as stream:
        for line in stream:
            key, value = line.split()
            if key in keys:
                found[key] = int(value)
    return found


def read_cgroupfs(root: str) -> list[dict]:
    """What memcg_stats returns, the way a Python daemon reads it today."""
    found = []
    pending = [root]
    while pending:
        path = pending.pop()
        with open(f"{path}/memory.current") as stream:
            usage = int(stream.read())
        stat = _keyed(f"{path}/memory.stat", ("anon", "file"))
        events = _keyed(f"{path}/memory.events", ("oom", "oom_kill"))
        with open(f"{path}/memory.pressure") as stream:
            pressure = _pressure(stream.read())
        found.append({"path": path, "usage": usage, **stat, **events, "pressure": pressure})
        with os.scandir(path) as entries:
            pending.extend(entry.path for entry in entries if entry.is_dir(follow_symlinks=False))
    return found


def measure(leaves: int, rounds: int) -> dict:
    top, _ = benchlib.make_tree(f"bpfoom-bench-stats-{os.getpid()}", leaves)
    try:
        with bpfoom.MemcgStatsReader(top, capacity=leaves + leaves // 8 + 64) as reader:
            memcgs = len(reader.read())
            files = len(read_cgroupfs(str(top)))
            times: dict[str, list[float]] = {"bpf": [], "fs": []}
            order = [("bpf", reader.read), ("fs", lambda: read_cgroupfs(str(top)))]
            for _ in range(rounds):  # alternate who goes first: drift hits both
                for side, action in order:
                    times[side].append(benchlib.median_ns(action, 1))
                order.reverse()
        one_shot_ns = benchlib.median_ns(lambda: bpfoom.memcg_stats(top), max(1, rounds // 2))
    finally:
        benchlib.remove_tree(top)
    bpf, fs = statistics.median(times["bpf"]), statistics.median(times["fs"])
    return {"leaves": leaves, "memcgs": memcgs, "memcgs_cgroupfs": files, "rounds": rounds,
            "bpf_read_ms": bpf / 1e6, "cgroupfs_read_ms": fs / 1e6, "ratio": fs / bpf,
            "bpf_one_shot_ms": one_shot_ns / 1e6}


def main(argv: list[str] | None = None) -> int:
    args = benchlib.parse_args(__doc__, argv, {"rounds": (7, "timed snapshots per side and size")},
                               sizes=SIZES)
    info = benchlib.machine()
    results = [measure(size, args.rounds) for size in args.sizes]
    lines = [benchlib.describe(info),
             "snapshot of every memcg under a root (medians; ratio = cgroupfs / BPF)",
             f"{'leaves':>7} {'memcgs':>7} {'cgroupfs ms':>12} {'BPF ms':>9} {'ratio':>7} "
             f"{'one-shot ms':>12}"]
    for r in results:
        lines.append(f"{r['leaves']:>7} {r['memcgs']:>7} {r['cgroupfs_read_ms']:>12.2f} "
                     f"{r['bpf_read_ms']:>9.3f} {r['ratio']:>6.1f}x {r['bpf_one_shot_ms']:>12.1f}")
        if r["memcgs"] != r["memcgs_cgroupfs"]:
            lines.append(f"        (cgroupfs saw {r['memcgs_cgroupfs']} cgroups, BPF {r['memcgs']})")
    at_1000 = [r for r in results if r["leaves"] == 1000]
    if at_1000:
        ratio = at_1000[0]["ratio"]
        lines.append(f"target: >= {TARGET_AT_1000:.0f}x at 1,000 leaves: {ratio:.1f}x "
                     f"({'met' if ratio >= TARGET_AT_1000 else 'NOT met'})")
    benchlib.emit({"benchmark": "stats_read", "machine": info, "results": results,
                   "target_ratio_at_1000": TARGET_AT_1000}, args.json, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
