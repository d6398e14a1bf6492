"""`bpfoom run` says what it protects: an entry that can never attach here is failed, not pending.

The host kernel has no bpf_oom_ops (and, on most hosts, no struct_ops
attach to a cgroup): the ENOTSUP cases are real here.  A system-wide
tcp_congestion_ops entry keeps the daemon running beside the failed one;
what is judged is what others read: STATUS= datagrams on a real socket,
`bpfoom status --json`, the metrics file, the exit status.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import bpfoom
import facts
from conftest import require
from daemon_process import WAIT_S, DaemonProcess
from prometheus_text import parse

pytestmark = pytest.mark.usefixtures("tcp_struct_ops")




class Setup:
    def __init__(self, tmp_path: Path, pin_dir: Path) -> None:
        self.tmp, self.pin_dir = tmp_path, pin_dir
        self.fallback = facts.unique_cc_name()
        self.config = tmp_path / "bpfoom.toml"
        self.metrics = tmp_path / "bpfoom.prom"
        self.env = {"BPFOOM_STATE_DIR": str(tmp_path / "state")}
        self.started: list[DaemonProcess] = []

    def write(self, extra: str, fallback: bool = True) -> Path:
        head = f"""
[daemon]
pin_dir = "{self.pin_dir}"
log_format = "json"
metrics_file = "{self.metrics}"
"""
        entry = f"""
[[attach]]
id = "fallback"
policy = "{facts.TCP_CC_OBJECT}"
map = "bpfoom_demo"
name = "{self.fallback}"
"""
        self.config.write_text(head + (entry if fallback else "") + extra)
        return self.config

    def start(self, env: dict[str, str] | None = None, prefix: tuple[str, ...] = (),
              args: tuple[str, ...] = ()) -> DaemonProcess:
        self.started.append(DaemonProcess(self.config, {**self.env, **(env or {})}, prefix, args))
        return self.started[-1]

    def daemon_state(self, daemon: DaemonProcess) -> dict:
        done = subprocess.run([sys.executable, "-P", "-m", "bpfoom", "status", "--json"],
                              capture_output=True, text=True, timeout=120,
                              env={**os.environ, **self.env})
        assert done.returncode == 0, done.stderr
        [found] = [d for d in json.loads(done.stdout)["daemons"] if d["pid"] == daemon.proc.pid]
        return found

    def protected(self) -> dict[str, float]:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.metrics.exists():
                samples = parse(self.metrics.read_text()).get("bpfoom_protected", {})
                if samples:
                    return {dict(labels)["entry"]: value
                            for labels, value in samples["samples"].items()}
            time.sleep(0.1)
        pytest.fail(f"no bpfoom_protected samples in {self.metrics}")


@pytest.fixture
def setup(tmp_path, bpffs_dir):
    made = Setup(tmp_path, bpffs_dir)
    yield made
    for daemon in made.started:
        daemon.stop()
    for pin in sorted(bpffs_dir.glob("*")):
        if not pin.name.endswith(("_events", "_dropped")):
            with bpfoom.Link.from_pinned(pin) as link:
                if link.info().map_id:
                    link.detach()
        pin.unlink()


def no_oom_ops() -> None:
    require(bpfoom.features()["bpf_oom_ops"].supported is False,
            "a kernel without bpf_oom_ops (this one has it: nothing fails here)")


def test_an_oom_policy_on_a_missing_cgroup_is_failed_not_pending(setup, cgroup2_dir, notify):
    """The issue's case: the cgroup does not exist yet, the kernel has no bpf_oom_ops."""
    no_oom_ops()
    batch = cgroup2_dir / "batch"
    setup.write(f'[[attach]]\nid = "batch"\npolicy = "largest_leaf"\ncgroup = "{batch}"\n')
    daemon = setup.start(notify.env)
    failed = daemon.wait_event("failed")
    assert failed["id"] == "batch" and "bpf_oom_ops" in failed["why"]
    ready = notify()
    assert ready["READY"] == "1"
    assert ready["STATUS"].startswith("degraded: 1 failed (batch: this kernel has no bpf_oom_ops")
    assert "1 policy attached" in ready["STATUS"] and "pending" not in ready["STATUS"]
    record = daemon.wait_event("ready")
    assert (record["attached"], record["pending"], record["failed"]) == (1, 0, 1)
    state = setup.daemon_state(daemon)
    assert state["pending"] == []
    assert [(f["entry"], f["target"]) for f in state["failed"]] == [("batch", str(batch))]
    assert setup.protected() == {"fallback": 1, "batch": 0}

    batch.mkdir()  # appears: no attach is tried, it can never work here
    try:
        time.sleep(1.5)
        tried = [r for r in list(daemon.lines.queue) if isinstance(r, dict)
                 and r.get("event") in ("attach_failed", "attached", "pending")]
        assert tried == []
    finally:
        batch.rmdir()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0


def test_nothing_that_can_attach_exits_non_zero(setup, cgroup2_dir):
    no_oom_ops()
    setup.write(f'[[attach]]\nid = "batch"\npolicy = "largest_leaf"\n'
                f'cgroup = "{cgroup2_dir}/later"\n', fallback=False)
    daemon = setup.start()
    assert daemon.wait_event("failed")["id"] == "batch"
    failed = daemon.wait_event("start_failed")
    assert "bpf_oom_ops" in failed["error"]
    assert daemon.wait() == 1


def test_a_daemon_without_bpf_privileges_says_so_and_exits(setup, tmp_path):
    setpriv = shutil.which("setpriv")
    require(setpriv is not None, "setpriv (util-linux) to start a daemon without capabilities")
    setup.write("")
    daemon = setup.start(prefix=(setpriv, "--inh-caps=-all", "--bounding-set=-all", "--"))
    failed = daemon.wait_event_any(["failed", "start_failed"], WAIT_S)
    text = json.dumps(failed)
    assert "CAP_SYS_ADMIN" in text or "EPERM" in text, failed
    assert daemon.wait() == 1
    assert facts.times_registered(setup.fallback) == 0


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_probes_and_served_metrics_tell_a_degraded_daemon(setup, cgroup2_dir):
    """What a Kubernetes probe and a Prometheus scrape see of a daemon running degraded."""
    import urllib.request

    no_oom_ops()
    port = free_port()
    setup.write(f'[[attach]]\nid = "batch"\npolicy = "largest_leaf"\n'
                f'cgroup = "{cgroup2_dir}/batch"\n')
    daemon = setup.start(args=(f"--metrics-listen=127.0.0.1:{port}",))
    daemon.wait_event("ready")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as answer:
        # 0.0.4 from our server, 1.0.0 from prometheus_client (the extra): both the text format
        assert answer.headers["Content-Type"].startswith("text/plain; version=")
        parsed = parse(answer.read().decode())
    protected = {dict(labels)["entry"]: value
                 for labels, value in parsed["bpfoom_protected"]["samples"].items()}
    assert protected == {"fallback": 1, "batch": 0}
    assert list(parsed["bpfoom_build_info"]["samples"].values()) == [1]

    def status(which: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-P", "-m", "bpfoom", "status", "--json", "--probe",
                               which], capture_output=True, text=True, timeout=120,
                              env={**os.environ, **setup.env})
    live, ready = status("live"), status("ready")
    assert live.returncode == 0, live.stderr
    assert ready.returncode == 1 and "degraded: 1 failed (batch" in ready.stderr
    assert json.loads(ready.stdout)["probe"] == {"ready": False, "why": ready.stderr.split(
        "ready probe failed: ", 1)[1].strip()}
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
