"""The harness's QEMU dies with the harness, however the harness ends.

Each test boots a guest running `sleep 600`, ends the harness with a signal
once the guest is up, and asserts that no QEMU it started is left running.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BOOT_TIMEOUT_S = 300


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (in /proc right now)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def running_qemus(pids: list[int]) -> list[int]:
    """Those of `pids` that are a QEMU still running (not gone, not a zombie)."""
    alive = []
    for pid in pids:
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if comm.startswith("qemu-system") and state != "Z":
            alive.append(pid)
    return alive


@pytest.mark.parametrize("signum,status", [(signal.SIGTERM, 128 + signal.SIGTERM),
                                           (signal.SIGINT, 128 + signal.SIGINT),
                                           (signal.SIGKILL, -signal.SIGKILL)],
                         ids=["SIGTERM", "SIGINT", "SIGKILL"])
def test_a_signal_to_the_harness_ends_its_qemu(vm_kernel: Path, signum: int, status: int) -> None:
    harness = subprocess.Popen(
        [sys.executable, "-m", "bpfoom.testing.vm", "--kernel", str(vm_kernel), "--",
         "sh", "-c", "echo guest-up; sleep 600"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    try:
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        assert harness.stdout is not None
        output = []
        for line in harness.stdout:
            output.append(line)
            if line.strip() == "guest-up" or time.monotonic() > deadline:
                break
        qemus = running_qemus(descendants(harness.pid))
        assert qemus, f"the guest never came up (harness exit {harness.poll()}): {''.join(output)[-3000:]}"
        harness.send_signal(signum)
        assert harness.wait(timeout=60) == status
        deadline = time.monotonic() + 10
        while running_qemus(qemus) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not running_qemus(qemus), f"QEMU {qemus} outlived its harness ({signum.name})"
    finally:
        if harness.poll() is None:
            harness.kill()
            harness.wait()
        harness.stdout.close()
