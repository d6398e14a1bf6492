"""What the benchmarks share: the machine's description, cgroup trees, output.

Benchmarks print the reference measured in the same run and the ratio, state
the machine, and with ``--json`` write one JSON document (and nothing else)
to stdout so that a later run can be compared.  They assert nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import bpfoom

CGROUP_ROOT = Path("/sys/fs/cgroup")
HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BUILD = REPO / "build" / "bench"
# oom_timing.bpf.c's functions, in the order of its arrays.
FUNCTIONS = ("out_of_memory", "bpf_handle_oom", "oom_kill_process", "bpf_oom_kill_process")


def machine() -> dict:
    """Cores, load, kernel and CPU model: what the figures depend on."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    in_vm = os.environ.get("BPFOOM_IN_VM") == "1"
    return {
        "cpus": os.cpu_count(), "load_average": [round(v, 2) for v in os.getloadavg()],
        "kernel": platform.release(), "cpu_model": model, "in_bpfoom_vm": in_vm,
        "note": ("inside the bpfoom VM (QEMU; under TCG on hosts without nested KVM, which "
                 "makes kernel work several times slower than on hardware)" if in_vm else
                 "on the host"),
    }


def describe(info: dict) -> str:
    load = ", ".join(f"{v:.2f}" for v in info["load_average"])
    return (f"machine: {info['cpus']} CPUs ({info['cpu_model']}), load average {load}, "
            f"kernel {info['kernel']}, {info['note']}")


def median_ns(action: Callable[[], object], rounds: int) -> float:
    """Median wall time of ``rounds`` calls of ``action``, in ns."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        action()
        times.append(time.perf_counter_ns() - start)
    return statistics.median(times)


def make_tree(name: str, leaves: int, fanout: int = 100) -> tuple[Path, list[Path]]:
    """/sys/fs/cgroup/<name>/gNNN/cNNN: ``leaves`` leaf memcgs, ``fanout`` per group.

    Every level enables +memory for the next, so each cgroup has its own memcg.
    Returns the top and the leaves.
    """
    top = CGROUP_ROOT / name
    top.mkdir()
    (top / "cgroup.subtree_control").write_text("+memory")
    made: list[Path] = []
    groups = (leaves + fanout - 1) // fanout
    for g in range(groups):
        group = top / f"g{g:03d}"
        group.mkdir()
        (group / "cgroup.subtree_control").write_text("+memory")
        for c in range(min(fanout, leaves - g * fanout)):
            leaf = group / f"c{c:03d}"
            leaf.mkdir()
            swap = leaf / "memory.swap.max"
            if swap.exists():
                swap.write_text("0")
            made.append(leaf)
    return top, made


def remove_tree(top: Path) -> None:
    """Kill what runs in the tree, then remove it bottom-up."""
    if not top.exists():
        return
    try:
        (top / "cgroup.kill").write_text("1")
    except OSError:
        pass
    for directory, _subdirs, _files in sorted(os.walk(top), key=lambda e: -e[0].count("/")):
        for _ in range(200):
            try:
                os.rmdir(directory)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.05)


def parse_args(doc: str, argv: list[str] | None, counts: Mapping[str, tuple[int, str]],
               sizes: Sequence[int] | None = None) -> argparse.Namespace:
    """A benchmark's command line: ``--sizes`` (leaf memcg counts, parsed into a list of ints;
    only given ``sizes``, the default), one ``--NAME N`` per entry of ``counts`` (name ->
    (default, help)), and ``--json`` (see :func:`emit`)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    if sizes is not None:
        parser.add_argument("--sizes", default=",".join(map(str, sizes)),
                            help="leaf memcg counts, comma-separated (default %(default)s)")
    for name, (default, help_text) in counts.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=default, help=help_text)
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = parser.parse_args(argv)
    if sizes is not None:
        args.sizes = [int(size) for size in args.sizes.split(",")]
    return args


def emit(document: dict, as_json: bool, lines: list[str]) -> None:
    """The JSON document alone with --json, else the human-readable lines."""
    if as_json:
        json.dump(document, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print("\n".join(lines))


def build_helpers() -> tuple[Path, Path]:
    """The holder (gcc) and the fentry/fexit timing object (clang), built for this run."""
    sys.path.insert(0, str(REPO / "third_party" / "libbpf"))
    try:
        import prepare
    finally:
        sys.path.pop(0)
    BUILD.mkdir(parents=True, exist_ok=True)
    holder, timing = BUILD / "holder", BUILD / "oom_timing.bpf.o"
    subprocess.run(["gcc", "-O2", "-Wall", "-Werror", str(HERE / "holder.c"), "-o", str(holder)],
                   check=True)
    subprocess.run([os.environ.get("BPFOOM_CLANG", "clang-19"), "-g", "-O2", "-target", "bpf",
                    "-mcpu=v3", "-Wall", "-Werror", "-I", str(prepare.include_dir()),
                    "-c", str(HERE / "oom_timing.bpf.c"), "-o", str(timing)], check=True)
    return holder, timing


class OomTiming:
    """oom_timing.bpf.o's programs, attached where this kernel has the function."""

    def __init__(self, path: Path) -> None:
        present = bpfoom.Features(kfuncs=FUNCTIONS)
        self.functions = [f for f in FUNCTIONS if present[f"kfunc:{f}"].supported]
        self.obj = bpfoom.BpfObject.open(path)
        for program in self.obj.programs.values():
            kind, target = program.section.split("/", 1)
            program.autoload = kind == "tp_btf" or target in self.functions
        self.obj.load()
        self.links = [p.attach() for p in self.obj.programs.values() if p.autoload]

    def reset(self) -> None:
        for name in ("ooms", "first_ns", "first_calls", "started", "first_oom_at",
                     "victim_signalled_at", "victim_marked_at", "victim_exited_at", "victim_pid",
                     "marked_pid"):
            current = self.obj.bss[name]
            self.obj.bss[name] = [0] * len(current) if isinstance(current, list) else 0

    def watch(self, pid: int) -> None:
        """Stamp ``pid``'s exit even if no OOM kills it (a kill from user space); after reset()."""
        self.obj.bss["victim_pid"] = pid

    def first_oom(self) -> dict[str, dict]:
        """Per function: ns and calls inside the round's first OOM (None: not traced)."""
        ns, calls = self.obj.bss["first_ns"], self.obj.bss["first_calls"]
        return {f: ({"ns": ns[i], "calls": calls[i]} if f in self.functions else None)
                for i, f in enumerate(FUNCTIONS)} | {"ooms": self.obj.bss["ooms"]}

    def stamps(self) -> dict[str, int]:
        """CLOCK_MONOTONIC ns of the first OOM, its victim's SIGKILL, marking and exit (0: not
        seen), the victim's pid (the OOM's SIGKILL, or watched) and the pid mark_victim named."""
        return {name: self.obj.bss[name] for name in
                ("first_oom_at", "victim_signalled_at", "victim_marked_at", "victim_exited_at",
                 "victim_pid", "marked_pid")}

    def close(self) -> None:
        for link in self.links:
            link.close()
        self.obj.close()


@contextmanager
def timed_oom_setup(sysctls: Mapping[str, str]) -> Iterator[tuple[Path, "OomTiming"]]:
    """The built holder and an attached OomTiming, with ``sysctls`` set; all undone after."""
    holder, timing_object = build_helpers()
    saved = {name: Path(f"/proc/sys/{name}").read_text().strip() for name in sysctls}
    for name, value in sysctls.items():
        Path(f"/proc/sys/{name}").write_text(value)
    try:
        timing = OomTiming(timing_object)
        try:
            yield holder, timing
        finally:
            timing.close()
    finally:
        for name, value in saved.items():
            Path(f"/proc/sys/{name}").write_text(value)
