"""Decisions read through the pins `bpfoom attach` leaves: the writer's own layout, losses reported.

The writer is a tcp_congestion_ops (tests/bpf/oom/decisions_from_tcp_cc.bpf.c)
that sends one policy_event.h decision per connection it starts, so this runs
on any kernel; tests/guest/test_policies_overrun.py does the same with an OOM
policy and real OOMs.
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys

import facts

WRITER = facts.REPO / "tests" / "bpf" / "oom" / "decisions_from_tcp_cc.bpf.o"
CONNECTIONS = 12  # a one-page ring holds 5 decisions


def bpfoom(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-P", "-m", "bpfoom", *args], capture_output=True,
                          text=True, timeout=120)


def connect_with(congestion_control: str, count: int) -> None:
    """Open and close ``count`` loopback connections whose client uses ``congestion_control``."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        for _ in range(count):
            with socket.socket() as client:
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION,
                                  congestion_control.encode())
                client.connect(server.getsockname())
                server.accept()[0].close()


def test_events_decodes_pinned_decisions_and_reports_what_the_ring_lost(tcp_struct_ops,
                                                                         bpffs_dir):
    name, pin = facts.unique_cc_name(), bpffs_dir / "writer"
    done = bpfoom("attach", str(WRITER), "--name", name, "--ring-size", "4096", "--pin", str(pin))
    assert done.returncode == 0, done.stderr
    assert {p.name for p in bpffs_dir.iterdir()} == {"writer", "writer_events",
                                                     "writer_events_dropped"}
    try:
        connect_with(name, CONNECTIONS)
        shown = bpfoom("events", "--json", "--pin-dir", str(bpffs_dir))
        assert shown.returncode == 0, shown.stderr
        events = [json.loads(line) for line in shown.stdout.splitlines()]
        decisions = [e for e in events if e["kind"] == "decision"]
        overruns = [e for e in events if e["kind"] == "overrun"]
        assert decisions and all((d["policy"], d["action"], d["reason"], d["schema"]) ==
                                 ("tcp_decisions", "declined", "none", 2) for d in decisions)
        assert len(overruns) == 1 and events[-1] == overruns[0]  # after what did arrive
        assert overruns[0]["source"] == "writer"
        assert overruns[0]["lost"] == overruns[0]["total_lost"] == CONNECTIONS - len(decisions)
    finally:
        gone = bpfoom("detach", "--all", "--pin", str(pin))  # a tcp_congestion_ops
    assert gone.returncode == 0, gone.stderr
    assert list(bpffs_dir.iterdir()) == []


def test_a_ring_size_for_an_object_without_decisions_is_refused(tcp_struct_ops):
    done = bpfoom("attach", str(facts.TCP_CC_OBJECT), "--map", "bpfoom_demo", "--name",
                  facts.unique_cc_name(), "--ring-size", "4096")
    assert done.returncode == 1
    assert "no `events` ring buffer" in done.stderr and "policy_event.h" in done.stderr
