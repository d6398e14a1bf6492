"""`bpfoom reload`: find the running daemon (its pin directory's flock), send SIGHUP, wait for the
outcome and report it, so an operator never needs `pidof` (which finds `python3`, not bpfoom)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import facts
from daemon_process import DaemonProcess

pytestmark = pytest.mark.usefixtures("tcp_struct_ops")


def reload(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-P", "-m", "bpfoom", "reload", *args],
                          capture_output=True, text=True, timeout=120, env={**os.environ, **env})


def write(path: Path, pin_dir: Path, name: str, increments: int, extra: str = "") -> None:
    path.write_text(f"""
[daemon]
pin_dir = "{pin_dir}"
log_format = "json"

[[attach]]
id = "cc"
policy = "{facts.TCP_CC_OBJECT}"
map = "bpfoom_demo"
name = "{name}"
[attach.tunables]
cwnd_increments_per_rtt = {increments}
{extra}""")


def test_reload_applies_the_edited_config_and_reports_a_refusal(tmp_path, bpffs_dir):
    env = {"BPFOOM_STATE_DIR": str(tmp_path / "state")}
    config, name = tmp_path / "bpfoom.toml", facts.unique_cc_name()
    write(config, bpffs_dir, name, 1)
    daemon = DaemonProcess(config, env)
    try:
        daemon.wait_event("ready")
        write(config, bpffs_dir, name, 3)
        done = reload(env, str(config))
        assert done.returncode == 0, done.stderr
        assert f"daemon {daemon.proc.pid}" in done.stdout and "reloaded" in done.stdout
        assert daemon.wait_event("tunables_set")["set.cwnd_increments_per_rtt"] == 3

        write(config, bpffs_dir, name, 3, extra="[attach.bogus]\n")
        done = reload(env)  # the only daemon: no need to name its config
        assert done.returncode == 1
        assert "unknown key 'bogus'" in done.stderr and "previous configuration kept" in done.stderr
    finally:
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
    assert facts.available_congestion_control().count(name) == 0


def test_reload_without_a_daemon_says_so(tmp_path):
    done = reload({"BPFOOM_STATE_DIR": str(tmp_path)}, str(tmp_path / "none.toml"))
    assert done.returncode == 1
    assert "no bpfoom daemon runs" in done.stderr
