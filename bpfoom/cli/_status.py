"""``bpfoom status [CGROUP]``: what the kernel runs, who would decide an OOM of CGROUP, which daemons.

Everything is read from the kernel, never from a daemon's memory: the
struct_ops links (``attached()``), the OOM handler chain the kernel walks
(spec: from the OOMing memcg up through its parents, each attached
``bpf_oom_ops`` in turn until one frees memory, then the system-wide one,
then the kernel's own killer), and the daemons found by the exclusive
``flock`` each holds on its pin directory (``/proc/locks``), with the links
pinned there.  Reading takes no lock, so it never disturbs a daemon.  What a
daemon waits for (pending targets) exists only in the daemon: it comes from
the state file the daemon keeps (:mod:`bpfoom.daemon.state`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from ._show import _table, _target, attachment_json, emit_json

__all__ = ["add_parser", "handler_chain", "daemons"]


def _ancestors(path: Path) -> list[tuple[Path, int]]:
    """(path, cgroup id) from ``path`` up to the root of its cgroup2 mount."""
    from ..bpf.cgroup import Cgroup

    with Cgroup.open(path) as cgroup:  # refuses what is not a cgroup v2 directory
        path, device = cgroup.path, os.fstat(cgroup.fd).st_dev
    chain = []
    while True:
        chain.append((path, os.stat(path).st_ino))
        parent = path.parent
        if parent == path or os.stat(parent).st_dev != device:
            return chain
        path = parent


def handler_chain(attachments: list[Any], cgroup: str | None) -> list[dict[str, Any]]:
    """Who handles an OOM of ``cgroup`` (None: a system-wide OOM), in the kernel's order."""
    ooms = [a for a in attachments if a.kind == "oom"]
    chain = []
    for path, cgroup_id in (_ancestors(Path(cgroup)) if cgroup is not None else []):
        for item in ooms:
            if item.cgroup_id == cgroup_id:
                chain.append({"handler": "policy", "policy": item.policy_name, "link_id": item.link_id,
                              "cgroup": str(path), "cgroup_id": cgroup_id})
    for item in ooms:
        if item.cgroup_id == 0:
            chain.append({"handler": "policy", "policy": item.policy_name, "link_id": item.link_id,
                          "cgroup": None, "cgroup_id": 0})
    chain.append({"handler": "kernel", "policy": "default", "link_id": None, "cgroup": None,
                  "cgroup_id": None})
    return chain


def _locks() -> dict[tuple[int, int, int], int]:
    """(major, minor, inode) -> pid of every granted exclusive flock, from /proc/locks."""
    held = {}
    with open("/proc/locks") as locks:
        for line in locks:
            fields = line.split()
            if len(fields) < 6 or fields[1] != "FLOCK" or fields[3] != "WRITE":
                continue  # "->" lines are waiters; POSIX locks and read locks are not daemons'
            major, minor, inode = fields[5].split(":")
            held[(int(major, 16), int(minor, 16), int(inode))] = int(fields[4])
    return held


def daemons() -> list[dict[str, Any]]:
    """bpfoom daemons: directories on a BPF file system under an exclusive flock, and their pins."""
    from ..bpf.errors import BpfError
    from ..bpf.link import Link
    from ..bpf.cgroup import mounts
    from ..oom.pinned_events import EVENTS_SUFFIX
    from ..daemon.state import read_state

    held = _locks()
    found = []
    for mount in mounts("bpf"):
        for directory, _, files in os.walk(mount):
            try:
                st = os.stat(directory)
            except OSError:  # removed while we walked
                continue
            pid = held.get((os.major(st.st_dev), os.minor(st.st_dev), st.st_ino))
            if pid is None:
                continue
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
            except OSError:
                command = []
            entries = []
            for name in sorted(files):
                if name.endswith(EVENTS_SUFFIX):
                    continue
                try:
                    with Link.from_pinned(Path(directory, name)) as link:
                        info = link.info()
                except BpfError:
                    continue  # a pinned map or program, not an entry's link
                entries.append({"id": name, "pin": os.path.join(directory, name), "link_id": info.id,
                                "attached": bool(info.map_id)})
            state = read_state(pid)
            found.append({"pid": pid, "pin_dir": directory,
                          "command": [os.fsdecode(part) for part in command], "entries": entries,
                          "status": None if state is None else state.get("status"),
                          "pending": None if state is None else state.get("pending", []),
                          "failed": None if state is None else state.get("failed", [])})
    return found


def probe(running: list[dict[str, Any]], which: str) -> str | None:
    """Why the ``live`` or ``ready`` probe fails (None: it passes).

    live: a daemon holds its pin directory's lock.  ready: besides, it wrote
    its state, nothing it was configured with failed for good, its last
    reload applied, and every pin it keeps names an attached link.
    """
    if not running:
        return "no bpfoom daemon runs (none holds a pin directory's lock)"
    if which == "live":
        return None
    for daemon in running:
        where = f"daemon {daemon['pid']}"
        if daemon["pending"] is None:
            return f"{where}: its state file is not readable (not started yet, or $BPFOOM_STATE_DIR)"
        if daemon.get("failed"):
            return f"{where}: {daemon['status']}"
        if daemon["status"] and daemon["status"].startswith("reload failed"):
            return f"{where}: {daemon['status']}"
        detached = [entry["id"] for entry in daemon["entries"] if not entry["attached"]]
        if detached:
            return f"{where}: pins on detached links: {', '.join(detached)}"
    return None


def _status(args: argparse.Namespace) -> int:
    from ._show import all_attachments

    attachments = all_attachments(False)
    chain = handler_chain(attachments, args.cgroup)
    running = daemons()
    failing = probe(running, args.probe) if args.probe else None
    if args.json:
        emit_json({"attachments": [attachment_json(a) for a in attachments],
                   "cgroup": args.cgroup, "chain": chain, "daemons": running,
                   **({"probe": {args.probe: failing is None, "why": failing}}
                      if args.probe else {})})
        if failing is not None:
            print(f"bpfoom: {args.probe} probe failed: {failing}", file=sys.stderr)
        return 1 if failing is not None else 0
    if attachments:
        rows = [["LINK", "KIND", "POLICY", "TARGET", "PIN"]]
        for entry in map(attachment_json, attachments):
            rows.append([str(entry["link_id"]), entry["kind"], entry["policy"] or "?",
                         _target(entry), entry["pin"] or "-"])
        _table(rows)
    else:
        print("no OOM policy or PSI handler attached")
    print(f"\nan OOM {'in ' + args.cgroup if args.cgroup else 'of the whole machine'} "
          "is handled by, in order:")
    for number, step in enumerate(chain, 1):
        if step["handler"] == "kernel":
            print(f"  {number}. the kernel's OOM killer (oom_policy=default)")
        else:
            where = step["cgroup"] or "system-wide"
            print(f"  {number}. {step['policy'] or '?'}  (link {step['link_id']}, {where})")
    for daemon in running:
        print(f"\ndaemon pid {daemon['pid']}: {' '.join(daemon['command']) or '?'}")
        print(f"  pin_dir {daemon['pin_dir']}")
        if daemon["status"] is not None:
            print(f"  status: {daemon['status']}")
        for entry in daemon["entries"]:
            state = "attached" if entry["attached"] else "DETACHED (stale pin)"
            print(f"  {entry['id']}: link {entry['link_id']}, {state}")
        for item in daemon["failed"] or ():
            print(f"  {item.get('attachment') or item['entry']}: FAILED {item['target']}: "
                  f"{item['why']} (never retried)")
        for item in daemon["pending"] or ():
            retry = f", retried in {item['retry_in']:.0f} s" if item.get("retry_in") is not None else ""
            print(f"  {item['entry']}: PENDING {item['target']}: {item['why']}{retry}")
        if daemon["pending"] is None:
            print("  (its state file is not readable here: pending targets unknown; "
                  "$BPFOOM_STATE_DIR, default /run/bpfoom)")
    if not running:
        print("\nno bpfoom daemon running")
    if failing is not None:
        print(f"bpfoom: {args.probe} probe failed: {failing}", file=sys.stderr)
        return 1
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:
    status = commands.add_parser(
        "status", help="what is attached, who handles an OOM of CGROUP, which daemons run",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="From the kernel's link list: every attached OOM policy and PSI handler; the "
                    "handlers an OOM of CGROUP goes through (from CGROUP up to the root, then "
                    "the system-wide policy, then the kernel's killer); the running daemons (the "
                    "flock on their pin directory) and the links they pinned.",
        epilog='--json: {"schema": 1, "attachments": [as `list --json`], "cgroup": PATH|null, '
               '"chain": [{"handler": "policy"|"kernel", "policy", "link_id", "cgroup", '
               '"cgroup_id"}], "daemons": [{"pid", "pin_dir", "command": [...], '
               '"entries": [{"id", "pin", "link_id", "attached"}], "status": STATUS|null, '
               '"pending": [{"entry", "target", "why", "attachment", "retry_in"}]|null, '
               '"failed": [{"entry", "target", "why", "attachment"}]|null}]}\n'
               "example:\n  bpfoom status /sys/fs/cgroup/workload.slice/web.service")
    status.add_argument("cgroup", metavar="CGROUP", nargs="?",
                        help="a cgroup v2 directory (default: a system-wide OOM)")
    status.add_argument("--json", action="store_true", help="print JSON instead of text")
    status.add_argument("--probe", choices=("live", "ready"),
                        help="exit 1 unless a daemon runs (live) and protects all it was "
                             "configured with (ready): for Kubernetes probes and monitoring")
    status.set_defaults(run=_status)
