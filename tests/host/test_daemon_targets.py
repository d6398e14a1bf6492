"""`bpfoom run`: targets that do not exist yet are pending, never a reason to roll back the rest.

The daemon keeps a tcp_congestion_ops registered system-wide (any kernel
with struct_ops), while another entry names a cgroup, a pattern or a unit
that is not there.  What is judged is what others see: the congestion
control the kernel lists, the STATUS= datagrams a real socket receives,
`bpfoom status --json` (the daemon's state file), the metrics file parsed
by the exposition format's rules, and real cgroups made and removed under
the cgroup2 mount.  A kernel that cannot attach a struct_ops to a cgroup
(most hosts) makes every cgroup, pattern and unit entry *failed* at start,
never pending nor retried (tests/host/test_daemon_truthful.py);
tests/guest/test_daemon_targets.py watches the attaches succeed on ours.
"""
from __future__ import annotations

import json
import os
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


def cgroup_struct_ops() -> bool:
    return "cgroup_id" in facts.vmlinux_btf_index()[0].get("bpf_struct_ops_link", set())




class Setup:
    """A config of a system-wide tcp_cc entry ("fallback") plus ``extra`` entries; daemons run
    with their state file in this test's directory."""

    def __init__(self, tmp_path: Path, pin_dir: Path) -> None:
        self.tmp, self.pin_dir = tmp_path, pin_dir
        self.fallback = facts.unique_cc_name()
        self.other = facts.unique_cc_name()
        self.config = tmp_path / "bpfoom.toml"
        self.metrics = tmp_path / "bpfoom.prom"
        self.env = {"BPFOOM_STATE_DIR": str(tmp_path / "state")}
        self.started: list[DaemonProcess] = []

    def write(self, extra: str, increments: int = 1) -> Path:
        self.config.write_text(f"""
[daemon]
pin_dir = "{self.pin_dir}"
log_format = "json"
metrics_file = "{self.metrics}"

[[attach]]
id = "fallback"
policy = "{facts.TCP_CC_OBJECT}"
map = "bpfoom_demo"
name = "{self.fallback}"
[attach.tunables]
cwnd_increments_per_rtt = {increments}
{extra}""")
        return self.config

    def entry(self, entry_id: str, target: str) -> str:
        """A second tcp_cc entry (another name, another map) on ``target`` (a TOML key = value)."""
        return f"""
[[attach]]
id = "{entry_id}"
policy = "{facts.TCP_CC_OBJECT}"
map = "bpfoom_demo2"
name = "{self.other}"
{target}
"""

    def start(self, env: dict[str, str] | None = None) -> DaemonProcess:
        self.started.append(DaemonProcess(self.config, {**self.env, **(env or {})}))
        return self.started[-1]

    def status(self) -> dict:
        done = subprocess.run([sys.executable, "-P", "-m", "bpfoom", "status", "--json"],
                              capture_output=True, text=True, timeout=120,
                              env={**os.environ, **self.env})
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def daemon_state(self, daemon: DaemonProcess) -> dict:
        [found] = [d for d in self.status()["daemons"] if d["pid"] == daemon.proc.pid]
        return found

    def pending_metric(self, daemon: DaemonProcess) -> dict:
        """The pending metric of ``daemon``, once it is idle again (it writes the file before
        its first wait, then after every change it handled)."""
        assert facts.idle_with_inotify_read(daemon.proc.pid, WAIT_S)
        samples = parse(self.metrics.read_text())["bpfoom_pending_targets"]["samples"]
        return {dict(labels)["entry"]: (dict(labels)["target"], value)
                for labels, value in samples.items()}


@pytest.fixture
def setup(tmp_path, bpffs_dir):
    made = Setup(tmp_path, bpffs_dir)
    yield made
    for daemon in made.started:
        daemon.stop()
    for pin in sorted(bpffs_dir.glob("*")):  # a failed test: detach what a daemon left
        if not pin.name.endswith(("_events", "_dropped")):
            with bpfoom.Link.from_pinned(pin) as link:
                if link.info().map_id:
                    link.detach()
        pin.unlink()


def wait_status(notify, words: str) -> dict[str, str]:
    """The next STATUS= datagram containing ``words``."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        message = notify()
        if words in message.get("STATUS", ""):
            return message
    pytest.fail(f"no STATUS with {words!r}")


def test_a_missing_cgroup_is_pending_attached_when_it_appears(setup, cgroup2_dir, notify):
    batch = cgroup2_dir / "batch"
    setup.write(setup.entry("batch", f'cgroup = "{batch}"'))
    daemon = setup.start(notify.env)
    ready = notify()
    assert ready["READY"] == "1"
    if not cgroup_struct_ops():  # can never attach here: failed at once, never pending
        assert ready["STATUS"].startswith("degraded: 1 failed (batch: this kernel cannot attach "
                                          "a struct_ops to a cgroup")
        assert "pending" not in ready["STATUS"]
        assert setup.daemon_state(daemon)["pending"] == []
        assert setup.pending_metric(daemon) == {}
        batch.mkdir()
        try:
            # the inotify event has come and gone: nothing was tried
            assert facts.idle_with_inotify_read(daemon.proc.pid, WAIT_S)
            assert not [r for r in list(daemon.lines.queue) if isinstance(r, dict)
                        and r.get("event") in ("attach_failed", "attached") and r["id"] == "batch"]
        finally:
            batch.rmdir()
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
        return
    assert ready["STATUS"] == (f"1 policy attached, 1 pending (batch: cgroup {batch} does not "
                               "exist yet)")
    pending = daemon.wait_event("pending")
    assert (pending["id"], pending["target"]) == ("batch", str(batch))
    assert daemon.wait_event("ready")["pending"] == 1
    assert facts.times_registered(setup.fallback) == 1  # the fallback attached all the same
    state = setup.daemon_state(daemon)
    assert [(p["entry"], p["target"]) for p in state["pending"]] == [("batch", str(batch))]
    assert "does not exist yet" in state["pending"][0]["why"]
    assert setup.pending_metric(daemon) == {"batch": (str(batch), 1)}

    batch.mkdir()  # the cgroup appears: the daemon sees it (inotify) and attaches
    try:
        attached = daemon.wait_event("attached")
        assert (attached["id"], attached["target"]) == ("batch", str(batch))
        wait_status(notify, "2 policies attached")
    finally:
        batch.rmdir()  # gone again: pending for its absence
    wait_status(notify, "does not exist yet")
    assert setup.pending_metric(daemon) == {"batch": (str(batch), 1)}

    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    assert facts.times_registered(setup.fallback) == 0
    assert not list((setup.tmp / "state").glob("daemon-*.json"))  # the state file went with it


def test_a_pattern_follows_the_cgroups_that_match_it(setup, cgroup2_dir):
    setup.write(setup.entry("services", f'cgroup = "{cgroup2_dir}/*.service"'))
    daemon = setup.start()
    if not cgroup_struct_ops():
        assert daemon.wait_event("failed")["id"] == "services"
        daemon.wait_event("ready")
        (cgroup2_dir / "a.service").mkdir()
        try:
            assert facts.idle_with_inotify_read(daemon.proc.pid, WAIT_S)
            assert not [r for r in list(daemon.lines.queue) if isinstance(r, dict)
                        and r.get("event") in ("attach_failed", "attached", "pending")]
        finally:
            (cgroup2_dir / "a.service").rmdir()
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
        return
    pending = daemon.wait_event("pending")
    assert pending["why"] == f"no cgroup matches {cgroup2_dir}/*.service yet"
    daemon.wait_event("ready")
    made = [cgroup2_dir / "a.service", cgroup2_dir / "b.service", cgroup2_dir / "c.scope"]
    try:
        for path in made:
            path.mkdir()
        seen = {daemon.wait_event("attached")["target"] for _ in range(2)}
        assert seen == {str(made[0]), str(made[1])}  # not c.scope
        made[0].rmdir()
        gone = daemon.wait_event("detached")
        assert gone["why"] == "its cgroup is gone" and gone["id"].startswith("services+a_service-")
    finally:
        for path in made:
            if path.exists():
                path.rmdir()
    assert facts.times_registered(setup.fallback) == 1
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0


def test_a_unit_without_systemd_is_pending_and_holds_nothing_back(setup):
    why = bpfoom.targets.systemd_running()
    if why is None:
        require(False, "systemd runs here: the unit would resolve")
    setup.write(setup.entry("nginx", 'unit = "nginx.service"'))
    daemon = setup.start()
    if not cgroup_struct_ops():  # a unit is a cgroup: failed here, whatever systemd says
        assert "struct_ops to a cgroup" in daemon.wait_event("failed")["why"]
        assert daemon.wait_event("ready")["attached"] == 1 and facts.times_registered(setup.fallback) == 1
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
        return
    pending = daemon.wait_event("pending")
    assert (pending["id"], pending["target"]) == ("nginx", "unit nginx.service")
    assert "systemd is not running" in pending["why"]
    assert daemon.wait_event("ready")["attached"] == 1 and facts.times_registered(setup.fallback) == 1
    [item] = setup.daemon_state(daemon)["pending"]
    assert item["entry"] == "nginx" and "systemd is not running" in item["why"]
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0


def test_a_reload_applies_beside_an_entry_that_can_never_attach(setup, cgroup2_dir):
    if cgroup_struct_ops():
        require(False, "this kernel attaches struct_ops to cgroups: nothing fails for good")
    batch = cgroup2_dir / "batch"
    batch.mkdir()
    try:
        setup.write(setup.entry("batch", f'cgroup = "{batch}"'))
        daemon = setup.start()
        # Its cgroup exists, but no attach could ever work: failed, the rest runs (degraded).
        assert daemon.wait_event("failed")["id"] == "batch"
        assert daemon.wait_event("ready")["failed"] == 1 and facts.times_registered(setup.fallback) == 1
        with bpfoom.Link.from_pinned(setup.pin_dir / "fallback") as link:
            before = link.info()
        setup.write(setup.entry("batch", f'cgroup = "{batch}"'), increments=3)
        daemon.signal(signal.SIGHUP)
        changed = daemon.wait_event("tunables_set")
        assert changed["id"] == "fallback" and changed["set.cwnd_increments_per_rtt"] == 3
        daemon.wait_event("reloaded")
        with bpfoom.Link.from_pinned(setup.pin_dir / "fallback") as link:
            assert link.info().map_id == before.map_id  # changed in place
        assert [f["entry"] for f in setup.daemon_state(daemon)["failed"]] == ["batch"]
        assert not [r for r in daemon.seen + list(daemon.lines.queue) if isinstance(r, dict)
                    and r.get("event") == "attach_failed"]
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
    finally:
        if batch.exists():
            batch.rmdir()


def test_a_failed_reload_leaves_every_pin_on_an_attached_link(setup):
    """The reload removes "second" (detached and unpinned at once), then fails on an entry
    whose name is taken: "second" is attached again and pinned again, never a pin on a
    detached link."""
    second = setup.entry("second", "")
    setup.write(second)
    daemon = setup.start()
    daemon.wait_event("ready")
    setup.write(f"""
[[attach]]
id = "clash"
policy = "{facts.TCP_CC_OBJECT}"
map = "bpfoom_demo2"
name = "{setup.fallback}"
""")
    daemon.signal(signal.SIGHUP)
    assert "EEXIST" in daemon.wait_event("reload_failed")["error"]
    for name, pin in ((setup.fallback, "fallback"), (setup.other, "second")):
        assert facts.times_registered(name) == 1
        with bpfoom.Link.from_pinned(setup.pin_dir / pin) as link:
            assert link.info().map_id, f"the pin {pin} names a detached link"
    assert not (setup.pin_dir / "clash").exists()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    assert facts.times_registered(setup.other) == 0 and list(setup.pin_dir.iterdir()) == []


def test_a_restart_removes_pins_no_entry_owns(setup):
    setup.write(setup.entry("second", ""))
    setup.config.write_text(setup.config.read_text().replace('log_format = "json"',
                                                             'log_format = "json"\non_exit = "keep"'))
    first = setup.start()
    first.wait_event("ready")
    first.signal(signal.SIGTERM)
    assert first.wait() == 0
    assert facts.times_registered(setup.other) == 1 and (setup.pin_dir / "second").exists()

    setup.write("")  # "second" left the configuration while no daemon ran
    again = setup.start()
    assert again.wait_event("adopted")["id"] == "fallback"
    removed = again.wait_event("orphan_removed")
    assert removed["pin"] == str(setup.pin_dir / "second") and removed["was_attached"]
    again.wait_event("ready")
    assert facts.times_registered(setup.other) == 0 and not (setup.pin_dir / "second").exists()
    assert facts.times_registered(setup.fallback) == 1
    again.signal(signal.SIGTERM)
    assert again.wait() == 0


def test_a_metrics_file_that_cannot_be_written_detaches_nothing(setup, notify):
    setup.write("")
    setup.config.write_text(setup.config.read_text().replace(
        f'metrics_file = "{setup.metrics}"', 'metrics_file = "/proc/bpfoom/no/such/dir.prom"'))
    daemon = setup.start(notify.env)
    assert notify()["READY"] == "1"
    failed = daemon.wait_event("metrics_not_written")
    assert "No such file" in failed["error"]
    assert facts.times_registered(setup.fallback) == 1
    daemon.signal(signal.SIGHUP)
    assert notify()["RELOADING"] == "1"
    assert notify()["STATUS"] == "1 policy attached"
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    assert facts.times_registered(setup.fallback) == 0


def test_a_pending_entrys_pin_from_an_earlier_run_is_kept(setup):
    """The earlier run's link for an entry that is pending now (its unit cannot be resolved:
    no systemd here, or a slow one at boot) stays attached, to be adopted once it resolves."""
    if bpfoom.targets.systemd_running() is None:
        require(False, "systemd runs here: the unit would resolve")
    setup.write(setup.entry("second", ""))
    setup.config.write_text(setup.config.read_text().replace('log_format = "json"',
                                                             'log_format = "json"\non_exit = "keep"'))
    first = setup.start()
    first.wait_event("ready")
    first.signal(signal.SIGTERM)
    assert first.wait() == 0

    setup.write(setup.entry("second", 'unit = "nginx.service"'))
    again = setup.start()
    # pending (a unit systemd cannot tell about), or failed on a kernel that cannot attach to a
    # cgroup: the configuration names it either way
    assert again.wait_event("pending" if cgroup_struct_ops() else "failed")["id"] == "second"
    again.wait_event("ready")
    assert not [r for r in again.seen if isinstance(r, dict) and r.get("event") == "orphan_removed"]
    assert facts.times_registered(setup.other) == 1
    with bpfoom.Link.from_pinned(setup.pin_dir / "second") as link:
        assert link.info().map_id
    again.signal(signal.SIGTERM)
    assert again.wait() == 0
