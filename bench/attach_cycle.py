#!/usr/bin/env python3
"""How much bpfoom adds over driving the same patched libbpf from C.

Builds bench/attach_cycle.c with gcc against the static libbpf the extension
links (third_party/libbpf/prepare.py), then in one run and alternating
rounds times N open+load+attach+detach+close cycles of the tcp_cc example
through C and through bpfoom, and per-call map lookups (C
bpf_map_lookup_elem vs bpfoom Map[key]).  It prints; it asserts nothing.

    python3 bench/attach_cycle.py [--cycles 200] [--rounds 5] [--lookups 200000]

Needs root and a kernel with tcp_congestion_ops struct_ops.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import bpfoom

REPO = Path(__file__).resolve().parent.parent
C_SOURCE = REPO / "bench" / "attach_cycle.c"
C_BINARY = REPO / "build" / "bench" / "attach_cycle"
CC_OBJECT = REPO / "examples" / "tcp_cc" / "tcp_cc.bpf.o"
CC_MAP = "bpfoom_demo"
MAP_OBJECT = REPO / "tests" / "bpf" / "globals.bpf.o"
MAP_NAME = "counts"
TARGET_RATIO = 1.10


def build_c_baseline() -> Path:
    """Compile the C side against the same static libbpf and headers the extension uses."""
    sys.path.insert(0, str(REPO / "third_party" / "libbpf"))
    try:
        import prepare
    finally:
        sys.path.pop(0)
    library = prepare.static_library()
    C_BINARY.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["gcc", "-O2", "-Wall", "-Werror", "-I", str(prepare.include_dir()),
         str(C_SOURCE), str(library), "-lelf", "-lz", "-o", str(C_BINARY)],
        check=True,
    )
    return C_BINARY


def run_c(binary: Path, cycles: int, lookups: int) -> dict:
    done = subprocess.run(
        [str(binary), str(CC_OBJECT), CC_MAP, str(cycles), str(MAP_OBJECT), MAP_NAME, str(lookups)],
        capture_output=True, text=True, check=True,
    )
    return json.loads(done.stdout)


def cpu_ns() -> int:
    """User + system CPU time of this process (see cpu_ns() in attach_cycle.c)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return int((usage.ru_utime + usage.ru_stime) * 1e9)


def bpfoom_cycles(cycles: int) -> tuple[float, int, int]:
    """(median wall, total wall, total CPU) ns of `cycles` open+load+attach+detach+close through bpfoom."""
    durations = []
    cpu_start = cpu_ns()
    for _ in range(cycles):
        start = time.perf_counter_ns()
        obj = bpfoom.BpfObject.open(CC_OBJECT)
        obj.load()
        link = obj.struct_ops[CC_MAP].attach()
        link.detach()
        link.close()
        obj.close()
        durations.append(time.perf_counter_ns() - start)
    return statistics.median(durations), sum(durations), cpu_ns() - cpu_start


def bpfoom_lookups(lookups: int) -> int:
    """Nanoseconds for `lookups` Map[key] reads of one element through bpfoom."""
    with bpfoom.BpfObject.open(MAP_OBJECT) as obj:
        obj.load()
        counts = obj.maps[MAP_NAME]
        counts[1] = 42
        start = time.perf_counter_ns()
        for _ in range(lookups):
            counts[1]
        return time.perf_counter_ns() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=200, help="attach cycles per round and side")
    parser.add_argument("--rounds", type=int, default=5, help="alternating C/bpfoom rounds")
    parser.add_argument("--lookups", type=int, default=200_000, help="map lookups per round and side")
    args = parser.parse_args(argv)

    binary = build_c_baseline()
    run_c(binary, 10, 1000)  # warm both sides: page cache, kernel BTF, allocators
    bpfoom_cycles(10)

    c_median, py_median, c_lookup, py_lookup = [], [], [], []
    c_total = py_total = c_cpu = py_cpu = 0
    for round_number in range(args.rounds):
        # Swap who goes first each round, so drift in the machine's load hits both sides.
        if round_number % 2:
            median, total, cpu = bpfoom_cycles(args.cycles)
            c = run_c(binary, args.cycles, args.lookups)
        else:
            c = run_c(binary, args.cycles, args.lookups)
            median, total, cpu = bpfoom_cycles(args.cycles)
        c_median.append(c["median_cycle_ns"])
        c_total += c["total_cycle_ns"]
        c_cpu += c["cycles_cpu_ns"]
        c_lookup.append(c["lookup_ns"] / args.lookups)
        py_median.append(median)
        py_total += total
        py_cpu += cpu
        py_lookup.append(bpfoom_lookups(args.lookups) / args.lookups)

    cycles = args.rounds * args.cycles
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"machine: {os.cpu_count()} CPUs, load average {load} (other work skews both sides unevenly)")
    print(f"open+load+attach+detach+close of {CC_OBJECT.name} ({args.rounds} rounds x {args.cycles} cycles)")
    rows = (("median cycle (median of rounds)", statistics.median(c_median), statistics.median(py_median)),
            ("mean cycle (all rounds)", c_total / cycles, py_total / cycles),
            ("CPU time per cycle", c_cpu / cycles, py_cpu / cycles))
    for label, c_ns, py_ns in rows:
        ratio = py_ns / c_ns
        verdict = "within" if ratio <= TARGET_RATIO else "ABOVE"
        print(f"  {label}: C {c_ns / 1000:9.1f} us, bpfoom {py_ns / 1000:9.1f} us, "
              f"ratio {ratio:.3f} ({verdict} the {TARGET_RATIO:.2f} target)")
    c_ns, py_ns = statistics.median(c_lookup), statistics.median(py_lookup)
    print(f"map lookup of one u32->u64 element ({args.lookups} per round, medians)")
    print(f"  C bpf_map_lookup_elem    : {c_ns:9.0f} ns/call")
    print(f"  bpfoom Map[key]          : {py_ns:9.0f} ns/call")
    print(f"  overhead                 : {py_ns - c_ns:9.0f} ns/call (ratio {py_ns / c_ns:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
