#!/usr/bin/env python3
"""Decision records decoded per second from a ring buffer: bpfoom against the same ring drained from C.

Builds bench/event_feed.bpf.c (clang-19) and bench/event_throughput.c (gcc,
against the static libbpf the extension links) into build/bench/.  The
feeder is a SEC("syscall") program that, run with BPF_PROG_TEST_RUN, writes
decision records (struct policy_event of policy_event.h, the layout every
shipped policy writes, filled like a typical kill) to its `events` ring as
fast as the kernel can.  Each round fills the ring with --records records,
then drains it, alternating between sides:

* C: ring_buffer__consume(), each record copied out and four fields read;
* bpfoom, bytes: a RingBuffer whose callback only receives each record's bytes;
* bpfoom, decoded: DecisionEvent.from_bytes() with the writer's BTF layout,
  what OomPolicy.events() yields;
* bpfoom, daemon path: decoded, then what the daemon does per decision (one
  JSON log line, written to /dev/null here, and its metrics counters).

Fill time (the kernel writing the records, from C and from Python) is
printed too.  It prints; it asserts nothing.

    python3 bench/event_throughput.py [--records 20000] [--rounds 5] [--json]

Needs root (BPF_PROG_TEST_RUN of a syscall program needs CAP_BPF) and a
kernel with ring buffers and bpf_for (6.4 or later).
"""
from __future__ import annotations

import json
import os
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

import bpfoom
from bpfoom.daemon.log import Log
from bpfoom.daemon.metrics import Metrics
from bpfoom.oom.events import DecisionEvent, decision_layout

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

FEED_SOURCE = benchlib.HERE / "event_feed.bpf.c"
FEED_OBJECT = benchlib.BUILD / "event_feed.bpf.o"
C_SOURCE = benchlib.HERE / "event_throughput.c"
C_BINARY = benchlib.BUILD / "event_throughput"
INCLUDE = benchlib.REPO / "bpfoom" / "oom" / "include"
PER_RUN = 512  # records per BPF_PROG_TEST_RUN, as the C side does
RECORD_SLOT = 768  # a policy_event (736 bytes) and its ring header, rounded up
SIDES = ("c", "bytes", "decoded", "daemon")


def prepare():
    sys.path.insert(0, str(benchlib.REPO / "third_party" / "libbpf"))
    try:
        import prepare as module
    finally:
        sys.path.pop(0)
    return module


def build() -> None:
    """The feeder object (clang) and the C reference (gcc), against the extension's libbpf."""
    libbpf = prepare()
    benchlib.BUILD.mkdir(parents=True, exist_ok=True)
    subprocess.run([os.environ.get("BPFOOM_CLANG", "clang-19"), "-g", "-O2", "-target", "bpf",
                    "-mcpu=v3", "-Wall", "-Werror", "-I", str(libbpf.include_dir()),
                    "-I", str(INCLUDE), "-c", str(FEED_SOURCE), "-o", str(FEED_OBJECT)],
                   check=True)
    subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-I", str(libbpf.include_dir()),
                    str(C_SOURCE), str(libbpf.static_library()), "-lelf", "-lz",
                    "-o", str(C_BINARY)], check=True)


def ring_bytes(records: int) -> int:
    """A power of two (what the kernel requires) that holds ``records`` records."""
    size = 1 << 18
    while size < records * RECORD_SLOT:
        size <<= 1
    return size


def run_c(records: int, ring: int) -> dict:
    """One C round: {"drained", "fill_ns", "drain_ns"}."""
    done = subprocess.run([str(C_BINARY), str(FEED_OBJECT), str(ring), str(records), "1"],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)["rounds"][0]


class PythonSide:
    """The feeder loaded through bpfoom and one RingBuffer per way of consuming."""

    def __init__(self, ring: int) -> None:
        self.obj = bpfoom.BpfObject.open(FEED_OBJECT)
        self.obj.maps["events"].max_entries = ring
        self.obj.load()
        self.feed = self.obj.programs["feed"]
        self.layout = decision_layout(self.obj.btf, "event_feed")
        self.count = 0
        self.log = Log(open(os.devnull, "w"), True)
        self.metrics = Metrics()
        self.callbacks = {"bytes": self._bytes, "decoded": self._decoded,
                          "daemon": self._daemon}
        self.ring = bpfoom.RingBuffer(self.obj.maps["events"], self._dispatch)
        self.callback = self._bytes

    def _dispatch(self, data: bytes) -> None:
        self.callback(data)

    def _bytes(self, data: bytes) -> None:
        self.count += 1

    def _decoded(self, data: bytes) -> None:
        DecisionEvent.from_bytes(data, self.layout)
        self.count += 1

    def _daemon(self, data: bytes) -> None:
        # Daemon._on_decision: the event's JSON form, logged as one line, then counted.
        event = DecisionEvent.from_bytes(data, self.layout)
        fields = event.to_json()
        self.log("info", "decision", id="bench", **fields)
        self.metrics.observe(event, fields)
        self.count += 1

    def fill(self, records: int) -> int:
        """Nanoseconds to have the kernel write ``records`` records."""
        start = time.perf_counter_ns()
        for done in range(0, records, PER_RUN):
            self.feed.test_run(struct.pack("<I", min(PER_RUN, records - done)))
        return time.perf_counter_ns() - start

    def round(self, side: str, records: int) -> dict:
        """Fill, then drain through ``side``'s callback: {"drained", "fill_ns", "drain_ns"}."""
        fill_ns = self.fill(records)
        self.callback, self.count = self.callbacks[side], 0
        start = time.perf_counter_ns()
        self.ring.consume()
        drain_ns = time.perf_counter_ns() - start
        return {"drained": self.count, "fill_ns": fill_ns, "drain_ns": drain_ns}

    def close(self) -> None:
        self.ring.close()
        self.log.close()
        self.obj.close()


def main(argv: list[str] | None = None) -> int:
    args = benchlib.parse_args(__doc__, argv, {
        "records": (20_000, "records per round (the ring is sized to hold them)"),
        "rounds": (5, "alternating rounds of each side"),
    })
    info = benchlib.machine()
    build()
    ring = ring_bytes(args.records)
    py = PythonSide(ring)
    try:
        run_c(min(args.records, 1000), ring)  # warm both sides
        for side in SIDES[1:]:
            py.round(side, min(args.records, 1000))
        rounds: dict[str, list[dict]] = {side: [] for side in SIDES}
        for number in range(args.rounds):
            # Rotate who goes first, so drift in the machine's load hits every side.
            order = SIDES[number % len(SIDES):] + SIDES[:number % len(SIDES)]
            for side in order:
                rounds[side].append(run_c(args.records, ring) if side == "c"
                                    else py.round(side, args.records))
        dropped = py.obj.bss["full"]
    finally:
        py.close()

    def per_record(side: str, key: str) -> float:
        """Median over rounds of ns per record drained (or filled)."""
        return statistics.median(r[key] / max(r["drained"], 1) for r in rounds[side])

    drain = {side: per_record(side, "drain_ns") for side in SIDES}
    fill = {side: per_record(side, "fill_ns") for side in SIDES}
    complete = all(r["drained"] == args.records for side in SIDES for r in rounds[side])
    document = {
        "benchmark": "event_throughput", "machine": info, "records": args.records,
        "rounds": args.rounds, "ring_bytes": ring, "all_records_drained": complete,
        "records_the_ring_refused": dropped,
        "drain_ns_per_record": {side: round(value, 1) for side, value in drain.items()},
        "records_per_second": {side: round(1e9 / value) for side, value in drain.items()},
        "ratio_to_c": {side: round(drain[side] / drain["c"], 2) for side in SIDES[1:]},
        "fill_ns_per_record": {"c": round(fill["c"], 1), "python": round(fill["bytes"], 1)},
        "daemon_ns_per_event": round(drain["daemon"] - drain["decoded"], 1),
        "raw_rounds": rounds,
    }
    labels = {"c": "C ring_buffer__consume, record copied out",
              "bytes": "bpfoom RingBuffer, bytes only",
              "decoded": "bpfoom DecisionEvent.from_bytes",
              "daemon": "bpfoom decoded + daemon log line + metrics"}
    lines = [benchlib.describe(info),
             f"{args.records} decision records per round, {args.rounds} rounds per side "
             f"(ring {ring >> 20} MiB; medians of ns per record)"]
    for side in SIDES:
        ratio = "" if side == "c" else f", ratio {drain[side] / drain['c']:.1f}"
        lines.append(f"  {labels[side]:<46}: {drain[side]:8.0f} ns/record, "
                     f"{1e9 / drain[side]:10,.0f} records/s{ratio}")
    lines.append(f"  the kernel writing them (BPF_PROG_TEST_RUN of {PER_RUN} per run): "
                 f"{fill['c']:.0f} ns/record from C, {fill['bytes']:.0f} from Python")
    lines.append(f"  the daemon's own work per decision event: "
                 f"{drain['daemon'] - drain['decoded']:.0f} ns")
    if not complete or dropped:
        lines.append(f"  WARNING: not every record arrived (ring refused {dropped})")
    benchlib.emit(document, args.json, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
