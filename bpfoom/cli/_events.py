"""``bpfoom events``: the decisions of policies attached with ``bpfoom attach`` and, while
following, every OOM kill on the machine (a KillWatcher), merged in time order."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ..bpf.errors import BpfError
from ..oom.events import DecisionEvent

__all__ = ["add_parser", "event_json"]

_RESCAN_S = 1.0  # where the pin directory cannot be watched, it is listed this often
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
  "kind": "overrun"      records were lost: "source" (the policy's link pin name, or
                         "kill_watch" with --follow), "lost", "total_lost"
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
    from ..oom.pinned_events import PinnedEvents, event_pins

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

    def rescan() -> None:
        for path in event_pins(root):
            if path not in readers:
                readers[path] = PinnedEvents(path, waiting.append)
        for path, reader in list(readers.items()):
            if not path.exists():  # detached meanwhile
                readers.pop(path).close()

    try:
        if args.follow:
            return _follow(root, readers, rescan, watcher, waiting, flush)
        while True:  # what is there now, then exit
            rescan()
            handled = sum(reader.poll(0) for reader in readers.values())
            if handled == 0:
                return 0
    finally:
        flush(everything=True)
        for reader in readers.values():
            reader.close()
        if watcher is not None:
            watcher.close()


def _follow(root: Path, readers: dict, rescan, watcher, waiting: list, flush) -> int:
    """Until interrupted: one wait (epoll) on every events pin, the kill watcher and the pin
    directory (inotify: a policy attached or detached meanwhile), never a polling round."""
    from ..bpf.waiter import SourceSet
    from ..oom.targets import CgroupWatcher

    try:
        pins = CgroupWatcher([root / "*"])  # readable when a pin appears in root or goes
    except OSError as err:
        print(f"bpfoom: not watching {root} for new policies ({err}); looking every "
              f"{_RESCAN_S:.0f} s", file=sys.stderr)
        pins = None
    sources: SourceSet | None = None
    rescan_due = 0.0
    try:
        while True:
            if sources is None or (pins is None and time.monotonic() >= rescan_due):
                rescan()
                rescan_due = time.monotonic() + _RESCAN_S
                if sources is not None:
                    sources.close()
                sources = SourceSet()
                if pins is not None:
                    sources.add("pins", pins.fileno)
                if watcher is not None:
                    sources.add("kills", watcher.fileno)
                for path, reader in readers.items():
                    sources.add(path, reader.fileno)
                for reader in readers.values():  # what arrived before we waited
                    reader.poll(0)
            timeouts = [] if pins is not None else [max(0.0, rescan_due - time.monotonic())]
            if waiting:  # the oldest held event is due once it passes the reorder horizon
                oldest = min(event.monotonic_ns for event in waiting)
                timeouts.append(max(0.0, (oldest + _REORDER_NS - time.monotonic_ns()) / 1e9))
            for key in sources.wait(min(timeouts) if timeouts else None):
                if key == "pins" and pins is not None:
                    pins.changes(0)  # drain; which pins changed is read from the directory
                    sources.close()
                    sources = None
                elif key == "kills" and watcher is not None:
                    watcher.poll(0)
                elif key in readers:
                    readers[key].poll(0)
                if sources is None:
                    break
            flush(everything=False)
    finally:
        if sources is not None:
            sources.close()
        if pins is not None:
            pins.close()


def _start_watcher(deliver):
    """A KillWatcher feeding `deliver`, or None (said on stderr) where it cannot run."""
    from ..oom.kill_watch import KillWatcher

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
