"""`bpfoom events --follow` waits on its sources and on the pin directory in one wait.

A policy attached (pinned) after the follower started is found without a
polling round: the pin directory is watched (inotify), so its decisions are
printed as they come.  The decisions are real: the writer object
(tests/bpf/oom/decisions_from_tcp_cc.bpf.c) sends one per connection it
starts, on any kernel.
"""
from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
import time

import facts
from decisions_writer import WRITER, bpfoom_cli, connect_with


def read_lines(stream, want: int, timeout: float) -> list[dict]:
    lines: list[dict] = []
    pending = b""
    deadline = time.monotonic() + timeout
    while len(lines) < want:
        ready, _, _ = select.select([stream], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = stream.read1(65536)
        if not chunk:
            break
        pending += chunk
        *complete, pending = pending.split(b"\n")
        lines += [json.loads(line) for line in complete]
    return lines


def test_a_policy_pinned_after_the_follower_started_is_followed(tcp_struct_ops, bpffs_dir):
    follower = subprocess.Popen([sys.executable, "-P", "-m", "bpfoom", "events", "--follow",
                                 "--json", "--no-kills", "--pin-dir", str(bpffs_dir)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    name, pin = facts.unique_cc_name(), bpffs_dir / "writer"
    try:
        time.sleep(1.0)  # the follower is waiting on an empty directory
        assert follower.poll() is None, follower.stderr.read()
        done = bpfoom_cli("attach", str(WRITER), "--name", name, "--pin", str(pin))
        assert done.returncode == 0, done.stderr
        time.sleep(0.5)
        connect_with(name, 3)
        lines = read_lines(follower.stdout, 3, timeout=30)
        assert [(line["kind"], line["policy"]) for line in lines] == [("decision", "tcp_decisions")] * 3
    finally:
        follower.send_signal(signal.SIGINT)
        follower.wait(timeout=60)
        follower.stdout.close()
        follower.stderr.close()
        if pin.exists():
            bpfoom_cli("detach", "--all", "--pin", str(pin))
    assert follower.returncode == 130
