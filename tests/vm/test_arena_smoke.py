"""The arena end to end at its smallest: one scenario, two contestants, one run each.

It proves the arena works (the guest boots, the scenario runs, every
measurement comes back, the report is written); it judges no contestant:
that is the benchmark's job (bench/arena/arena.py, bench/README.md).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_one_scenario_two_contestants(vm_kernel: Path, tmp_path: Path) -> None:
    out = tmp_path / "arena"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench/arena/arena.py"), "--scenario", "smoke",
         "--contestant", "kernel", "--contestant", "bpfoom", "--repeats", "1", "--out", str(out)],
        cwd=REPO, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())["smoke"]
    runs = {run["contestant"]: run for run in results["runs"]}
    assert sorted(runs) == ["bpfoom", "kernel"]
    for name, run in runs.items():
        assert "error" not in run, (name, run)
        # Something was killed: the culprit or someone else (processes, not the kernel log).
        assert run["culprit_died"] or run["collateral_count"] > 0, (name, run)
        assert run["psi_some_s"] > 0 and run["pressure"], (name, run)  # stall was measured
        assert run["service"]["requests"] > 0 and run["service"]["dbsize_before"] > 0
    assert results["guest"]["kernel_log_problems"] == []
    table = (out / "arena.md").read_text()
    assert "| kernel |" in table and "| bpfoom |" in table
