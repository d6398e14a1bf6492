"""The kernel benchmarks run in the VM at small sizes and report what they measured."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from oomtest import REPO


def bench(script: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, str(REPO / "bench" / script), *args, "--json"],
                          capture_output=True, text=True, timeout=900, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_stats_read_runs_small():
    document = bench("stats_read.py", "--sizes", "10", "--rounds", "2")
    assert document["machine"]["in_bpfoom_vm"] is True
    (result,) = document["results"]
    assert result["memcgs"] == result["memcgs_cgroupfs"] == 12  # top, one group, 10 leaves
    assert result["bpf_read_ms"] > 0 and result["cgroupfs_read_ms"] > 0
    # the figures are printed rounded; the ratio is computed before rounding
    assert result["ratio"] == pytest.approx(result["cgroupfs_read_ms"] / result["bpf_read_ms"], rel=1e-3)


def test_decision_cost_runs_small():
    document = bench("decision_cost.py", "--sizes", "10", "--rounds", "1")
    (result,) = document["results"]
    assert result["holders"] == 10
    assert set(result["summary"]) == {"kernel", "largest_leaf", "priority", "largest_task"}
    for name, summary in result["summary"].items():
        assert summary["rounds_killed"] == 1, f"{name}: the growing task was not OOM-killed"
        if name != "kernel":
            assert summary["decision_us_median"] > 0, name
            assert summary["prog_run_us_per_call_median"] > 0, name


def test_oom_latency_runs_small():
    document = bench("oom_latency.py", "--runs", "1", "--oomd-runs", "0")
    assert set(document["results"]) == {"kernel", "largest_leaf", "priority"}
    for name, result in document["results"].items():
        assert result["grower_survived"] == 1, f"{name}: the allocating task was killed"
        assert result["victim_marked"] == 1, f"{name}: the task marked is not the one the OOM killed"
        signalled, marked = result["to_signalled_us"]["median"], result["to_marked_us"]["median"]
        exited, relief = result["to_exited_us"]["median"], result["to_relief_us"]["median"]
        # the kernel marks the victim after its SIGKILL: it may exit before it is marked
        assert 0 < signalled <= min(marked, exited) and marked < relief, (name, result)
    pressure = document["pressure"]
    assert pressure["poller_oomd_defaults"]["runs"] == 0
    for name in ("psi_guard", "poller_10pct"):
        result = pressure[name]
        assert (result["runs"], result["killed"], result["memory_max_hit"]) == (1, 1, 0), name
        assert result["to_exited_us"]["median"] > 0, name
    guard = pressure["psi_guard"]
    assert 0 < guard["to_signalled_us"]["median"] <= guard["to_exited_us"]["median"]  # OOM kill
    assert guard["to_marked_us"]["n"] == 1
    assert pressure["poller_10pct"]["to_marked_us"]["n"] == 0  # killed from user space
    assert pressure["poller_10pct"]["to_signalled_us"]["n"] == 0
