"""``bpfoom explain``: the last decisions of attached OOM policies, and why each was made.

It reads each policy's ``decisions`` history (bpfoom/decisions.py), never its
event ring buffer, so ``bpfoom events`` and the daemon still get every event.
"""

from __future__ import annotations

import argparse
import errno
import sys

from ..oom.decisions import PolicyDecisions, recent_decisions
from ..bpf.errors import NotFoundError
from ..oom.events import DecisionEvent
from ._show import attachment_json, emit_json

__all__ = ["add_parser"]


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return str(count)


def _cgroup(cgroup_id: int, paths: dict[int, str]) -> str:
    if not cgroup_id:
        return "-"
    return paths.get(cgroup_id, f"cgroup {cgroup_id}")


def _ranked_by(event: DecisionEvent, rank: int) -> str:
    """The rank as its quantity: a start time for newest_task, bytes otherwise."""
    if event.reason == "newest_task" or event.policy == "newest_task":
        return f"started {rank / 1e9:.3f} s after boot"
    return _size(rank)


def _render(entry: PolicyDecisions, event: DecisionEvent, paths: dict[int, str]) -> None:
    where = entry.attachment.cgroup_path or ("system-wide" if not entry.attachment.cgroup_id
                                             else f"cgroup {entry.attachment.cgroup_id}")
    print(f"{event.wall_time.isoformat(timespec='milliseconds')}  {event.policy} on {where}"
          f" (link {entry.attachment.link_id})")
    oom = _cgroup(event.oom_cgroup_id, paths) if event.oom_cgroup_id else "the whole system"
    print(f"  OOM in:   {oom}")
    pids = ",".join(map(str, event.pids)) + ("..." if event.nr_pids > len(event.pids) else "")
    victim = _cgroup(event.victim_cgroup_id, paths)
    print(f"  decision: {event.action} by rule {event.reason}; victim {victim}"
          f"{' pids ' + pids if pids else ''}"
          f"{' (error ' + str(event.error) + ')' if event.error else ''}")
    if event.granularity:
        setting = (f"set on {_cgroup(event.granularity_cgroup_id, paths)}"
                   if event.granularity_cgroup_id else "the policy's default")
        print(f"  killed:   {event.granularity} ({setting})")
    if event.oom_group_cgroup_id:
        print(f"  memory.oom.group of {_cgroup(event.oom_group_cgroup_id, paths)}: the kernel "
              "killed that whole group")
    if event.considered:
        print(f"  candidates ({event.candidates} compared, best first):")
        classes = any(c.priority or c.protected for c in event.considered) or \
            event.reason in ("priority_class", "only_protected")
        rows = [["#", "CGROUP", "PID", "USAGE", "RANKED BY", *(["CLASS"] if classes else [])]]
        for index, candidate in enumerate(event.considered, 1):
            rows.append([str(index), _cgroup(candidate.cgroup_id, paths),
                         str(candidate.pid or "-"), _size(candidate.usage_bytes),
                         _ranked_by(event, candidate.rank),
                         *([f"{candidate.priority}{' protected' if candidate.protected else ''}"]
                           if classes else [])])
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            print("    " + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    for why, exclusion in (event.excluded or {}).items():
        if exclusion.count:
            first = ", ".join(_cgroup(cgroup_id, paths) + (f" pid {pid}" if pid else "")
                              for cgroup_id, pid in exclusion.first)
            more = ", ..." if exclusion.count > len(exclusion.first) else ""
            print(f"  excluded: {exclusion.count} {why}: {first}{more}")


def _explain(args: argparse.Namespace) -> int:
    from ..oom.attachments import cgroup_paths

    from ..oom.features import features

    found = recent_decisions()
    if not found:
        features().require("bpf_oom_ops")  # says what the kernel lacks, if it does
        raise NotFoundError(errno.ENOENT, "no bpf_oom_ops policy is attached, so there is nothing "
                            "to explain; attach one (bpfoom attach largest_leaf --cgroup PATH)")
    decisions = sorted(((event.monotonic_ns, index, event) for index, entry in enumerate(found)
                        for event in entry.decisions or ()), key=lambda item: item[:2])
    latest = decisions[-args.last:]
    if args.json:
        emit_json({"decisions": [{"attachment": attachment_json(found[index].attachment),
                                  "decision": event.to_json()} for _, index, event in latest],
                   "without_history": [attachment_json(entry.attachment) for entry in found
                                       if entry.decisions is None]})
        return 0
    ids = {event.oom_cgroup_id for _, _, event in latest} | {
        event.victim_cgroup_id for _, _, event in latest} | {
        event.granularity_cgroup_id for _, _, event in latest} | {
        event.oom_group_cgroup_id for _, _, event in latest} | {
        c.cgroup_id for _, _, event in latest for c in event.considered} | {
        cgroup_id for _, _, event in latest for e in (event.excluded or {}).values()
        for cgroup_id, _ in e.first}
    paths = cgroup_paths({i for i in ids if i})
    for entry in found:
        if entry.decisions is None:
            print(f"{entry.attachment.policy_name or '?'} (link {entry.attachment.link_id}) keeps "
                  "no decision history: it was not built with bpfoom's policy_event.h",
                  file=sys.stderr)
    if not latest:
        print(f"no decisions yet from {len(found)} attached "
              f"polic{'y' if len(found) == 1 else 'ies'}")
        return 0
    for number, (_, index, event) in enumerate(latest):
        if number:
            print()
        _render(found[index], event, paths)
    sys.stdout.flush()
    return 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number of decisions")
    return value


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "explain", help="the last decisions of attached OOM policies, and why",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Show the last decisions of every attached bpf_oom_ops policy, oldest first: "
                    "the OOM, the rule, the victim and what died, the candidates with their "
                    "sizes, and what was excluded and why.  Each policy keeps its last 16; "
                    "reading them takes nothing from `bpfoom events` or the daemon.",
        epilog='--json: {"schema": 1, "decisions": [{"attachment": ATTACHMENT (as `list --json`), '
               '"decision": DecisionEvent (as `events --json`, "schema": 2)}], '
               '"without_history": [ATTACHMENT]}\n'
               "example:\n  bpfoom explain --last 3")
    parser.add_argument("--last", type=_positive, default=5, metavar="N",
                        help="how many decisions (default 5)")
    parser.add_argument("--json", action="store_true", help="one JSON document")
    parser.set_defaults(run=_explain)
