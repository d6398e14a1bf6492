"""The systemd unit example: systemd itself accepts every line, and it grants only what bpfoom needs."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import facts

UNIT = facts.REPO / "examples" / "systemd" / "bpfoom.service"


def unit_settings() -> dict[str, str]:
    settings = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";")):
            key, _, value = line.partition("=")
            settings[key.strip()] = value.strip()
    return settings


def test_systemd_accepts_the_unit(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("needs systemd-analyze (Debian's systemd package)")
    console = Path(sys.executable).with_name("bpfoom")
    unit = tmp_path / "bpfoom.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/bpfoom", str(console)))
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "bpfoom.service" not in done.stderr, done.stderr  # no unknown keys or bad values


def test_the_unit_is_notify_and_hardened():
    settings = unit_settings()
    assert settings["Type"] == "notify"
    assert settings["ExecReload"].endswith("kill -HUP $MAINPID")
    assert set(settings["CapabilityBoundingSet"].split()) == {"CAP_BPF", "CAP_SYS_ADMIN", "CAP_PERFMON"}
    assert settings["NoNewPrivileges"] == "yes"
    assert settings["ProtectSystem"] == "strict"
    assert settings["ReadWritePaths"] == "/sys/fs/bpf"
