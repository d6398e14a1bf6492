"""`bpfoom explain` where nothing can be explained: one sentence, the right exit status."""
from __future__ import annotations

import subprocess
import sys


def bpfoom(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-P", "-m", "bpfoom", *args], capture_output=True,
                          text=True, timeout=120)


def test_without_an_attached_policy_it_fails_saying_why():
    done = bpfoom("explain")
    assert done.returncode == 1
    assert done.stdout == ""
    message, = done.stderr.splitlines()
    assert message.startswith("bpfoom: [Errno")
    assert "bpf_oom_ops" in message


def test_a_non_positive_count_is_bad_usage():
    done = bpfoom("explain", "--last", "0")
    assert done.returncode == 2
    assert "not a positive number of decisions" in done.stderr
