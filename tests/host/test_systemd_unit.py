"""The systemd unit example: systemd itself accepts every line, and it grants only what bpfoom needs.

The unit is written for systemd 252 (Debian 12, this project's platform):
Type=notify, reloaded through `bpfoom reload`.  The drop-in for systemd 254+
(systemd-254.conf) switches to Type=notify-reload with restart backoff; an
older systemd ignores exactly those settings of it.
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
NEW_SYSTEMD = facts.REPO / "examples" / "systemd" / "bpfoom.service.d" / "systemd-254.conf"
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
    virtualenv, which verify then finds: drop-ins beside the unit are applied.  Every systemd
    from 252 on accepts the unit without a complaint."""
    if shutil.which("systemd-analyze") is None:
        require(False, "needs systemd-analyze (Debian's systemd package)")
    done = verify(tmp_path, DROP_IN)
    assert done.returncode == 0, done.stderr
    assert [line for line in done.stderr.splitlines() if "bpfoom.service" in line] == [], done.stderr


def test_the_newer_systemd_drop_in_is_accepted_or_ignored_setting_by_setting(tmp_path):
    if shutil.which("systemd-analyze") is None:
        require(False, "needs systemd-analyze (Debian's systemd package)")
    done = verify(tmp_path, DROP_IN, NEW_SYSTEMD)
    assert done.returncode == 0, done.stderr
    complaints = [line for line in done.stderr.splitlines() if "bpfoom.service" in line]
    if systemd_version() < 254:  # only the settings this systemd is too old for, each ignored
        assert len(complaints) == len(NEWER_SETTINGS), complaints
        assert all(any(known in line for known in NEWER_SETTINGS) for line in complaints)
    else:
        assert complaints == [], done.stderr


def test_the_unit_hard_codes_no_install_directory():
    commands = [line.partition("=")[2].split()[0] for line in UNIT.read_text().splitlines()
                if line.startswith("Exec") and line.partition("=")[2]]
    assert commands and set(commands) == {"bpfoom"}, commands
    assert "${BPFOOM_CONFIG}" in unit_settings()["ExecStart"]


def test_the_unit_is_notify_reloads_through_bpfoom_and_is_hardened():
    settings = unit_settings()
    assert settings["Type"] == "notify"  # systemd 252 has no notify-reload
    # `bpfoom reload` waits for the daemon's outcome: `systemctl reload` fails on a refusal
    assert settings["ExecReload"] == "bpfoom reload ${BPFOOM_CONFIG}"
    assert "RestartSteps" not in settings and "RestartMaxDelaySec" not in settings
    assert settings["Restart"] == "on-failure" and settings["RestartSec"] == "2s"
    assert settings["StartLimitIntervalSec"] == "0"  # retrying, never giving up
    assert settings["RuntimeDirectory"] == "bpfoom"  # the state file `bpfoom status` reads
    assert settings["RuntimeDirectoryPreserve"] == "yes"  # what the pinned links run, for restarts
    assert set(settings["CapabilityBoundingSet"].split()) == {"CAP_BPF", "CAP_SYS_ADMIN", "CAP_PERFMON"}
    assert settings["NoNewPrivileges"] == "yes"
    assert settings["ProtectSystem"] == "strict"
    assert settings["ReadWritePaths"] == "/sys/fs/bpf"
    # The arena saw the daemon die of SIGSYS naming a victim (open_by_handle_at is outside
    # @system-service): a filtered call must fail, not kill (test_victim_names.py: the fallback).
    assert settings["SystemCallErrorNumber"] == "EPERM"


def test_the_drop_in_for_newer_systemd_reloads_by_notify_reload_and_backs_off():
    newer = {key: values[-1] for key, values in settings_of(NEW_SYSTEMD).items()}
    assert newer == {"Type": "notify-reload", "ExecReload": "", "RestartSteps": "6",
                     "RestartMaxDelaySec": "1min"}
