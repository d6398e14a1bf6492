"""The kill hook (issue 25): run with the victim in its environment, never blocking the event
loop, at most one at a time and one per interval; the kills in between are counted, said once.

Real processes: the hook blocks reading a FIFO the test holds, so "still running" is a fact,
not a timing guess.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from bpfoom import daemon

WAIT_S = 60.0


def hook_command(gate: Path, out: Path) -> list[str]:
    """A hook that waits for the gate to open, then appends its victim's pid to ``out``."""
    code = (f"import os; open({str(gate)!r}).read(); "
            f"open({str(out)!r}, 'a').write(os.environ['BPFOOM_VICTIM_PID'] + ' ' "
            f"+ os.environ['BPFOOM_VICTIM_UNIT'] + chr(10))")
    return [sys.executable, "-c", code]


def finish(hook: daemon.KillHook) -> None:
    deadline = time.monotonic() + WAIT_S
    while hook.running:
        assert time.monotonic() < deadline, "the hook did not end"
        hook.reap()
        time.sleep(0.05)


def test_a_burst_of_kills_runs_the_hook_once_without_waiting_for_it(tmp_path):
    gate, out = tmp_path / "gate", tmp_path / "out"
    os.mkfifo(gate)
    events: list[tuple[str, dict]] = []
    hook = daemon.KillHook(hook_command(gate, out), lambda level, event, **fields: events.append(
        (event, fields)), min_interval=0)
    kill = {"pid": 101, "victim_unit": "web.service"}
    hook.run(kill)  # returns while the hook blocks on the gate
    assert hook.running and not out.exists()
    for pid in (102, 103, 104):
        hook.run({"pid": pid, "victim_unit": "web.service"})
    assert hook.skipped == 3
    assert [e for e, _ in events].count("hook_skipped") == 1  # said once per run of skips

    with open(gate, "w"):
        pass  # the hook reads EOF and goes on
    finish(hook)
    assert out.read_text() == "101 web.service\n"
    os.unlink(gate)
    os.mkfifo(gate)
    hook.run({"pid": 105, "victim_unit": "db.service"})
    started = [fields for event, fields in events if event == "hook_started"]
    assert [(f["pid"], f["skipped_before"]) for f in started] == [(101, 0), (105, 3)]
    with open(gate, "w"):
        pass
    finish(hook)
    assert out.read_text() == "101 web.service\n105 db.service\n"


def test_a_kill_within_the_interval_is_skipped(tmp_path):
    gate, out = tmp_path / "gate", tmp_path / "out"
    os.mkfifo(gate)
    events: list[str] = []
    hook = daemon.KillHook(hook_command(gate, out),
                           lambda level, event, **fields: events.append(event), min_interval=3600)
    hook.run({"pid": 1, "victim_unit": "a.service"})
    with open(gate, "w"):
        pass
    finish(hook)
    hook.run({"pid": 2, "victim_unit": "a.service"})  # the hook ended, but ran < 1 h ago
    assert not hook.running and hook.skipped == 1 and events.count("hook_skipped") == 1
    assert out.read_text() == "1 a.service\n"
