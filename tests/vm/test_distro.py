"""The Debian guest boots with systemd as PID 1 on our kernel and runs a command in it.

One boot (about a minute under TCG) checks several facts of the same run.  The
image is built first if the cache has none (mmdebstrap, a few minutes).
"""
from __future__ import annotations

from pathlib import Path

from bpfoom.testing import distro

REPO = Path(__file__).resolve().parents[2]


def test_distro_boots_systemd_whose_units_start_on_demand(vm_kernel: Path) -> None:
    script = (
        "set -e; echo pid1=$(cat /proc/1/comm); "
        "echo at-boot=$(systemctl is-active redis-server.service || true); "
        "systemctl start redis-server.service; "
        "echo started=$(systemctl is-active redis-server.service); "
        "echo redis=$(redis-cli ping); "
        "echo memory-controller=$(cat /sys/fs/cgroup/system.slice/redis-server.service/memory.max); "
        ".venv/bin/python -c 'import bpfoom; print(\"bpfoom\", bpfoom.__version__)'; "
        "echo in-distro-marker > /dev/kmsg; exit 7"
    )
    result = distro.run(script, kernel=vm_kernel, cwd=REPO, memory="1G", timeout=900)
    assert result.returncode == 7, result.output
    assert "pid1=systemd" in result.output
    assert "at-boot=inactive" in result.output  # installed, not started at boot
    assert "started=active" in result.output
    assert "redis=PONG" in result.output
    assert "memory-controller=max" in result.output  # the unit has its own memcg
    assert "bpfoom 0." in result.output  # the checkout works inside
    assert "in-distro-marker" in result.kernel_log
    assert "Linux version 7.2" in result.kernel_log
    assert "redis-server.service" in result.journal  # journald ran and came back
    assert result.kernel_log_problems == []
    assert 0 < result.boot_seconds < 600
