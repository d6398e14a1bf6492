"""Read-only subcommands: ``features``, ``policies`` and ``list``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["add_parsers", "attachment_json"]

SCHEMA = 1


def emit_json(document: dict[str, Any]) -> None:
    json.dump({"schema": SCHEMA, **document}, sys.stdout, indent=2)
    sys.stdout.write("\n")


def _table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def _features(args: argparse.Namespace) -> int:
    from ..oom.features import features

    feats = features()
    if args.json:
        json.dump(feats.as_dict(), sys.stdout, indent=2)  # shape predates the schema key
        sys.stdout.write("\n")
        return 0
    rows = [["FEATURE", "SUPPORTED", "DETAIL"]]
    for name in feats:
        feature = feats[name]
        found = f"{feature.value}: " if feature.value else ""
        rows.append([name, {True: "yes", False: "no", None: "unknown"}[feature.supported],
                     found + feature.detail])
    _table(rows)
    return 0


def _policies(args: argparse.Namespace) -> int:
    from ..oom.features import features
    from ..oom.catalogue import policies

    feats = features()
    found = policies()
    described: list[dict[str, Any]] = []
    for info in found:
        missing = [name for name in info.requires if feats.get(name) is None or not feats[name]]
        described.append({
            "name": info.name, "kind": info.kind, "path": str(info.path),
            "description": info.description, "requires": list(info.requires),
            "missing_features": missing,
            "tunables": {t.name: {"type": t.type_name, "default": t.default, "doc": t.doc,
                                  "range": None if t.minimum is None else [t.minimum, t.maximum],
                                  "settable_after_load": t.settable_after_load}
                         for t in info.tunables.values()},
        })
    if args.json:
        emit_json({"policies": described})
        return 0
    for entry in described:
        state = "ready" if not entry["missing_features"] else \
            "needs " + ", ".join(entry["missing_features"])
        print(f"{entry['name']}  ({entry['kind']}, {state})")
        print(f"    {entry['description']}")
        for name, tunable in entry["tunables"].items():
            bounds = "" if tunable["range"] is None else ", range {}..{}".format(*tunable["range"])
            print(f"    --set {name}=<{tunable['type']}>  default {tunable['default']!r}{bounds}: "
                  f"{tunable['doc']}")
    return 0


def attachment_json(item: Any) -> dict[str, Any]:
    """One attachment as the stable JSON object ``list`` and ``attach`` print."""
    return {"link_id": item.link_id, "map_id": item.map_id, "policy": item.policy_name,
            "kind": item.kind, "cgroup": None if item.cgroup_path is None else str(item.cgroup_path),
            "cgroup_id": item.cgroup_id,
            "pin": None if item.pin_path is None else str(item.pin_path)}


def _target(entry: dict[str, Any]) -> str:
    if entry["cgroup"] is not None:
        return entry["cgroup"]
    if entry["cgroup_id"]:
        return f"cgroup id {entry['cgroup_id']} (path unknown)"
    return "system-wide"


def all_attachments(every_struct_ops: bool) -> list[Any]:
    """attached() (OOM and PSI policies), plus other struct_ops links with ``every_struct_ops``."""
    from ..oom import attachments
    from ..bpf.btf import vmlinux_btf
    from ..bpf.link import links

    found = attachments.attached()
    if not every_struct_ops:
        return found
    known = {item.link_id for item in found}
    others = [(info, info.map_id) for info in links() if info.map_id and info.id not in known]
    if not others:
        return found
    with vmlinux_btf() as kernel:
        values = {map_id: attachments.struct_ops_value(map_id, kernel) for _, map_id in others}
    pins = attachments._pins({info.id for info, _ in others})
    paths = attachments.cgroup_paths({info.cgroup_id for info, _ in others if info.cgroup_id})
    for info, map_id in others:
        struct_name, name = values[map_id]
        found.append(attachments.Attachment(
            policy_name=name, kind=struct_name or "struct_ops",
            cgroup_path=paths.get(info.cgroup_id) if info.cgroup_id else None,
            cgroup_id=info.cgroup_id or 0, link_id=info.id, map_id=map_id,
            pin_path=pins.get(info.id)))
    return sorted(found, key=lambda item: item.link_id)


def _list(args: argparse.Namespace) -> int:
    entries = [attachment_json(item) for item in all_attachments(args.all)]
    if args.json:
        emit_json({"attachments": entries})
        return 0
    if not entries:
        print("nothing attached")
        return 0
    rows = [["LINK", "KIND", "POLICY", "TARGET", "PIN"]]
    for entry in entries:
        rows.append([str(entry["link_id"]), entry["kind"] or "?", entry["policy"] or "?",
                     _target(entry), entry["pin"] or "-"])
    _table(rows)
    return 0


def add_parsers(commands: argparse._SubParsersAction) -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    feats = commands.add_parser(
        "features", help="what the running kernel supports", formatter_class=formatter,
        description="Probe the running kernel for everything bpfoom uses.",
        epilog='--json: {NAME: {"name", "supported": true|false|null (unknown), "detail", "value"}}\n'
               'example:\n  bpfoom features --json | jq .bpf_oom_ops.supported')
    feats.add_argument("--json", action="store_true", help="print JSON instead of a table")
    feats.set_defaults(run=_features)

    pols = commands.add_parser(
        "policies", help="the shipped policies and their tunables", formatter_class=formatter,
        description="List the policies shipped with bpfoom (and those in $BPFOOM_POLICY_PATH), "
                    "their tunables (for --set) and the kernel features each needs, as each "
                    "object describes itself (policy_meta.h).",
        epilog='--json: {"schema": 1, "policies": [{"name", "kind": "oom"|"psi", "path", '
               '"description", "requires": [...], "missing_features": [...], '
               '"tunables": {NAME: {"type", "default", "doc", "range": [MIN, MAX]|null, '
               '"settable_after_load"}}}]}')
    pols.add_argument("--json", action="store_true", help="print JSON instead of text")
    pols.set_defaults(run=_policies)

    lst = commands.add_parser(
        "list", help="what is attached where", formatter_class=formatter,
        description="Every struct_ops policy link the kernel has: policy name, target cgroup "
                    "(or system-wide), link id and pin.",
        epilog='--json: {"schema": 1, "attachments": [{"link_id", "map_id", "policy", "kind": '
               '"oom"|"psi" (with --all: or another struct name), "cgroup": PATH|null (null: system-wide or unknown), "cgroup_id": 0 for '
               'system-wide, "pin": PATH|null}]}\nexample:\n  bpfoom list --json')
    lst.add_argument("--json", action="store_true", help="print JSON instead of a table")
    lst.add_argument("--all", action="store_true",
                     help="also list other struct_ops links (e.g. BPF TCP congestion controls); "
                          "their kind is the struct name")
    lst.set_defaults(run=_list)
