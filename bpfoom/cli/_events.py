"""``bpfoom events``: the decisions of policies attached with ``bpfoom attach``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ..events import DecisionEvent

__all__ = ["add_parser"]

_IDLE_MS = 200


def _events(args: argparse.Namespace) -> int:
    from .._pinned_events import PinnedEvents, event_pins

    def show(event: DecisionEvent) -> None:
        if args.json:
            sys.stdout.write(json.dumps(event.to_json()) + "\n")
        else:
            print(f"{event.wall_time.isoformat(timespec='milliseconds')}  {event}")
        sys.stdout.flush()

    root = Path(args.pin_dir)
    readers: dict[Path, PinnedEvents] = {}
    try:
        while True:
            for path in event_pins(root):
                if path not in readers:
                    readers[path] = PinnedEvents(path, show)
            for path, reader in list(readers.items()):
                if not path.exists():  # detached meanwhile
                    readers.pop(path).close()
            handled = sum(reader.poll(0) for reader in readers.values())
            if not args.follow and handled == 0:
                return 0
            if handled == 0:
                time.sleep(_IDLE_MS / 1000)
    finally:
        for reader in readers.values():
            reader.close()


def add_parser(commands: argparse._SubParsersAction) -> None:
    from ._attach import DEFAULT_PIN_DIR

    parser = commands.add_parser(
        "events", help="decisions of the policies attached with `bpfoom attach`",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Print the decisions waiting in the event buffers of policies attached with "
                    "`bpfoom attach` (pinned under --pin-dir); with --follow, keep printing new "
                    "ones until interrupted.  The daemon (`bpfoom run`) logs its own policies' "
                    "decisions instead.",
        epilog='--json: one object per line: {"schema": 1, "policy", "action", "reason", '
               '"scope_cgroup_id", "oom_cgroup_id", "victim_cgroup_id", "usage_bytes", "pids", '
               '"nr_pids", "candidates", "error": ENAME|null, "monotonic_ns", "time"}\n'
               "example:\n  bpfoom events --follow --json | jq .pids")
    parser.add_argument("--follow", "-f", action="store_true", help="keep waiting for decisions")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--pin-dir", default=str(DEFAULT_PIN_DIR), metavar="DIR",
                        help=f"where attach pinned the policies (default {DEFAULT_PIN_DIR})")
    parser.set_defaults(run=_events)
