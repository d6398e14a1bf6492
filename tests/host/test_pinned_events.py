"""Decisions read through the pins `bpfoom attach` leaves: the writer's own layout, losses reported.

The writer is a tcp_congestion_ops (tests/bpf/oom/decisions_from_tcp_cc.bpf.c)
that sends one policy_event.h decision per connection it starts, so this runs
on any kernel; tests/guest/test_policies_overrun.py does the same with an OOM
policy and real OOMs.
"""
from __future__ import annotations

import json

from decisions_writer import attached_writer, bpfoom_cli, connect_with

CONNECTIONS = 12  # a one-page ring holds 5 decisions


def test_events_decodes_pinned_decisions_and_reports_what_the_ring_lost(tcp_struct_ops,
                                                                         bpffs_dir):
    with attached_writer(bpffs_dir) as writer:
        assert {p.name for p in bpffs_dir.iterdir()} == {"writer", "writer_events",
                                                         "writer_events_dropped"}
        connect_with(writer.name, CONNECTIONS)
        shown = bpfoom_cli("events", "--json", "--pin-dir", str(bpffs_dir))
        assert shown.returncode == 0, shown.stderr
        events = [json.loads(line) for line in shown.stdout.splitlines()]
        decisions = [e for e in events if e["kind"] == "decision"]
        overruns = [e for e in events if e["kind"] == "overrun"]
        assert decisions and all((d["policy"], d["action"], d["reason"], d["schema"]) ==
                                 ("tcp_decisions", "declined", "none", 2) for d in decisions)
        assert len(overruns) == 1 and events[-1] == overruns[0]  # after what did arrive
        assert overruns[0]["source"] == "writer"
        assert overruns[0]["lost"] == overruns[0]["total_lost"] == CONNECTIONS - len(decisions)
    assert list(bpffs_dir.iterdir()) == []  # detach --all removed every pin
