"""``bpfoom top``: a refreshing table of the memcgs under a root, and the policies where.

The numbers come from one BPF iterator pass per refresh (bpfoom.memcg_stats),
the policies from the kernel's struct_ops links (bpfoom.attached).  The table
is made by :func:`render`, a pure function of a snapshot, so that its layout
(80 columns) is testable without a kernel.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

__all__ = ["add_parser", "render", "sort_memcgs", "snapshot_json", "SORT_KEYS"]

SCHEMA = 1
SORT_KEYS = ("usage", "pressure", "oom")
_CLEAR = "\x1b[H\x1b[2J"
# (title, width) of the columns after CGROUP, which takes what is left.
_COLUMNS = (("USAGE", 6), ("LIMIT", 6), ("ANON", 6), ("FILE", 6), ("SOME10", 6),
            ("OOM", 4), ("KILLS", 5), ("POLICY", 12))
_MIN_CGROUP = 12


def _size(value: int | None) -> str:
    """Bytes in at most 6 characters: 0, 512K, 12.3M, 1.5G."""
    if value is None:
        return "max"
    for unit, scale in (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if value >= scale:
            amount = value / scale
            return f"{amount:.1f}{unit}" if amount < 100 else f"{amount:.0f}{unit}"
    return str(value)


def _count(value: int, width: int) -> str:
    text = str(value)
    return text if len(text) <= width else f"{value / 1000:.0f}k"[:width]


def _fit_left(text: str, width: int) -> str:
    """Keep the end of a path (its most specific part) when it is too long."""
    return text if len(text) <= width else "…" + text[-(width - 1):]


def sort_memcgs(memcgs: Sequence[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Largest first by usage, memory pressure (some avg10, then total) or OOM kills and OOMs."""
    if key not in SORT_KEYS:
        raise ValueError(f"sort key must be one of {', '.join(SORT_KEYS)}, not {key!r}")
    if key == "usage":
        return sorted(memcgs, key=lambda m: m["usage"], reverse=True)
    if key == "pressure":
        return sorted(memcgs, key=lambda m: (m["pressure"] is not None,
                                             (m["pressure"] or {}).get("some_avg10", 0.0),
                                             (m["pressure"] or {}).get("some_total_us", 0)),
                      reverse=True)
    return sorted(memcgs, key=lambda m: (m["oom_kill"], m["oom"], m["usage"]), reverse=True)


def _policy_label(item: dict[str, Any]) -> str:
    name = item["policy"] or "?"
    return name if item["kind"] == "oom" else f"{name}(psi)"


def snapshot_json(stats: Sequence[Any], attachments: Sequence[Any], *, root: str,
                  sort: str) -> dict[str, Any]:
    """The ``--json`` document (``schema`` 1): memcgs in table order, each with its policies."""
    from ._show import attachment_json

    where: dict[int, list[str]] = {}
    attached = [attachment_json(item) for item in attachments]
    for item in attached:
        where.setdefault(item["cgroup_id"], []).append(_policy_label(item))
    memcgs = [{**{k: v for k, v in asdict(s).items() if k != "pressure"},
               "pressure": asdict(s.pressure) if s.pressure is not None else None,
               "policies": where.get(s.cgroup_id, [])} for s in stats]
    return {"schema": SCHEMA, "root": root, "sort": sort, "time": time.time(),
            "memcgs": sort_memcgs(memcgs, sort), "attachments": attached}


def _relative(path: str, root: str) -> str:
    if path == root:
        return "."
    prefix = root.rstrip("/") + "/"
    return path[len(prefix):] if path.startswith(prefix) else path


def render(document: dict[str, Any], *, width: int = 80, height: int | None = None,
           sort: str | None = None) -> list[str]:
    """A snapshot document (see :func:`snapshot_json`) as table lines of at most
    ``width`` (at least 60) characters, at most ``height`` lines; pure."""
    width = max(width, 60)
    key: str = sort or document["sort"]
    root = document["root"]
    fixed = sum(w + 1 for _, w in _COLUMNS)
    name_width = max(width - fixed, _MIN_CGROUP)
    system_wide = [_policy_label(a) for a in document["attachments"] if not a["cgroup_id"]]
    clock = time.strftime("%H:%M:%S", time.localtime(document["time"]))
    lines = [f"bpfoom top  {root}  {len(document['memcgs'])} memcgs  by {key}  {clock}",
             "system-wide policy: " + (", ".join(system_wide) or "none (the kernel's own)")]
    lines.append("CGROUP".ljust(name_width) + "".join(
        " " + (title if title == "POLICY" else title.rjust(w)) for title, w in _COLUMNS))
    rows = sort_memcgs(document["memcgs"], key)
    if height is not None:
        rows = rows[:max(height - len(lines), 0)]
    for m in rows:
        pressure = m["pressure"]
        cells = [_size(m["usage"]), _size(m["limit"]), _size(m["anon"]), _size(m["file"]),
                 f"{pressure['some_avg10']:.2f}" if pressure else "-",
                 _count(m["oom"], 4), _count(m["oom_kill"], 5), ",".join(m["policies"]) or "-"]
        text = _fit_left(_relative(m["path"], root), name_width).ljust(name_width)
        text += "".join(" " + (cell if title == "POLICY" else cell.rjust(w))
                        for cell, (title, w) in zip(cells, _COLUMNS))
        lines.append(text)
    return [line if len(line) <= width else line[:width - 1] + "…" for line in lines]


def _replay(args: argparse.Namespace) -> int:
    """Render a document saved by ``--once --json`` (no kernel needed)."""
    document: Any
    with open(args.replay) as stream:
        try:
            document = json.load(stream)
        except ValueError as exc:
            document = {"error": str(exc)}
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        print(f"bpfoom: {args.replay} is not a document of `bpfoom top --once --json` "
              f"(schema {SCHEMA}); save one with that command", file=sys.stderr)
        return 1
    if args.json:
        json.dump({**document, "sort": args.sort,
                   "memcgs": sort_memcgs(document["memcgs"], args.sort)}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    print("\n".join(render(document, width=shutil.get_terminal_size().columns, sort=args.sort)))
    return 0


def _top(args: argparse.Namespace) -> int:
    if args.replay is not None:
        return _replay(args)
    from ..oom.attachments import attached
    from ..oom.memcg_stats import MemcgStatsReader

    with MemcgStatsReader(args.root) as reader:
        while True:
            document = snapshot_json(reader.read(), attached(), root=reader.root, sort=args.sort)
            if args.json:
                json.dump(document, sys.stdout, indent=2 if args.once else None)
                sys.stdout.write("\n")
            else:
                size = shutil.get_terminal_size()
                lines = render(document, width=size.columns,
                               height=None if args.once else size.lines - 1)
                sys.stdout.write(("" if args.once else _CLEAR) + "\n".join(lines) + "\n")
            sys.stdout.flush()
            if args.once:
                return 0
            time.sleep(args.interval)


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value


def add_parser(commands: argparse._SubParsersAction) -> None:
    top = commands.add_parser(
        "top", help="live table of the memcgs under a root, with the policies attached",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Every memcg under ROOT (usage, limit, anon, file, memory pressure, OOMs "
                    "and OOM kills; one BPF iterator pass per refresh) and the OOM policy "
                    "attached to each, largest first.  Needs the memcg kfuncs.",
        epilog="examples:\n  bpfoom top --root /sys/fs/cgroup/workloads --sort pressure\n"
               "  bpfoom top --once --json | jq '.memcgs[0]'\n"
               "sizes are bytes with K/M/G suffixes; SOME10 is memory.pressure's some avg10 (%)")
    top.add_argument("--root", default="/sys/fs/cgroup", help="cgroup2 directory to walk "
                     "(default %(default)s)")
    top.add_argument("--sort", choices=SORT_KEYS, default="usage", help="order (default usage)")
    top.add_argument("--interval", type=_seconds, default=2.0, help="seconds between refreshes")
    top.add_argument("--once", action="store_true", help="print one snapshot and exit")
    top.add_argument("--json", action="store_true", help="JSON (schema 1) instead of the table; "
                     "one document per refresh, one line each unless --once")
    top.add_argument("--replay", metavar="FILE", help="render a document saved with "
                     "--once --json instead of reading the kernel")
    top.set_defaults(run=_top)
