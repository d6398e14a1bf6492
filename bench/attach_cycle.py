#!/usr/bin/env python3
"""How much bpfoom adds over driving the same patched libbpf from C.

Builds bench/attach_cycle.c with gcc against the static libbpf the extension
links (third_party/libbpf/prepare.py), then in one run and alternating
rounds times N open+load+attach+detach+close cycles of the tcp_cc example
through C and through bpfoom, and per-call map lookups (C
bpf_map_lookup_elem vs bpfoom Map[key]), and, per element, reading the whole
map with lookup_batch() and items().  It prints; it asserts nothing.

    python3 bench/attach_cycle.py [--cycles 200] [--rounds 5] [--lookups 200000] [--json]

Needs root and a kernel with tcp_congestion_ops struct_ops.
"""
from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import bpfoom

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
C_SOURCE = REPO / "bench" / "attach_cycle.c"
C_BINARY = REPO / "build" / "bench" / "attach_cycle"
CC_OBJECT = REPO / "examples" / "tcp_cc" / "tcp_cc.bpf.o"
CC_MAP = "bpfoom_demo"
MAP_OBJECT = REPO / "tests" / "bpf" / "globals.bpf.o"
MAP_NAME = "counts"
TARGET_RATIO = 1.10
TARGET_CPU_RATIO = 1.05
LOOKUP_TARGET = 2.0


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


def bpfoom_lookups(lookups: int) -> tuple[int, float, float]:
    """ns for `lookups` Map[key] reads of one element; ns per element of lookup_batch() and
    of items() over the map filled (64 elements)."""
    with bpfoom.BpfObject.open(MAP_OBJECT) as obj:
        obj.load()
        counts = obj.maps[MAP_NAME]
        counts[1] = 42
        start = time.perf_counter_ns()
        for _ in range(lookups):
            counts[1]
        single = time.perf_counter_ns() - start
        counts.update_batch({key: key for key in range(counts.max_entries)})
        passes = max(lookups // counts.max_entries // 10, 1)
        start = time.perf_counter_ns()
        for _ in range(passes):
            counts.lookup_batch()
        batch = (time.perf_counter_ns() - start) / passes / counts.max_entries
        start = time.perf_counter_ns()
        for _ in range(passes):
            counts.items()
        items = (time.perf_counter_ns() - start) / passes / counts.max_entries
        return single, batch, items


def main(argv: list[str] | None = None) -> int:
    args = benchlib.parse_args(__doc__, argv, {
        "cycles": (200, "attach cycles per round and side"),
        "rounds": (5, "alternating C/bpfoom rounds"),
        "lookups": (200_000, "map lookups per round and side"),
    })
    info = benchlib.machine()
    binary = build_c_baseline()
    run_c(binary, 10, 1000)  # warm both sides: page cache, kernel BTF, allocators
    bpfoom_cycles(10)

    c_median, py_median, c_lookup, py_lookup, py_batch, py_items = [], [], [], [], [], []
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
        single, batch, items = bpfoom_lookups(args.lookups)
        py_lookup.append(single / args.lookups)
        py_batch.append(batch)
        py_items.append(items)

    cycles = args.rounds * args.cycles
    rows = (("median cycle (median of rounds)", "median_cycle", statistics.median(c_median),
             statistics.median(py_median), TARGET_RATIO),
            ("mean cycle (all rounds)", "mean_cycle", c_total / cycles, py_total / cycles,
             TARGET_RATIO),
            ("CPU time per cycle", "cpu_per_cycle", c_cpu / cycles, py_cpu / cycles,
             TARGET_CPU_RATIO))
    lines = [benchlib.describe(info),
             f"open+load+attach+detach+close of {CC_OBJECT.name} ({args.rounds} rounds x "
             f"{args.cycles} cycles)"]
    document: dict = {"benchmark": "attach_cycle", "machine": info, "cycles": args.cycles,
                      "rounds": args.rounds, "lookups": args.lookups}
    for label, key, c_ns, py_ns, target in rows:
        ratio = py_ns / c_ns
        verdict = "within" if ratio <= target else "ABOVE"
        lines.append(f"  {label}: C {c_ns / 1000:9.1f} us, bpfoom {py_ns / 1000:9.1f} us, "
                     f"ratio {ratio:.3f} ({verdict} the {target:.2f} target)")
        document[key] = {"c_ns": round(c_ns), "bpfoom_ns": round(py_ns),
                         "ratio": round(ratio, 3), "target": target}
    c_ns, py_ns = statistics.median(c_lookup), statistics.median(py_lookup)
    batch_ns, items_ns = statistics.median(py_batch), statistics.median(py_items)
    lines += [f"map lookup of one u32->u64 element ({args.lookups} per round, medians)",
              f"  C bpf_map_lookup_elem    : {c_ns:9.0f} ns/call",
              f"  bpfoom Map[key]          : {py_ns:9.0f} ns/call",
              f"  overhead                 : {py_ns - c_ns:9.0f} ns/call (ratio {py_ns / c_ns:.2f}, "
              f"target {LOOKUP_TARGET:.0f})",
              "the whole map (64 elements), per element",
              f"  bpfoom lookup_batch()    : {batch_ns:9.0f} ns/element (ratio {batch_ns / c_ns:.2f} "
              "to one C lookup)",
              f"  bpfoom items()           : {items_ns:9.0f} ns/element"]
    document["lookup"] = {"c_ns": round(c_ns), "bpfoom_ns": round(py_ns),
                          "ratio": round(py_ns / c_ns, 2), "target": LOOKUP_TARGET,
                          "lookup_batch_ns_per_element": round(batch_ns),
                          "items_ns_per_element": round(items_ns)}
    benchlib.emit(document, args.json, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
