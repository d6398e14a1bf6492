"""Kill-watcher records decoded and rendered as their documented JSON.

The records here are packed by hand from bpfoom/bpf/kill_record.h's layout;
the guest tests (tests/guest/test_kills_seen.py) read real ones.
"""
from __future__ import annotations

import json
import struct
import subprocess
import sys
import time

import pytest

import bpfoom

LAYOUT = struct.Struct("<HHHHQQQQiiIhBBII16s64s32s")


def record(kind: int, **fields) -> bytes:
    values = dict(schema=1, size=LAYOUT.size, kind=kind, constraint=3, time_ns=5_000_000_000,
                  oom_seq=7, oom_cgroup_id=100, victim_cgroup_id=101, pid=42, tgid=41, uid=1000,
                  oom_score_adj=-5, by_bpf=0, result=0, victim_nr=1, reserved=0,
                  comm=b"hog\0", policy=b"", constraint_text=b"")
    values.update(fields)
    return LAYOUT.pack(*values.values())


def test_kernel_kill_is_attributed_to_default():
    event = bpfoom.KillWatcher.decode(record(1))
    assert isinstance(event, bpfoom.KillEvent)
    assert (event.policy, event.by_bpf, event.pid, event.tgid, event.comm) == (
        "default", False, 42, 41, "hog")
    assert (event.constraint, event.constraint_text) == ("CONSTRAINT_MEMCG", None)
    line = json.loads(json.dumps(event.to_json()))
    assert list(line)[:2] == ["schema", "kind"] and line["kind"] == "kill"
    assert line["monotonic_ns"] == 5_000_000_000 and line["time"].endswith("+00:00")
    assert "default: killed pid 42 (hog)" in str(event)


def test_bpf_kill_names_the_policy_and_declared_constraint():
    event = bpfoom.KillWatcher.decode(record(1, by_bpf=1, policy=b"largest_leaf\0", constraint=4,
                                      constraint_text=b"BPF_PSI_GUARD\0"))
    assert (event.policy, event.by_bpf) == ("largest_leaf", True)
    assert (event.constraint, event.constraint_text) == ("CONSTRAINT_BPF", "BPF_PSI_GUARD")


def test_oom_without_a_kill_has_its_own_kind():
    event = bpfoom.KillWatcher.decode(record(2, result=1))
    assert isinstance(event, bpfoom.OomNoKillEvent)
    assert event.handled and event.to_json()["kind"] == "oom_no_kill"


def test_overrun_event_json():
    event = bpfoom.OverrunEvent(lost=3, total_lost=10, monotonic_ns=time.monotonic_ns())
    assert event.to_json()["kind"] == "overrun"
    assert (event.to_json()["lost"], event.to_json()["total_lost"]) == (3, 10)


@pytest.mark.parametrize("data", [b"", record(1, schema=2), record(1, size=99), record(9),
                                  record(1)[:-1]])
def test_unknown_records_are_refused(data):
    with pytest.raises(bpfoom.InvalidValueError):
        bpfoom.KillWatcher.decode(data)


def test_events_help_documents_every_kind():
    done = subprocess.run([sys.executable, "-m", "bpfoom", "events", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    for kind in ("decision", "kill", "oom_no_kill", "overrun"):
        assert f'"kind": "{kind}"' in done.stdout
