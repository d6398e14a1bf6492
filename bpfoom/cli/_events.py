"""``bpfoom events``: the decisions of policies attached with ``bpfoom attach`` and, while
following, every OOM kill on the machine (a KillWatcher), merged in time order."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ..errors import BpfError
from ..events import DecisionEvent

__all__ = ["add_parser", "event_json"]

_IDLE_MS = 200
# Records of the two sources reach us in separate polls: hold each event this long
# so that one stamped earlier on the other source can still be printed before it.
_REORDER_NS = 500_000_000

_JSON_EPILOG = """\
--json: one object per line, each with "schema" (the version of that kind's fields: 1 for
kill, oom_no_kill and overrun; a decision's is DecisionEvent's), "kind", "monotonic_ns"
(CLOCK_MONOTONIC, the same clock for every kind) and "time" (ISO 8601, UTC).
  "kind": "decision"     (schema 2) a policy's decision: "policy", "action", "reason",
                         "scope_cgroup_id", "oom_cgroup_id", "victim_cgroup_id",
                         "usage_bytes", "pids", "nr_pids", "candidates" (how many were
                         compared), "error": ENAME|null, and why: the best ranked in
                         "considered", the "excluded" by reason, the "granularity"
                         applied and "oom_group_cgroup_id" (memory.oom.group)
                         (every field: docs/surfaces.md, "Decisions explained")
  "kind": "kill"         (with --follow) the kernel marked an OOM victim: "policy" (the
                         BPF policy that chose it, or "default"), "by_bpf", "pid", "tgid",
                         "comm", "uid", "oom_score_adj", "victim_cgroup_id", "oom_cgroup_id",
                         "constraint", "constraint_text", "oom_seq", "victim_nr"
  "kind": "oom_no_kill"  (with --follow) an OOM ended without a victim: "pid", "tgid",
                         "comm", "oom_cgroup_id", "constraint", "handled", "oom_seq"
  "kind": "overrun"      (with --follow) kill records were lost: "lost", "total_lost"
examples:
  bpfoom events --follow --json | jq 'select(.kind == "kill") | .pid'
  bpfoom events --json | jq .pids"""


def event_json(event) -> dict:
    """The JSON object of a decision or kill-watcher event, with its "kind"."""
    record = event.to_json()
    if isinstance(event, DecisionEvent):
        record = {"schema": record.pop("schema"), "kind": "decision", **record}
    return record


def _events(args: argparse.Namespace) -> int:
    from .._pinned_events import PinnedEvents, event_pins

    def show(event) -> None:
        if args.json:
            sys.stdout.write(json.dumps(event_json(event)) + "\n")
        else:
            print(f"{event.wall_time.isoformat(timespec='milliseconds')}  {event}")

    waiting: list = []

    def flush(everything: bool) -> None:
        waiting.sort(key=lambda event: event.monotonic_ns)
        horizon = time.monotonic_ns() - _REORDER_NS
        while waiting and (everything or waiting[0].monotonic_ns <= horizon):
            show(waiting.pop(0))
        sys.stdout.flush()

    watcher = _start_watcher(waiting.append) if args.follow and not args.no_kills else None
    root = Path(args.pin_dir)
    readers: dict[Path, PinnedEvents] = {}
    try:
        while True:
            for path in event_pins(root):
                if path not in readers:
                    readers[path] = PinnedEvents(path, waiting.append)
            for path, reader in list(readers.items()):
                if not path.exists():  # detached meanwhile
                    readers.pop(path).close()
            handled = sum(reader.poll(0) for reader in readers.values())
            if watcher is not None:
                handled += watcher.poll(0)
            if not args.follow and handled == 0:
                flush(everything=True)
                return 0
            flush(everything=False)
            if handled == 0:
                time.sleep(_IDLE_MS / 1000)
    finally:
        flush(everything=True)
        for reader in readers.values():
            reader.close()
        if watcher is not None:
            watcher.close()


def _start_watcher(deliver):
    """A KillWatcher feeding `deliver`, or None (said on stderr) where it cannot run."""
    from ..kill_watch import KillWatcher

    try:
        watcher = KillWatcher()
    except BpfError as err:
        print(f"bpfoom: not showing OOM kills: {err}", file=sys.stderr)
        return None
    watcher.on_event(deliver)
    return watcher


def add_parser(commands: argparse._SubParsersAction) -> None:
    from ._attach import DEFAULT_PIN_DIR

    parser = commands.add_parser(
        "events", help="policy decisions and (with --follow) every OOM kill on the machine",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Print the decisions waiting in the event buffers of policies attached with "
                    "`bpfoom attach` (pinned under --pin-dir).  With --follow, keep printing new "
                    "ones, and every OOM kill on the machine whoever made it (a policy, another "
                    "BPF program or the kernel's killer), in time order, until interrupted.  The "
                    "daemon (`bpfoom run`) logs its own policies' decisions instead.",
        epilog=_JSON_EPILOG)
    parser.add_argument("--follow", "-f", action="store_true",
                        help="keep waiting for decisions, and show OOM kills as they happen")
    parser.add_argument("--no-kills", action="store_true",
                        help="with --follow, show only the policies' decisions")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--pin-dir", default=str(DEFAULT_PIN_DIR), metavar="DIR",
                        help=f"where attach pinned the policies (default {DEFAULT_PIN_DIR})")
    parser.set_defaults(run=_events)
