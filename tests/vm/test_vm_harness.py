"""The VM harness reports what happened inside the guest, not what QEMU did.

Each test is one boot (tens of seconds under TCG), so each checks several
facts of the same run.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bpfoom import vm

REPO = Path(__file__).resolve().parents[2]


def test_status_output_and_kernel_log_come_from_the_guest(vm_kernel: Path, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    result = vm.run(
        "uname -r; echo to-stderr >&2; echo bpfoom-harness-marker > /dev/kmsg; "
        "echo $BPFOOM_IN_VM > written-in-guest; echo private > /tmp/bpfoom-guest-only; exit 3",
        kernel=vm_kernel, cwd=shared, timeout=600)
    assert result.returncode == 3
    assert "-bpfoom" in result.output  # the guest's uname, not the host's
    assert "to-stderr" in result.output
    assert "bpfoom-harness-marker" in result.kernel_log
    assert "Linux version 7.2" in result.kernel_log
    assert result.kernel_log_problems == []
    assert (shared / "written-in-guest").read_text().strip() == "1"  # cwd is shared
    assert not Path("/tmp/bpfoom-guest-only").exists()  # the guest's /tmp is its own


def test_guest_has_cgroup2_memory_and_logs_a_memcg_oom(vm_kernel: Path) -> None:
    script = (
        "set -e; grep -qw memory /sys/fs/cgroup/cgroup.controllers; "
        "mkdir /sys/fs/cgroup/oomtest; echo 64M > /sys/fs/cgroup/oomtest/memory.max; "
        "sh -c 'echo $$ > /sys/fs/cgroup/oomtest/cgroup.procs; "
        "exec python3 -c \"import os; hog = os.urandom(1) * (200 << 20)\"' || echo killed=$?; "
        "grep oom_kill /sys/fs/cgroup/oomtest/memory.events"
    )
    result = vm.run(script, kernel=vm_kernel, timeout=600)
    assert result.returncode == 0, result.output
    assert "killed=137" in result.output
    assert "oom_kill 1" in result.output
    assert "Memory cgroup out of memory: Killed process" in result.kernel_log
    assert result.kernel_log_problems == []


def test_shell_entry_point_fails_on_a_kernel_warning(vm_kernel: Path, tmp_path: Path) -> None:
    log = tmp_path / "kernel.log"
    proc = subprocess.run(
        [sys.executable, "-m", "bpfoom.vm", "--kernel", str(vm_kernel), "--kernel-log", str(log),
         "--", "sh", "-c", "echo 'WARNING: CPU: 0 PID: 1 at bpfoom/harness-test' > /dev/kmsg"],
        cwd=REPO, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 1, proc.stderr
    assert "WARNING: CPU: 0 PID: 1 at bpfoom/harness-test" in proc.stderr
    assert vm.kernel_log_problems(log.read_text()) == [
        line for line in log.read_text().splitlines() if "bpfoom/harness-test" in line]
