"""`bpfoom run CONFIG`, the daemon, as a real child process on the running kernel.

It keeps the tcp_congestion_ops example registered (any kernel with
struct_ops has it), so attach, reload, restart and detach are judged by what
the kernel shows: the list of congestion controls and the link's ids.
"""
from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import bpfoom
import facts
from daemon_process import WAIT_S, DaemonProcess

pytestmark = pytest.mark.usefixtures("tcp_struct_ops")

@pytest.fixture
def daemons(tmp_path):
    started: list[DaemonProcess] = []
    state = {"BPFOOM_STATE_DIR": str(tmp_path / "state")}  # not /run/bpfoom, even after SIGKILL

    def start(config: Path, env: dict[str, str] | None = None) -> DaemonProcess:
        started.append(DaemonProcess(config, {**state, **(env or {})}))
        return started[-1]

    yield start
    for daemon in started:
        daemon.stop()


@pytest.fixture
def cc(bpffs_dir):
    """A config writer for one tcp_cc entry under a unique name, pinned in this test's bpffs dir."""

    class Config:
        name = facts.unique_cc_name()
        path = bpffs_dir.parent / "unused"
        pin_dir = bpffs_dir

        def write(self, tmp: Path, *, min_ssthresh: int = 4, increments: int = 1,
                  on_exit: str = "detach", extra: str = "") -> Path:
            self.path = tmp / "bpfoom.toml"
            self.path.write_text(f"""
[daemon]
pin_dir = "{self.pin_dir}"
on_exit = "{on_exit}"
log_format = "json"

[[attach]]
id = "cc"
policy = "{facts.TCP_CC_OBJECT}"
map = "bpfoom_demo"
name = "{self.name}"
[attach.tunables]
min_ssthresh = {min_ssthresh}
cwnd_increments_per_rtt = {increments}
{extra}""")
            return self.path

        @property
        def pin(self) -> Path:
            return self.pin_dir / "cc"

        def link(self) -> bpfoom.LinkInfo:
            with bpfoom.Link.from_pinned(self.pin) as link:
                return link.info()

    config = Config()
    yield config
    if config.pin.exists():  # a failed test: detach what the daemon left
        with bpfoom.Link.from_pinned(config.pin) as link:
            link.detach()
            link.unpin()


@pytest.fixture
def systemd(tmp_path):
    """A NOTIFY_SOCKET to start daemons with (``env``), and the messages it receives."""

    class Notifications:
        env = {"NOTIFY_SOCKET": str(tmp_path / "notify.sock")}

        def __init__(self, sock: socket.socket) -> None:
            self.sock = sock

        def next(self) -> dict[str, str]:
            """The next datagram as KEY=VALUE pairs."""
            return dict(line.split("=", 1) for line in self.sock.recv(4096).decode().splitlines())

    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(Notifications.env["NOTIFY_SOCKET"])
        listener.settimeout(WAIT_S)
        yield Notifications(listener)



def test_start_attaches_and_sigterm_detaches(daemons, cc, tmp_path):
    daemon = daemons(cc.write(tmp_path))
    attached = daemon.wait_event("attached")
    ready = daemon.wait_event("ready")
    assert ready["attached"] == 1
    assert facts.times_registered(cc.name) == 1
    assert attached["policy"] == cc.name and attached["link"] == cc.link().id
    daemon.signal(signal.SIGTERM)
    daemon.wait_event("detached")
    assert daemon.wait() == 0
    assert facts.times_registered(cc.name) == 0
    assert not cc.pin.exists()


def test_sighup_changes_a_data_tunable_in_place(daemons, cc, tmp_path):
    daemon = daemons(cc.write(tmp_path, increments=1))
    daemon.wait_event("ready")
    before = cc.link()
    cc.write(tmp_path, increments=3)
    daemon.signal(signal.SIGHUP)
    changed = daemon.wait_event("tunables_set")
    assert changed["set.cwnd_increments_per_rtt"] == 3
    daemon.wait_event("reloaded")
    after = cc.link()
    assert (after.id, after.map_id) == (before.id, before.map_id)  # same object, changed in place
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0


def test_sighup_changes_a_rodata_tunable_by_a_link_update(daemons, cc, tmp_path):
    daemon = daemons(cc.write(tmp_path, min_ssthresh=4))
    daemon.wait_event("ready")
    before = cc.link()
    cc.write(tmp_path, min_ssthresh=9)
    daemon.signal(signal.SIGHUP)
    updated = daemon.wait_event("updated")
    daemon.wait_event("reloaded")
    after = cc.link()
    assert after.id == before.id == updated["link"]  # the same link...
    assert after.map_id != before.map_id  # ...now runs a newly loaded object
    assert facts.times_registered(cc.name) == 1  # never unregistered, never twice
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    assert facts.times_registered(cc.name) == 0


@pytest.mark.parametrize("breakage, event, words", [
    (lambda text: text + "[attach.bogus]\n", "reload_refused", ["unknown key 'bogus'"]),
    # a misspelt tunable is found by the check, before anything is loaded
    (lambda text: text.replace("min_ssthresh", "min_sshtresh"), "reload_refused",
     ["did you mean 'min_ssthresh'"]),
])
def test_a_bad_config_on_sighup_keeps_the_running_one(daemons, cc, tmp_path, breakage, event, words):
    daemon = daemons(cc.write(tmp_path))
    daemon.wait_event("ready")
    before = cc.link()
    cc.path.write_text(breakage(cc.path.read_text()))
    daemon.signal(signal.SIGHUP)
    refused = daemon.wait_event(event)
    for word in words:
        assert word in refused["error"]
    assert cc.link().map_id == before.map_id and facts.times_registered(cc.name) == 1
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    assert facts.times_registered(cc.name) == 0


def test_sigkill_then_restart_readopts_the_pinned_link(daemons, cc, tmp_path):
    config = cc.write(tmp_path)
    first = daemons(config)
    first.wait_event("ready")
    original = cc.link()
    first.signal(signal.SIGKILL)
    assert first.wait() == -signal.SIGKILL
    assert facts.times_registered(cc.name) == 1 and cc.pin.exists()  # the pin kept it attached

    second = daemons(config)
    adopted = second.wait_event("adopted")
    second.wait_event("ready")
    assert adopted["link"] == original.id
    assert facts.times_registered(cc.name) == 1  # no second attach
    assert cc.link().id == original.id
    # the pinned link runs this very configuration: kept as it runs, its object with it
    assert adopted["how"].startswith("kept") and cc.link().map_id == original.map_id
    struct_ops_links = [i for i in bpfoom.links() if i.map_id == cc.link().map_id]
    assert len(struct_ops_links) == 1
    second.signal(signal.SIGTERM)
    assert second.wait() == 0
    assert facts.times_registered(cc.name) == 0 and not cc.pin.exists()


def test_on_exit_keep_leaves_pinned_policies_attached(daemons, cc, tmp_path):
    daemon = daemons(cc.write(tmp_path, on_exit="keep"))
    daemon.wait_event("ready")
    daemon.signal(signal.SIGINT)
    daemon.wait_event("kept")
    assert daemon.wait() == 0
    assert facts.times_registered(cc.name) == 1 and cc.pin.exists()


def test_start_is_all_or_nothing(daemons, cc, tmp_path):
    config = cc.write(tmp_path, extra=f"""
[[attach]]
id = "clash"
policy = "{facts.TCP_CC_OBJECT}"
map = "bpfoom_demo2"
name = "{cc.name}"
""")  # the second entry registers the same name again: EEXIST
    daemon = daemons(config)
    failed = daemon.wait_event("start_failed")
    assert failed["entry"] == "clash" and failed["rolled_back"] == 1
    assert daemon.wait() == 1
    assert facts.times_registered(cc.name) == 0
    assert list(cc.pin_dir.iterdir()) == []


def test_readiness_is_reported_to_systemd(daemons, cc, tmp_path, systemd):
    daemon = daemons(cc.write(tmp_path), env=systemd.env)
    ready = systemd.next()
    assert ready["READY"] == "1" and ready["MAINPID"] == str(daemon.proc.pid)
    assert facts.times_registered(cc.name) == 1  # READY only once attached
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    daemon.signal(signal.SIGHUP)
    reloading = systemd.next()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    # Type=notify-reload matches RELOADING=1 to this reload by its CLOCK_MONOTONIC stamp
    assert reloading["RELOADING"] == "1" and before <= int(reloading["MONOTONIC_USEC"]) <= after
    assert reloading["STATUS"] == f"reloading {cc.path}"
    reloaded = systemd.next()
    assert reloaded["READY"] == "1" and reloaded["STATUS"] == "1 policy attached"
    daemon.signal(signal.SIGTERM)
    assert systemd.next()["STOPPING"] == "1"
    assert daemon.wait() == 0


def test_a_refused_reload_tells_systemd_why(daemons, cc, tmp_path, systemd):
    """`systemctl reload` must not look like it applied a config the daemon refused."""
    daemon = daemons(cc.write(tmp_path), env=systemd.env)
    assert systemd.next()["STATUS"] == "1 policy attached"
    cc.path.write_text(cc.path.read_text() + "[attach.bogus]\n")
    daemon.signal(signal.SIGHUP)
    assert systemd.next()["RELOADING"] == "1"
    after = systemd.next()
    assert after["READY"] == "1"  # the reload is over (systemd waits for this)...
    assert after["STATUS"].startswith("reload failed, previous configuration kept")
    assert "unknown key 'bogus'" in after["STATUS"]  # ...and the status says why
    cc.write(tmp_path)
    daemon.signal(signal.SIGHUP)
    assert systemd.next()["RELOADING"] == "1"
    assert systemd.next()["STATUS"] == "1 policy attached"  # fixed: said so
    daemon.signal(signal.SIGTERM)
    assert systemd.next()["STOPPING"] == "1"
    assert daemon.wait() == 0


def test_a_log_that_cannot_be_written_detaches_nothing(daemons, cc, tmp_path, systemd):
    """A full disk under the log file is reported on stderr; the policies stay attached."""
    def write(**tunables) -> Path:
        path = cc.write(tmp_path, **tunables)
        path.write_text(path.read_text().replace('log_format = "json"',
                                                 'log_format = "json"\nlog = "/dev/full"'))
        return path

    daemon = daemons(write(), env=systemd.env)
    assert systemd.next()["READY"] == "1"
    assert facts.times_registered(cc.name) == 1 and cc.pin.exists()
    write(increments=2)
    daemon.signal(signal.SIGHUP)  # a reload logs too
    assert systemd.next()["RELOADING"] == "1"
    assert systemd.next()["STATUS"] == "1 policy attached"
    assert facts.times_registered(cc.name) == 1
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    assert facts.times_registered(cc.name) == 0 and not cc.pin.exists()
    reports = [line for line in daemon.seen + list(daemon.lines.queue) if isinstance(line, str)]
    assert any("cannot write the log" in line and "No space left" in line for line in reports)


@pytest.mark.parametrize("text, words", [
    ("[[attach]]\npolicy = 'largest_leaf'\ncgroupp = '/x'\n", ["unknown key 'cgroupp'", "'cgroup'"]),
    ("[daemon]\non_exit = 'kep'\n", ["on_exit", "'keep'"]),
    ("[[attach]]\ncgroup = '/x'\n", ["policy is missing"]),
    ("[[attach\n", ["not valid TOML"]),
])
def test_config_errors_name_the_key(tmp_path, text, words):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    done = subprocess.run([sys.executable, "-P", "-m", "bpfoom", "run", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    line = done.stderr.strip()
    assert line.startswith("bpfoom: ") and "\n" not in line
    for word in words:
        assert word in line


def test_sighup_adds_and_removes_entries(daemons, cc, tmp_path):
    second = facts.unique_cc_name()
    addition = f"""
[[attach]]
id = "second"
policy = "{facts.TCP_CC_OBJECT}"
map = "bpfoom_demo2"
name = "{second}"
"""
    daemon = daemons(cc.write(tmp_path))
    daemon.wait_event("ready")
    first_link = cc.link().id
    cc.write(tmp_path, extra=addition)
    daemon.signal(signal.SIGHUP)
    added = daemon.wait_event("attached")
    assert added["id"] == "second" and added["policy"] == second
    assert daemon.wait_event("reloaded")["changes"] == 1
    assert facts.times_registered(second) == 1 and (cc.pin_dir / "second").exists()
    assert cc.link().id == first_link  # untouched

    cc.write(tmp_path)
    daemon.signal(signal.SIGHUP)
    removed = daemon.wait_event("detached")
    assert removed["id"] == "second"
    daemon.wait_event("reloaded")
    assert facts.times_registered(second) == 0 and not (cc.pin_dir / "second").exists()
    assert facts.times_registered(cc.name) == 1
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0


def test_a_reload_that_fails_halfway_rolls_back(daemons, cc, tmp_path):
    """The first change applies (a link update), the second cannot (its name is taken): the
    first is undone and the running configuration stays whole."""
    daemon = daemons(cc.write(tmp_path, min_ssthresh=4))
    daemon.wait_event("ready")
    before = cc.link()
    cc.write(tmp_path, min_ssthresh=8, extra=f"""
[[attach]]
id = "clash"
policy = "{facts.TCP_CC_OBJECT}"
map = "bpfoom_demo2"
name = "{cc.name}"
""")
    daemon.signal(signal.SIGHUP)
    failed = daemon.wait_event("reload_failed")
    assert "EEXIST" in failed["error"]
    after = cc.link()
    assert after.id == before.id
    assert after.map_id == before.map_id  # the update was switched back
    assert facts.times_registered(cc.name) == 1 and not (cc.pin_dir / "clash").exists()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    assert facts.times_registered(cc.name) == 0


def test_text_log_lines(daemons, cc, tmp_path):
    config = cc.write(tmp_path)
    config.write_text(config.read_text().replace('log_format = "json"', 'log_format = "text"'))
    daemon = daemons(config)
    deadline = time.monotonic() + WAIT_S
    while True:
        line = daemon.lines.get(timeout=max(0.1, deadline - time.monotonic()))
        assert isinstance(line, str)
        if " ready " in line:
            break
    assert " info ready attached=1 " in line
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0


@pytest.mark.parametrize("example", sorted((facts.REPO / "examples" / "daemon").glob("*.toml")),
                         ids=lambda p: p.name)
def test_example_configs_pass_the_check(example):
    done = subprocess.run([sys.executable, "-P", "-m", "bpfoom", "run", "--check", str(example)],
                          capture_output=True, text=True, timeout=60, cwd="/")
    assert done.returncode == 0, done.stderr
    assert re.search(r": \d+ polic(y|ies), pinned under ", done.stdout), done.stdout


def test_check_names_a_missing_policy(tmp_path):
    path = tmp_path / "typo.toml"
    path.write_text("[[attach]]\npolicy = 'largest_lef'\n")
    done = subprocess.run([sys.executable, "-P", "-m", "bpfoom", "run", "--check", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "did you mean 'largest_leaf'" in done.stderr


def test_a_second_daemon_on_the_same_pins_is_refused(daemons, cc, tmp_path):
    config = cc.write(tmp_path)
    first = daemons(config)
    first.wait_event("ready")
    second = subprocess.run([sys.executable, "-P", "-m", "bpfoom", "run", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert second.returncode == 1
    assert "EBUSY" in second.stderr and "another bpfoom daemon" in second.stderr
    assert facts.times_registered(cc.name) == 1 and cc.pin.exists()  # the first one is untouched
    first.signal(signal.SIGTERM)
    assert first.wait() == 0
