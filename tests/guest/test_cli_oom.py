"""The `bpfoom` command handling a real OOM in the VM: attach, list, events, detach."""
from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
from pathlib import Path

import bpfoom
from oomtest import memory_events, wait_until, waiting_in_epoll


def bpfoom_cli(*args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-P", "-m", "bpfoom", *args], capture_output=True,
                          text=True, timeout=300)
    return done


def test_attach_list_events_detach_around_an_oom(cgroup, memory_hog):
    cgroup.write("memory.max", str(48 << 20))
    big, small = cgroup.child("big"), cgroup.child("small")
    large, little = memory_hog(big, 40), memory_hog(small, 12)

    done = bpfoom_cli("attach", "largest_leaf", "--cgroup", str(cgroup.path), "--json")
    assert done.returncode == 0, done.stderr
    attachment = json.loads(done.stdout)["attachment"]
    assert attachment["policy"] == "largest_leaf" and attachment["kind"] == "oom"
    assert attachment["cgroup"] == str(cgroup.path) and attachment["cgroup_id"] == cgroup.id
    pin = Path(attachment["pin"])
    assert pin.exists() and Path(f"{pin}_events").exists()
    try:
        listed = json.loads(bpfoom_cli("list", "--json").stdout)["attachments"]
        assert [e["link_id"] for e in listed if e["cgroup_id"] == cgroup.id] == [attachment["link_id"]]

        little.release()
        assert little.wait_allocated()
        large.release()
        assert large.wait_dead() == "SIGKILL"  # decided by the policy the command left attached
        assert little.alive and memory_events(big)["oom_kill"] >= 1

        events = bpfoom_cli("events", "--json")
        assert events.returncode == 0, events.stderr
        decisions = [json.loads(line) for line in events.stdout.splitlines()]
        killed = [d for d in decisions if d["action"] == "killed"]
        assert killed and killed[0]["schema"] == 2
        assert large.pid in killed[0]["pids"] and killed[0]["victim_cgroup_id"] == big.id

        # --follow prints the next decision as it happens.
        follower = subprocess.Popen([sys.executable, "-P", "-m", "bpfoom", "events", "--follow",
                                     "--json"], stdout=subprocess.PIPE, text=True)
        try:
            # A second OOM before the follower waits would happen before it looked.
            wait_until(lambda: waiting_in_epoll(follower.pid), timeout=120,
                       what="events --follow to wait for events")
            again = memory_hog(big, 40)
            again.release()
            assert again.wait_dead() == "SIGKILL"
            ready, _, _ = select.select([follower.stdout], [], [], 60)
            assert ready, "events --follow printed nothing after the second OOM"
            followed = json.loads(follower.stdout.readline())
            while followed["kind"] != "decision":  # --follow shows the machine's kills too
                followed = json.loads(follower.stdout.readline())
            assert again.pid in followed["pids"]
        finally:
            follower.send_signal(signal.SIGINT)
            assert follower.wait(timeout=30) == 130
            follower.stdout.close()
    finally:
        gone = bpfoom_cli("detach", "--cgroup", str(cgroup.path))
    assert gone.returncode == 0, gone.stderr
    assert not pin.exists() and not Path(f"{pin}_events").exists()
    assert all(a.cgroup_id != cgroup.id for a in bpfoom.attached())
    big.close()
    small.close()


def test_a_mistyped_tunable_suggests_the_right_one():
    done = bpfoom_cli("attach", "largest_leaf", "--set", "min_victim_byte=5")
    assert done.returncode == 1
    assert "did you mean 'min_victim_bytes'" in done.stderr


def test_a_bad_tunable_value_is_refused_before_load():
    done = bpfoom_cli("attach", "largest_leaf", "--set", "min_victim_bytes=-1")
    assert done.returncode == 1
    assert "EINVAL" in done.stderr and "min_victim_bytes" in done.stderr
