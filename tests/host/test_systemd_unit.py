"""The systemd unit example: systemd itself accepts every line, and it grants only what bpfoom needs.

The unit is written for systemd 254+ (Type=notify-reload, RestartSteps=);
on an older systemd, what it ignores must be exactly those settings, and the
documented fallback drop-in (systemd-252.conf) must make a unit it accepts.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


import facts
from conftest import require

UNIT = facts.REPO / "examples" / "systemd" / "bpfoom.service"
DROP_IN = facts.REPO / "examples" / "systemd" / "bpfoom.service.d" / "local.conf"
OLD_SYSTEMD = facts.REPO / "examples" / "systemd" / "bpfoom.service.d" / "systemd-252.conf"
# What systemd before 253/254 says about the newer settings, and nothing else.
NEWER_SETTINGS = ("Failed to parse service type, ignoring: notify-reload",
                  "Unknown key 'RestartSteps'", "Unknown key 'RestartMaxDelaySec'")


def settings_of(path) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def unit_settings() -> dict[str, str]:
    return {key: values[-1] for key, values in settings_of(UNIT).items()}


def systemd_version() -> int:
    done = subprocess.run(["systemd-analyze", "--version"], capture_output=True, text=True,
                          timeout=60)
    return int(done.stdout.split()[1])


def verify(tmp_path, *drop_ins) -> subprocess.CompletedProcess:
    """systemd-analyze verify of the unit with ``drop_ins`` beside it (the virtualenv's bpfoom)."""
    console = Path(sys.executable).with_name("bpfoom")
    unit = tmp_path / "bpfoom.service"
    unit.write_text(UNIT.read_text())
    (tmp_path / "bpfoom.service.d").mkdir()
    for drop_in in drop_ins:
        (tmp_path / "bpfoom.service.d" / drop_in.name).write_text(
            drop_in.read_text().replace("/opt/bpfoom/bin/bpfoom", str(console)))
    return subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True, timeout=60)


def test_systemd_accepts_the_unit_with_the_drop_in(tmp_path):
    """The unit names `bpfoom` bare (systemd's search path); the drop-in points it at this
    virtualenv, which verify then finds: drop-ins beside the unit are applied."""
    if shutil.which("systemd-analyze") is None:
        require(False, "needs systemd-analyze (Debian's systemd package)")
    old = systemd_version() < 254
    done = verify(tmp_path, DROP_IN, *([OLD_SYSTEMD] if old else []))
    assert done.returncode == 0, done.stderr
    complaints = [line for line in done.stderr.splitlines() if "bpfoom.service" in line]
    if old:  # only the settings this systemd is too old for, each ignored
        assert len(complaints) == len(NEWER_SETTINGS), complaints
        assert all(any(known in line for known in NEWER_SETTINGS) for line in complaints)
    else:
        assert complaints == [], done.stderr  # no unknown keys or bad values


def test_the_unit_hard_codes_no_install_directory():
    commands = [line.partition("=")[2].split()[0] for line in UNIT.read_text().splitlines()
                if line.startswith("Exec") and line.partition("=")[2]]
    assert commands and set(commands) == {"bpfoom"}, commands
    assert "${BPFOOM_CONFIG}" in unit_settings()["ExecStart"]


def test_the_unit_is_notify_reload_backs_off_and_is_hardened():
    settings = unit_settings()
    assert settings["Type"] == "notify-reload"  # systemd sends SIGHUP and waits for READY=1
    assert "ExecReload" not in settings  # with notify-reload a kill would be a second SIGHUP
    assert settings["Restart"] == "on-failure"
    assert settings["RestartSec"] == "2s" and settings["RestartMaxDelaySec"] == "1min"
    assert int(settings["RestartSteps"]) > 0
    assert settings["StartLimitIntervalSec"] == "0"  # backing off, never giving up
    assert settings["RuntimeDirectory"] == "bpfoom"  # the state file `bpfoom status` reads
    assert set(settings["CapabilityBoundingSet"].split()) == {"CAP_BPF", "CAP_SYS_ADMIN", "CAP_PERFMON"}
    assert settings["NoNewPrivileges"] == "yes"
    assert settings["ProtectSystem"] == "strict"
    assert settings["ReadWritePaths"] == "/sys/fs/bpf"


def test_the_fallback_for_older_systemd_reloads_by_signal():
    fallback = {key: values[-1] for key, values in settings_of(OLD_SYSTEMD).items()}
    assert fallback == {"Type": "notify", "ExecReload": "kill -HUP $MAINPID"}
