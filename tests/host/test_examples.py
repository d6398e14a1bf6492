"""The examples run as documented and leave the kernel as they found it."""
from __future__ import annotations

import subprocess
import sys

import pytest

import facts

DEMO = facts.REPO / "examples" / "tcp_cc" / "demo.py"


@pytest.mark.usefixtures("tcp_struct_ops")
def test_tcp_cc_demo_registers_uses_and_removes_its_congestion_control():
    name = facts.unique_cc_name()
    done = subprocess.run([sys.executable, "-P", str(DEMO), "--name", name, "--min-ssthresh", "6"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    available = next(line for line in lines if line.startswith("available congestion controls:"))
    assert name in available.split()
    assert "min_ssthresh=6" in done.stdout
    assert f"a loopback connection uses: {name}" in lines
    initialised = next(line for line in lines if line.startswith("connections initialised"))
    assert int(initialised.rsplit(":", 1)[1]) >= 1
    assert name not in lines[-1].split()
    assert name not in facts.available_congestion_control()
