"""The README's main job: examples/oom_demo.py runs a real OOM decided by largest_leaf."""
from __future__ import annotations

import subprocess
import sys

import bpfoom
from oomtest import await_oom_report_window
from oomtest import REPO


def test_the_demo_shows_the_policy_deciding_a_real_oom():
    await_oom_report_window()  # the report lines read below are rate-limited
    done = subprocess.run([sys.executable, "-P", str(REPO / "examples" / "oom_demo.py")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "the policy decided: kill every task of jobs/render (reason largest_leaf" in out
    assert "oom_policy=largest_leaf" in out
    assert "as expected: largest_leaf killed jobs/render" in out
    assert "removed /sys/fs/cgroup/bpfoom-demo-" in out
    assert not [item for item in bpfoom.attached() if item.policy_name == "largest_leaf"]
