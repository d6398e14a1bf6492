"""`--metrics-listen` served two ways: by the official prometheus_client when the `prometheus`
extra is installed (OpenMetrics on request), by bpfoom's own server without it (the client made
unimportable for the daemon through PYTHONPATH).  Judged by real scrapes of a running daemon
(a tcp_congestion_ops entry keeps it running on any kernel)."""
from __future__ import annotations

import importlib.util
import signal
import socket
import urllib.request
from pathlib import Path

import pytest

import facts
from conftest import require
from daemon_process import DaemonProcess
from prometheus_text import parse

pytestmark = pytest.mark.usefixtures("tcp_struct_ops")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(tmp_path: Path, pin_dir: Path, env: dict[str, str]) -> tuple[DaemonProcess, int]:
    config = tmp_path / "bpfoom.toml"
    config.write_text(f'[daemon]\npin_dir = "{pin_dir}"\nlog_format = "json"\n\n[[attach]]\n'
                      f'id = "cc"\npolicy = "{facts.TCP_CC_OBJECT}"\nmap = "bpfoom_demo"\n'
                      f'name = "{facts.unique_cc_name()}"\n')
    port = free_port()
    daemon = DaemonProcess(config, {"BPFOOM_STATE_DIR": str(tmp_path / "state"), **env},
                           args=(f"--metrics-listen=127.0.0.1:{port}",))
    return daemon, port


def scrape(port: int, accept: str | None = None) -> tuple[str, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                     headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return answer.headers["Content-Type"], answer.read().decode()


def stop(daemon: DaemonProcess) -> None:
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0


def test_the_prometheus_extra_serves_the_metrics_with_openmetrics(tmp_path, bpffs_dir):
    require(importlib.util.find_spec("prometheus_client") is not None,
            "prometheus_client (pip install bpfoom[prometheus]; scripts/bootstrap installs it)")
    daemon, port = start(tmp_path, bpffs_dir, {})
    try:
        assert daemon.wait_event("metrics_served")["via"] == "prometheus_client"
        daemon.wait_event("ready")
        kind, text = scrape(port)
        assert kind.startswith("text/plain; version=")
        assert list(parse(text)["bpfoom_protected"]["samples"].values()) == [1]
        kind, text = scrape(port, "application/openmetrics-text; version=1.0.0")
        assert kind.startswith("application/openmetrics-text")
        assert text.rstrip().endswith("# EOF") and 'bpfoom_protected{entry="cc"} 1.0' in text
        stop(daemon)
    finally:
        daemon.stop()


def test_without_the_extra_bpfooms_own_server_serves_them(tmp_path, bpffs_dir):
    hidden = tmp_path / "hidden"
    (hidden / "prometheus_client").mkdir(parents=True)
    (hidden / "prometheus_client" / "__init__.py").write_text(
        'raise ImportError("prometheus_client is not installed (this test hides it)")\n')
    daemon, port = start(tmp_path, bpffs_dir, {"PYTHONPATH": str(hidden)})
    try:
        assert daemon.wait_event("metrics_served")["via"] == "bpfoom"
        daemon.wait_event("ready")
        kind, text = scrape(port, "application/openmetrics-text; version=1.0.0")
        assert kind.startswith("text/plain; version=0.0.4")  # ours speaks the text format only
        assert list(parse(text)["bpfoom_protected"]["samples"].values()) == [1]
        stop(daemon)
    finally:
        daemon.stop()
