"""The benchmarks under bench/ still run (at small sizes), so they do not rot.

stats_read.py and decision_cost.py need the bpfoom kernel: on this host they
are only parsed and asked for --help; tests/guest/test_bench_runs.py runs them.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

import facts
from conftest import require

BENCH = facts.REPO / "bench"
SCRIPTS = sorted(path.name for path in BENCH.glob("*.py") if path.name != "benchlib.py")


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=facts.REPO)


@pytest.mark.parametrize("script", SCRIPTS)
def test_each_benchmark_explains_itself(script):
    done = run(str(BENCH / script), "--help")
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout


def test_the_expected_benchmarks_exist():
    assert {"attach_cycle.py", "stats_read.py", "decision_cost.py", "oom_latency.py",
            "event_throughput.py"} <= set(SCRIPTS)


@pytest.mark.usefixtures("tcp_struct_ops")
def test_attach_cycle_runs_small():
    require(subprocess.run(["which", "gcc"], capture_output=True).returncode == 0, "needs gcc")
    done = run(str(BENCH / "attach_cycle.py"), "--cycles", "2", "--rounds", "1",
               "--lookups", "100")
    assert done.returncode == 0, done.stderr
    assert "ratio" in done.stdout and "machine:" in done.stdout


@pytest.mark.usefixtures("bpf_privileges", "clang_toolchain")
def test_event_throughput_runs_small():
    require(subprocess.run(["which", "gcc"], capture_output=True).returncode == 0, "needs gcc")
    done = run(str(BENCH / "event_throughput.py"), "--records", "300", "--rounds", "1", "--json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["all_records_drained"] and document["records_the_ring_refused"] == 0
    assert set(document["ratio_to_c"]) == {"bytes", "decoded", "daemon"}
    assert document["machine"]["cpus"] >= 1
    for side in ("c", "bytes", "decoded", "daemon"):
        assert [r["drained"] for r in document["raw_rounds"][side]] == [300]
