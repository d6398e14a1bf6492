"""`bpfoom status` on the running kernel: the daemons it finds are the ones holding a pin_dir.

A real `bpfoom run` child keeps the tcp_cc example registered; status must
name its pid, pin directory and pinned link as the kernel reports them, and
forget the daemon the moment it dies (its lock goes with it), while the
pin it leaves is still shown by the kernel.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

import bpfoom
import facts
from daemon_process import DaemonProcess

pytestmark = pytest.mark.usefixtures("tcp_struct_ops")


def status(*args: str) -> dict:
    done = subprocess.run([sys.executable, "-P", "-m", "bpfoom", "status", *args, "--json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def daemons_in(shown: dict, pin_dir) -> list[dict]:
    return [d for d in shown["daemons"] if d["pin_dir"] == str(pin_dir)]


@pytest.fixture
def daemon(bpffs_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("BPFOOM_STATE_DIR", str(tmp_path / "state"))  # not /run/bpfoom
    config = tmp_path / "bpfoom.toml"
    config.write_text(f"""
[daemon]
pin_dir = "{bpffs_dir}"
log_format = "json"
on_exit = "keep"

[[attach]]
id = "cc"
policy = "{facts.TCP_CC_OBJECT}"
map = "bpfoom_demo"
name = "{facts.unique_cc_name()}"
""")
    process = DaemonProcess(config)
    yield process
    process.stop()
    pin = bpffs_dir / "cc"
    if pin.exists():
        with bpfoom.Link.from_pinned(pin) as link:
            link.detach()
            link.unpin()


def test_status_finds_a_running_daemon_and_its_links(daemon, bpffs_dir):
    attached = daemon.wait_event("attached")
    daemon.wait_event("ready")
    [found] = daemons_in(status(), bpffs_dir)
    assert found["pid"] == daemon.proc.pid
    assert "run" in found["command"]
    assert found["entries"] == [{"id": "cc", "pin": str(bpffs_dir / "cc"), "link_id": attached["link"],
                                 "attached": True}]

    daemon.signal(signal.SIGKILL)  # no clean exit: the pin stays, the lock goes
    daemon.wait()
    assert daemons_in(status(), bpffs_dir) == []
    with bpfoom.Link.from_pinned(bpffs_dir / "cc") as link:
        assert link.info().id == attached["link"]


def test_status_text_names_the_chain_and_the_daemon(daemon, bpffs_dir, cgroup2_dir):
    daemon.wait_event("ready")
    done = subprocess.run([sys.executable, "-P", "-m", "bpfoom", "status", str(cgroup2_dir)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"an OOM in {cgroup2_dir} is handled by, in order:" in done.stdout
    assert "the kernel's OOM killer" in done.stdout
    assert f"daemon pid {daemon.proc.pid}:" in done.stdout and f"pin_dir {bpffs_dir}" in done.stdout


def test_status_refuses_what_is_not_a_cgroup(tmp_path):
    done = subprocess.run([sys.executable, "-P", "-m", "bpfoom", "status", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "not a cgroup v2 directory" in done.stderr
