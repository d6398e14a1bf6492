"""Kills people can act on: at a real OOM the daemon's kill and decision lines name the victim's
cgroup path and unit, at `warning`; the journal entry (a real datagram socket standing in for
journald) carries MESSAGE_ID and the same fields; the kill hook runs with them in its environment.
"""
from __future__ import annotations

import signal
import socket
import sys
import time
import uuid
from pathlib import Path

from bpfoom.testing import remove_cgroup_tree
from daemon_process import WAIT_S, DaemonProcess
from fake_api import fake_api

KILL_MESSAGE_ID = "c4a938d5b82d4e2f9eed25edae10de4d"


def journal_entries(sock: socket.socket) -> list[dict[str, str]]:
    entries = []
    while True:
        try:
            data = sock.recv(65536, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return entries
        entries.append(dict(line.split("=", 1) for line in data.decode().splitlines()
                            if "=" in line))


def test_a_kill_names_the_victim_in_the_log_the_journal_and_the_hook(
        cgroup, memory_hog, pin_dir, tmp_path):
    cgroup.write("memory.max", str(48 << 20))
    hook_out = tmp_path / "hook.env"
    journal_path = tmp_path / "journal.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as journal:
        journal.bind(str(journal_path))
        config = tmp_path / "bpfoom.toml"
        config.write_text(f"""
[daemon]
pin_dir = "{pin_dir}"
log_format = "json"
journal = "{journal_path}"
kill_hook = ["{sys.executable}", "-c", "import os; open('{hook_out}.tmp', 'w').write(''.join(f'{{k}}={{v}}\\\\n' for k, v in os.environ.items() if k.startswith('BPFOOM_'))); os.rename('{hook_out}.tmp', '{hook_out}')"]

[[attach]]
id = "leaf"
policy = "largest_leaf"
cgroup = "{cgroup.path}"
""")
        daemon = DaemonProcess(config, {"BPFOOM_STATE_DIR": str(tmp_path / "state")})
        try:
            daemon.wait_event("ready")
            child = cgroup.child("web.service")
            victim_path = str(child.path)
            hog = memory_hog(child, 64)
            child.close()
            hog.release()
            assert hog.wait_dead() == "SIGKILL"

            found = daemon.wait_events("kill", "decision")
            kill, decision = found["kill"], found["decision"]
            assert kill["level"] == "warning" and kill["pid"] == hog.pid
            assert (kill["victim_cgroup"], kill["victim_unit"]) == (victim_path, "web.service")
            assert decision["level"] == "warning" and decision["action"] == "killed"
            assert decision["victim_cgroup"] == victim_path

            deadline = time.monotonic() + WAIT_S
            while not hook_out.exists():  # the hook renames its file into place when done
                assert time.monotonic() < deadline, "the kill hook did not run"
                time.sleep(0.05)
            env = dict(line.split("=", 1) for line in hook_out.read_text().splitlines())
            assert env["BPFOOM_EVENT"] == "kill" and env["BPFOOM_VICTIM_PID"] == str(hog.pid)
            assert env["BPFOOM_VICTIM_CGROUP"] == victim_path
            assert env["BPFOOM_VICTIM_UNIT"] == "web.service"
            assert env["BPFOOM_POLICY"] == "largest_leaf"

            kills = [e for e in journal_entries(journal) if e.get("MESSAGE_ID") == KILL_MESSAGE_ID]
            assert kills and kills[0]["PRIORITY"] == "4"
            assert kills[0]["BPFOOM_VICTIM_CGROUP"] == victim_path
            assert kills[0]["BPFOOM_PID"] == str(hog.pid) and "web.service" in kills[0]["MESSAGE"]
            daemon.signal(signal.SIGTERM)
            assert daemon.wait() == 0
        finally:
            daemon.stop()


def test_a_pod_victim_gets_a_kubernetes_event(cgroups, hogs, pin_dir, tmp_path):
    """A real OOM kill in a kubepods-layout pod cgroup: the daemon names the pod through the
    kubelet's pod log directory and posts a Warning Event on it to the API server (a real HTTP
    server on the guest's loopback)."""
    uid = str(uuid.uuid4())
    top = cgroups("k8s", memory_max="48M")
    pod = cgroups(f"k8s/kubepods/besteffort/pod{uid}")
    pod_logs = tmp_path / "pods"
    (pod_logs / f"shop_web-0_{uid}").mkdir(parents=True)
    config = tmp_path / "bpfoom.toml"
    with fake_api() as api:
        config.write_text(f"""
[daemon]
pin_dir = "{pin_dir}"
log_format = "json"
pod_log_dir = "{pod_logs}"
kubernetes_events = {{ server = "http://127.0.0.1:{api.port}" }}

[[attach]]
id = "pods"
policy = "largest_leaf"
cgroup = "{top.path}"
""")
        daemon = DaemonProcess(config, {"BPFOOM_STATE_DIR": str(tmp_path / "state")})
        try:
            daemon.wait_event("ready")
            hog = hogs(pod, 64)
            assert hog.wait_dead() == "SIGKILL"
            kill = daemon.wait_event("kill")
            assert (kill["victim_namespace"], kill["victim_pod"], kill["victim_pod_uid"]) == \
                ("shop", "web-0", uid)
            request = api.next()
            posted = daemon.wait_event("kube_event_posted")
            assert (posted["namespace"], posted["pod"]) == ("shop", "web-0")
            daemon.signal(signal.SIGTERM)
            assert daemon.wait() == 0
        finally:
            daemon.stop()
    assert request["path"] == "/api/v1/namespaces/shop/events"
    body = request["body"]
    assert body["involvedObject"] == {"apiVersion": "v1", "kind": "Pod", "namespace": "shop",
                                      "name": "web-0", "uid": uid}
    assert (body["type"], body["reason"]) == ("Warning", "OOMKilledByBpfoom")
    assert f"pid {hog.pid}" in body["message"] and str(pod.path) in body["message"]


def test_a_victim_whose_cgroup_went_before_its_kill_was_read_is_still_named(
        cgroup, memory_hog, pin_dir, tmp_path):
    """systemd removes a service's cgroup as soon as its main process died, often before the
    daemon reads the kill: here the daemon is stopped (SIGSTOP) across the OOM and the removal,
    and still names the cgroup it had attached to, and its unit."""
    unit = cgroup.child("app.service")
    unit.write("memory.max", str(48 << 20))
    unit_path = str(unit.path)
    config = tmp_path / "bpfoom.toml"
    config.write_text(f"""
[daemon]
pin_dir = "{pin_dir}"
log_format = "json"

[[attach]]
id = "app"
policy = "largest_leaf"
cgroup = "{unit_path}"
""")
    daemon = DaemonProcess(config, {"BPFOOM_STATE_DIR": str(tmp_path / "state")})
    try:
        daemon.wait_event("ready")
        hog = memory_hog(unit, 64)
        unit.close()
        daemon.signal(signal.SIGSTOP)
        try:
            hog.release()
            assert hog.wait_dead() == "SIGKILL"
            remove_cgroup_tree(Path(unit_path))  # what systemd does once the unit's process died
        finally:
            daemon.signal(signal.SIGCONT)
        kill = daemon.wait_event("kill")
        assert kill["pid"] == hog.pid and kill["level"] == "warning"
        named = (kill.get("victim_cgroup"), kill.get("victim_unit"))
        assert named == (unit_path, "app.service"), kill
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
    finally:
        daemon.stop()
