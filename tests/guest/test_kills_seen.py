"""Every OOM kill seen: bpfoom.KillWatcher reports each victim the kernel marked, once,
attributed to the policy that chose it (or "default"), every OOM that ended without a
kill, and ring buffer overruns as their own events.

Each test compares the watcher's events with what the kernel itself says: the
"Killed process" lines of its log, memory.events, the policies' decisions.
"""
from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import bpfoom
from daemon_process import DaemonProcess
from oomtest import REPO, killed_pids, memory_events, sigkilled, wait_until
from policytest import KERNEL_REASON, collect, holders, kills, overrun
from policytest import load_policy  # noqa: F401 (a fixture)


class Watched:
    """A running KillWatcher and the events it delivered so far."""

    def __init__(self, watcher: bpfoom.KillWatcher) -> None:
        self.watcher = watcher
        self.events: list = []
        watcher.on_event(self.events.append)

    def until(self, done, timeout: float = 60.0, what: str = "") -> list:
        """Read events until `done(events)`; fails the test after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not done(self.events):
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}; events: {self.events[-5:]}")
            self.watcher.poll(0.5)
        return self.events

    def drain(self, quiet_s: float = 2.0, limit_s: float = 60.0) -> list:
        """Read until nothing arrived for `quiet_s` seconds (or `limit_s` passed)."""
        deadline = time.monotonic() + limit_s
        while self.watcher.poll(quiet_s) and time.monotonic() < deadline:
            pass
        return self.events


@pytest.fixture
def watched() -> Iterator[Watched]:
    with bpfoom.KillWatcher() as watcher:
        yield Watched(watcher)
    assert watcher.closed


def kill_events(events: list, oom_cgroup: bpfoom.Cgroup) -> list[bpfoom.KillEvent]:
    return [e for e in events if isinstance(e, bpfoom.KillEvent)
            and e.oom_cgroup_id == oom_cgroup.id]


def test_kernel_default_kill_is_seen_once_as_default(watched, cgroups, hogs, kernel_log):
    """No policy: the kernel's own kill appears once, policy "default", with its pid and cgroups."""
    top = cgroups("plain", memory_max="40M")
    leaves = {name: cgroups(f"plain/{name}") for name in ("holder", "alloc")}
    started = holders(hogs, leaves, {"holder": 16}, adj={"holder": 500})
    overrun(hogs, leaves["alloc"], 30)
    assert sigkilled(started["holder"].wait_dead())

    seen = kill_events(watched.drain(), top)
    assert [pid for pid, _ in killed_pids(kernel_log)] == [started["holder"].pid]
    assert [(e.tgid, e.pid) for e in seen] == [(started["holder"].pid,) * 2]
    kill, = seen
    assert (kill.policy, kill.by_bpf) == ("default", False)
    assert kill.victim_cgroup_id == leaves["holder"].id
    assert kill.constraint == "CONSTRAINT_MEMCG" and kill.constraint_text is None
    assert kill.oom_score_adj == 500
    assert kill.comm.startswith("python")
    assert (kill.oom_seq, kill.victim_nr) >= (1, 1)
    assert memory_events(top)["oom_kill"] == 1
    record = kill.to_json()
    assert (record["schema"], record["kind"], record["policy"]) == (1, "kill", "default")
    assert abs(kill.wall_time.timestamp() - time.time()) < 120


def test_bpf_policy_kill_is_seen_once_under_its_name(watched, load_policy, cgroups, hogs,
                                                    kernel_log):
    """largest_leaf kills: one kill event per victim, named "largest_leaf", matching its decision."""
    policy = load_policy("largest_leaf")
    top = cgroups("chosen", memory_max="56M")
    leaves = {name: cgroups(f"chosen/{name}") for name in ("a", "b", "c", "alloc")}
    policy.attach(cgroup=top)
    started = holders(hogs, leaves, {"a": 14, "b": 12, "c": 10})
    overrun(hogs, leaves["alloc"], 24)
    assert sigkilled(started["a"].wait_dead())
    decision, = kills(collect(policy, lambda seen: kills(seen)))

    seen = kill_events(watched.drain(), top)
    assert [pid for pid, reason in killed_pids(kernel_log)] == [started["a"].pid]
    assert [e.tgid for e in seen] == [started["a"].pid]
    kill, = seen
    assert (kill.policy, kill.by_bpf) == ("largest_leaf", True)
    assert kill.victim_cgroup_id == leaves["a"].id == decision.victim_cgroup_id
    assert (kill.tgid,) == decision.pids
    assert decision.monotonic_ns <= kill.monotonic_ns  # stamped when the handler started
    assert memory_events(leaves["a"])["oom_kill"] == 1
    assert all(hog.alive() for name, hog in started.items() if name != "a")


def test_declined_oom_shows_the_decline_then_the_kernels_kill(watched, load_policy, cgroups,
                                                               hogs, kernel_log):
    """largest_leaf declines (below min_victim_bytes): its decision, then the kernel's kill."""
    policy = load_policy("largest_leaf", min_victim_bytes=64 << 20)
    top = cgroups("declined", memory_max="40M")
    leaves = {name: cgroups(f"declined/{name}") for name in ("holder", "alloc")}
    policy.attach(cgroup=top)
    started = holders(hogs, leaves, {"holder": 16}, adj={"holder": 500})
    overrun(hogs, leaves["alloc"], 30)
    assert sigkilled(started["holder"].wait_dead())
    decisions = collect(policy, lambda seen: any(e.action == "declined" for e in seen))

    kill, = kill_events(watched.drain(), top)
    declined = next(e for e in decisions if e.action == "declined")
    assert declined.reason == "below_minimum"
    assert (kill.policy, kill.tgid) == ("default", started["holder"].pid)
    assert killed_pids(kernel_log) == [(started["holder"].pid, KERNEL_REASON)]
    assert declined.oom_cgroup_id == kill.oom_cgroup_id == top.id
    assert declined.monotonic_ns < kill.monotonic_ns
    timeline = sorted([declined, kill], key=lambda e: e.monotonic_ns)
    assert [type(e).__name__ for e in timeline] == ["DecisionEvent", "KillEvent"]


def test_oom_with_nothing_killable_ends_in_an_event(watched, cgroups, hogs, kernel_log):
    """Only an unkillable task in the memcg: every OOM it causes ends in an oom_no_kill event."""
    cg = cgroups("stuck", memory_max="16M")
    hog = hogs(cg, 32, oom_score_adj=-1000, gated=True)
    hog.go()
    watched.until(lambda seen: any(isinstance(e, bpfoom.OomNoKillEvent)
                                   and e.oom_cgroup_id == cg.id for e in seen),
                  what="an OOM that ended without a kill")
    before_stop = len(watched.events)
    hog.stop()
    events = watched.drain()

    ours = [e for e in events[:before_stop] if getattr(e, "oom_cgroup_id", None) == cg.id]
    assert not [e for e in ours if isinstance(e, bpfoom.KillEvent)]
    assert not killed_pids(kernel_log)
    # Once SIGKILLed, the hog may hit the OOM again: the kernel then marks the dying
    # task itself as a victim (it gets the reserves to exit), and that is seen too.
    later = [e for e in events[before_stop:] if isinstance(e, bpfoom.KillEvent)
             and e.oom_cgroup_id == cg.id]
    assert all((e.tgid, e.oom_score_adj) == (hog.pid, -1000) for e in later)
    no_kill = ours[0]
    assert isinstance(no_kill, bpfoom.OomNoKillEvent)
    assert (no_kill.tgid, no_kill.handled) == (hog.pid, False)
    assert no_kill.constraint == "CONSTRAINT_MEMCG"
    assert no_kill.to_json()["kind"] == "oom_no_kill"
    assert len({e.oom_seq for e in ours}) == len(ours)  # one event per OOM


# A process that joins the cgroup, forks `count` sleeping children (all OOM-killable)
# and says "ready" once they all are inside.
_SLEEPERS = r"""
import os, sys, time
procs, count = sys.argv[1], int(sys.argv[2])
with open("/proc/self/oom_score_adj", "w") as f:
    f.write("0")
with open(procs, "w") as f:
    f.write(str(os.getpid()))
for _ in range(count):
    if os.fork() == 0:
        time.sleep(3600)
        os._exit(0)
print("ready", flush=True)
time.sleep(3600)
"""


def test_ring_buffer_overrun_is_reported_and_counts_add_up(cgroups, hogs, kernel_log):
    """A one-page ring buffer, unread during a memory.oom.group kill of ~40 tasks: the kill
    events received plus the overrun's lost count equal the kills memory.events counted."""
    page = os.sysconf("SC_PAGE_SIZE")
    group = cgroups("group", memory_max="48M", oom_group=True)
    sleepers = subprocess.Popen([sys.executable, "-S", "-c", _SLEEPERS,
                                 str(group.path / "cgroup.procs"), "40"],
                                stdout=subprocess.PIPE, text=True)
    try:
        assert sleepers.stdout.readline().strip() == "ready"
        with bpfoom.KillWatcher(ring_size=page) as small:
            hog = hogs(group, 64)
            assert sigkilled(hog.wait_dead())
            wait_until(lambda: not group.procs, what="the whole group to die")
            time.sleep(1)  # nothing read yet: the buffer is full
            events = Watched(small).drain()
            assert small.events_dropped > 0
    finally:
        sleepers.kill()
        sleepers.wait()
        sleepers.stdout.close()

    received = kill_events(events, group)
    overruns = [e for e in events if isinstance(e, bpfoom.OverrunEvent)]
    # The kernel kills (and counts in memory.events) its chosen task twice under
    # memory.oom.group: first as the victim, then again as a member of the group.
    # It marks it as a victim once, and the watcher reports each victim once.
    killed = [pid for pid, _ in killed_pids(kernel_log)]
    assert len(killed) == memory_events(group)["oom_kill"]
    victims = set(killed)
    assert len(victims) >= 42  # the sleepers' parent, its 40 children, the hog
    assert overruns, f"no overrun event among {len(events)} events"
    lost = sum(e.lost for e in overruns)
    assert lost == overruns[-1].total_lost
    assert 0 < len(received) < len(victims)
    assert len(received) + lost == len(victims)
    assert len({e.tgid for e in received}) == len(received)
    assert {e.tgid for e in received} <= victims
    assert overruns[-1].to_json()["kind"] == "overrun"


def test_fentry_program_attached_through_program_attach_runs_until_closed():
    """The object layer's Program.attach on an fentry program (the host kernel may refuse them)."""
    with bpfoom.BpfObject.open(REPO / "tests" / "bpf" / "trace" / "count_calls.bpf.o") as obj:
        obj.rodata["target_tid"] = threading.get_native_id()
        obj.load()
        with obj.programs["count_access"].attach() as link:
            assert link.info().attach_type == "trace_fentry"
            for _ in range(5):
                os.access("/", os.R_OK)
            assert obj.bss["access_calls"] >= 5
        stopped = obj.bss["access_calls"]
        os.access("/", os.R_OK)
        assert obj.bss["access_calls"] == stopped


def link_fds() -> int:
    """How many BPF link fds this process holds."""
    fds = os.listdir("/proc/self/fd")
    return sum(1 for fd in fds if os.path.exists(f"/proc/self/fd/{fd}")
               and os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:bpf_link")


def test_watcher_holds_three_links_and_close_releases_them():
    """The watcher's links are never pinned: closing it drops the only references (detached)."""
    before = link_fds()
    watcher = bpfoom.KillWatcher()
    assert len(watcher.links) == 3
    assert {link.info().attach_type for link in watcher.links} >= {"trace_fentry", "trace_fexit"}
    assert all(link.pinned_path is None for link in watcher.links)
    assert link_fds() == before + 3
    watcher.close()
    assert not watcher.links and watcher.closed
    assert link_fds() == before
    with pytest.raises(bpfoom.ClosedError):
        watcher.poll(0)


def link_fds_of(pid: int) -> int:
    """How many BPF link fds process `pid` holds."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:bpf_link"
        except FileNotFoundError:
            pass
    return count


def bpfoom_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-P", "-m", "bpfoom", *args], capture_output=True,
                          text=True, timeout=300)


@pytest.fixture
def pin_dir() -> Iterator[Path]:
    """A fresh directory on the guest's bpffs, removed with whatever is left in it."""
    path = Path(f"/sys/fs/bpf/bpfoom-kills-seen-{os.getpid()}")
    path.mkdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_events_follow_shows_the_decline_then_the_kill_in_time_order(cgroups, hogs, pin_dir):
    """`bpfoom events --follow --json`: the pinned policy's decline, then the kernel's kill."""
    top = cgroups("cli", memory_max="40M")
    leaves = {name: cgroups(f"cli/{name}") for name in ("holder", "alloc")}
    attached = bpfoom_cli("attach", "largest_leaf", "--cgroup", str(top.path), "--set",
                          f"min_victim_bytes={64 << 20}", "--pin", str(pin_dir / "policy"))
    assert attached.returncode == 0, attached.stderr
    follower = subprocess.Popen([sys.executable, "-P", "-m", "bpfoom", "events", "--follow",
                                 "--json", "--pin-dir", str(pin_dir)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines: list[dict] = []
    try:
        wait_until(lambda: link_fds_of(follower.pid) >= 3, timeout=120,
                   what="`bpfoom events --follow` to attach its kill watcher")
        started = holders(hogs, leaves, {"holder": 16}, adj={"holder": 500})
        overrun(hogs, leaves["alloc"], 30)
        assert sigkilled(started["holder"].wait_dead())
        holder = started["holder"].pid
        pending = b""
        deadline = time.monotonic() + 60
        while not any(line["kind"] == "kill" and line["tgid"] == holder for line in lines):
            # The raw pipe, not readline(): a buffered reader could hold the next line
            # where select() never sees it.
            ready, _, _ = select.select([follower.stdout], [], [], max(0, deadline - time.monotonic()))
            if not ready:
                follower.send_signal(signal.SIGINT)
                pytest.fail(f"no kill line for {holder} within 60 s; lines: {lines}; "
                            f"stderr: {follower.communicate(timeout=60)[1]}")
            pending += os.read(follower.stdout.fileno(), 65536)
            *complete, pending = pending.split(b"\n")
            lines += [json.loads(line) for line in complete]
    finally:
        follower.send_signal(signal.SIGINT)
        assert follower.wait(timeout=60) == 130
        follower.stdout.close()
        follower.stderr.close()
        detached = bpfoom_cli("detach", "--pin", str(pin_dir / "policy"))
    assert detached.returncode == 0, detached.stderr

    assert [line["monotonic_ns"] for line in lines] == sorted(line["monotonic_ns"] for line in lines)
    ours = [line for line in lines if line.get("oom_cgroup_id") == top.id]
    kinds = [(line["kind"], line.get("action"), line.get("policy")) for line in ours]
    assert kinds[0] == ("decision", "declined", "largest_leaf")
    # The kill follows (the allocator may run into OOMs again while its victim exits).
    kill_at = kinds.index(("kill", None, "default"))
    assert kill_at > 0 and kinds.count(("kill", None, "default")) == 1
    kill = ours[kill_at]
    assert (kill["schema"], kill["tgid"]) == (1, holder)
    assert kill["victim_cgroup_id"] == leaves["holder"].id


def test_daemon_logs_each_kill_beside_its_policys_decision(cgroups, hogs, pin_dir, tmp_path):
    """`bpfoom run`: the policy's decision and the kill it made, both logged, the kill once."""
    top = cgroups("daemon", memory_max="56M")
    leaves = {name: cgroups(f"daemon/{name}") for name in ("a", "b", "alloc")}
    config = tmp_path / "bpfoom.toml"
    config.write_text(f"""
[daemon]
pin_dir = "{pin_dir / 'daemon'}"
log_format = "json"

[[attach]]
id = "leaf"
policy = "largest_leaf"
cgroup = "{top.path}"
""")
    daemon = DaemonProcess(config)
    try:
        daemon.wait_event("ready", timeout=120)
        started = holders(hogs, leaves, {"a": 20, "b": 12})
        overrun(hogs, leaves["alloc"], 30)
        assert sigkilled(started["a"].wait_dead())
        kill = daemon.wait_event("kill")
        decision = next((r for r in daemon.seen if isinstance(r, dict)
                         and r.get("event") == "decision"), None) or daemon.wait_event("decision")
        daemon.signal(signal.SIGTERM)
        daemon.wait_event("detached")
        assert daemon.wait() == 0
    finally:
        daemon.stop()
    assert (kill["policy"], kill["tgid"], kill["schema"]) == ("largest_leaf", started["a"].pid, 1)
    assert kill["victim_cgroup_id"] == leaves["a"].id and kill["oom_cgroup_id"] == top.id
    assert decision["action"] == "killed" and started["a"].pid in decision["pids"]
    kills_logged = [r for r in daemon.seen if isinstance(r, dict) and r.get("event") == "kill"
                    and r.get("oom_cgroup_id") == top.id]
    assert len(kills_logged) == 1
    assert not [r for r in daemon.seen if isinstance(r, dict)
                and r.get("event") == "kills_not_watched"]
