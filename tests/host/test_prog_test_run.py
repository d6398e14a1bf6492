"""Program.test_run(): a SEC("syscall") program run on demand writes what it was asked to.

The program is bench/event_feed.bpf.c (the event throughput benchmark's
feeder), compiled here with clang-19: run with ctx {count}, it writes
``count`` decision records to its ring buffer and counts them in ``fed``.
"""
from __future__ import annotations

import struct
import subprocess
import sys

import pytest

import bpfoom
import facts

pytestmark = pytest.mark.usefixtures("bpf_privileges", "clang_toolchain")


@pytest.fixture
def feeder(tmp_path):
    sys.path.insert(0, str(facts.REPO / "third_party" / "libbpf"))
    try:
        import prepare
    finally:
        sys.path.pop(0)
    output = tmp_path / "event_feed.bpf.o"
    subprocess.run(["clang-19", "-g", "-O2", "-target", "bpf", "-mcpu=v3", "-Wall", "-Werror",
                    "-I", str(prepare.include_dir()), "-I", bpfoom.get_include(),
                    "-c", str(facts.REPO / "bench" / "event_feed.bpf.c"), "-o", str(output)],
                   check=True)
    with bpfoom.BpfObject.open(output) as obj:
        obj.load()
        yield obj


def test_test_run_runs_the_program_in_the_kernel(feeder):
    feed = feeder.programs["feed"]
    assert feed.type == "syscall"
    assert feed.test_run(struct.pack("<I", 5)) == 0
    assert feeder.bss["fed"] == 5 and feeder.bss["full"] == 0
    events: list[bpfoom.DecisionEvent] = []  # the shipped policies' layout: the same header
    with bpfoom.RingBuffer(feeder.maps["events"],
                           lambda data: events.append(bpfoom.DecisionEvent.from_bytes(data))) as ring:
        assert ring.consume() == 5
    assert [e.victim_cgroup_id for e in events] == [2000, 2001, 2002, 2003, 2004]
    first = events[0]
    assert (first.policy, first.action, first.reason, first.granularity) == \
        ("event_feed", "killed", "largest_leaf", "cgroup")
    assert first.pids == (100, 101, 102) and len(first.considered) == 4
    assert first.excluded["oom_victim"].count == 2


def test_test_run_checks_its_arguments_and_state(feeder, tmp_path):
    with pytest.raises(TypeError):
        feeder.programs["feed"].test_run("5")
    with bpfoom.BpfObject.open(facts.GLOBALS_OBJECT) as obj:
        with pytest.raises(bpfoom.StateError):
            obj.programs["mirror_globals"].test_run()
