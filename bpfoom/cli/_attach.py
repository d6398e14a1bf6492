"""``attach`` and ``detach``: change what the kernel runs, and pin it so it stays.

A link lives as long as something holds it.  ``bpfoom attach`` exits right
away, so it always pins the link (by default under ``/sys/fs/bpf/bpfoom/``);
``bpfoom detach`` detaches and removes that pin.
"""

from __future__ import annotations

import argparse
import errno
from pathlib import Path

from ..bpf.errors import NotFoundError
from . import UsageError
from ._show import attachment_json, emit_json

__all__ = ["add_parsers", "DEFAULT_PIN_DIR", "default_pin"]

DEFAULT_PIN_DIR = Path("/sys/fs/bpf/bpfoom")


def default_pin(name: str, cgroup_id: int | None) -> Path:
    """``/sys/fs/bpf/bpfoom/<name>@system`` or ``<name>@cgroup-<id>`` (bpffs forbids dots)."""
    target = "system" if not cgroup_id else f"cgroup-{cgroup_id}"
    return DEFAULT_PIN_DIR / f"{name.replace('.', '_')}@{target}"


def _tunables(pairs: list[str]) -> dict[str, str]:
    from ..oom.loader import parse_assignment

    out = {}
    for text in pairs:
        try:
            key, value = parse_assignment(text)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        out[key] = value
    return out


def _attach(args: argparse.Namespace) -> int:
    from ..oom.loader import load
    from ..oom.pinned_events import pin_events, require_bpffs
    from ..bpf.cgroup import Cgroup
    from ._show import all_attachments

    tunables = _tunables(args.set)
    args.cgroup = _unit_cgroup(args) or args.cgroup
    cgroup = Cgroup.open(args.cgroup) if args.cgroup else None  # a bad path fails before loading
    try:
        loaded = load(args.policy, tunables, map_name=args.map, register_as=args.name,
                      ring_size=args.ring_size)
        try:
            pin = Path(args.pin) if args.pin else default_pin(loaded.name, cgroup.id if cgroup else 0)
            require_bpffs(pin)
            made_dir = not args.pin and not pin.parent.exists()
            if made_dir:
                pin.parent.mkdir(exist_ok=True)
            try:
                link = loaded.attach(cgroup=cgroup.path if cgroup else None, pin=pin)
                try:
                    pin_events(loaded.object.maps, pin)
                except BaseException:
                    link.unpin()
                    link.close()  # unpinned and closed: detached, nothing left behind
                    raise
            except BaseException:
                if made_dir:  # a failed attach leaves nothing behind, not even our directory
                    _remove_empty_dir(pin.parent)
                raise
            link_id, name, kind = link.id, loaded.name, loaded.kind
            link.close()  # the pin holds it now
        finally:
            loaded.close()
    finally:
        if cgroup is not None:
            cgroup.close()
    found = next((item for item in all_attachments(True) if item.link_id == link_id), None)
    if args.json:
        emit_json({"attachment": attachment_json(found) if found else {"link_id": link_id,
                                                                         "pin": str(pin)}})
        return 0
    where = f"cgroup {args.cgroup}" if args.cgroup else "the whole system"
    print(f"attached {name} to {where}: link {link_id}, pinned at {pin}")
    print(f"detach with: bpfoom detach --pin {pin}" + ("" if kind in ("oom", "psi") else " --all"))
    return 0


def _unit_cgroup(args: argparse.Namespace) -> str | None:
    """The cgroup of ``--unit`` (asked from systemd: the unit must run), or None without it."""
    if not getattr(args, "unit", None):
        return None
    from ..oom.targets import unit_cgroup

    return str(unit_cgroup(args.unit))


def _remove_empty_dir(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass  # not empty (another attach pinned there meanwhile) or already gone


def _remove_pin(path: Path) -> None:
    """Remove a link pin and the events pins beside it."""
    from ..oom.pinned_events import unpin_events

    path.unlink(missing_ok=True)
    unpin_events(path)


def _detach(args: argparse.Namespace) -> int:
    from ..oom.link_id import detach_struct_ops_link, pinned_policy_link
    from ..bpf.cgroup import Cgroup
    from ._show import all_attachments

    if args.pin:
        with pinned_policy_link(args.pin, any_struct_ops=args.all) as link:
            link_id = link.id
            attached = bool(link.info().map_id)
            if attached:
                link.detach()
        _remove_pin(Path(args.pin))
        print(f"detached link {link_id} (was pinned at {args.pin})" if attached else
              f"link {link_id} was detached already; removed its pin {args.pin}")
        return 0
    current = all_attachments(args.all)
    if args.link is not None:
        chosen = [item for item in current if item.link_id == args.link]
        if not chosen:  # not a policy, or already detached: the kernel decides
            detach_struct_ops_link(args.link, any_struct_ops=args.all)
            print(f"detached link {args.link}")
            return 0
    else:
        args.cgroup = _unit_cgroup(args) or args.cgroup
        with Cgroup.open(args.cgroup) as cgroup:
            cgroup_id = cgroup.id
        chosen = [item for item in current if item.cgroup_id == cgroup_id]
        if not chosen:
            raise NotFoundError(errno.ENOENT, f"nothing is attached to cgroup {args.cgroup}; "
                                "`bpfoom list` shows what is attached where")
    for item in chosen:
        detach_struct_ops_link(item.link_id, any_struct_ops=args.all)
        if item.pin_path is not None:
            _remove_pin(Path(item.pin_path))
        print(f"detached {item.policy_name or 'link'} (link {item.link_id})"
              + (f", removed pin {item.pin_path}" if item.pin_path else ""))
    return 0


def add_parsers(commands: argparse._SubParsersAction) -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    att = commands.add_parser(
        "attach", help="load a policy and attach it (pinned, so it stays)", formatter_class=formatter,
        description="Load POLICY_OR_OBJECT (a shipped policy name or the path of a .bpf.o with a "
                    "link-based struct_ops map), attach it to a cgroup or system-wide, and pin "
                    f"the link so it outlives this command (default pin: {DEFAULT_PIN_DIR}/"
                    "<name>@system or <name>@cgroup-<id>).",
        epilog="examples:\n"
               "  bpfoom attach largest_leaf --cgroup /sys/fs/cgroup/batch\n"
               "  bpfoom attach largest_leaf --unit batch.slice --set min_victim_bytes=64M\n"
               "  bpfoom attach priority --set default_priority=10 --pin /sys/fs/bpf/prio\n"
               "  bpfoom attach ./cc.bpf.o --map my_cc --name my_cc_v2\n"
               '--json: {"schema": 1, "attachment": {same fields as one `list --json` entry}}')
    att.add_argument("policy", metavar="POLICY_OR_OBJECT", help="shipped policy name or .bpf.o path")
    target = att.add_mutually_exclusive_group()
    target.add_argument("--cgroup", metavar="PATH", help="cgroup v2 directory (default: system-wide)")
    target.add_argument("--unit", metavar="UNIT",
                        help="the cgroup of this running systemd unit (nginx.service, batch.slice)")
    att.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                     help="set a tunable before load (repeatable); see `bpfoom policies`")
    att.add_argument("--pin", metavar="PATH", help="pin the link here (on bpffs)")
    att.add_argument("--map", metavar="NAME", help="which struct_ops map of an object with several")
    att.add_argument("--name", metavar="NAME",
                     help="register under this name (the struct_ops `name` field) for a .bpf.o")
    att.add_argument("--ring-size", metavar="BYTES", type=int,
                     help="size of the decision ring buffer (a power-of-two number of pages; "
                          "decisions it has no room for are reported by `bpfoom events`)")
    att.add_argument("--json", action="store_true", help="print the attachment as JSON")
    att.set_defaults(run=_attach)

    det = commands.add_parser(
        "detach", help="detach a policy and remove its pin", formatter_class=formatter,
        description="Detach by cgroup (every policy attached to it), by link id (from "
                    "`bpfoom list`) or by pin path; the pin is removed too.  Only OOM policies' "
                    "and PSI handlers' struct_ops links (bpf_oom_ops, bpf_psi_ops), as the "
                    "kernel reports the link; --all: any struct_ops link; never another kind "
                    "of link, a pinned map or a program.",
        epilog="examples:\n  bpfoom detach --cgroup /sys/fs/cgroup/batch\n  bpfoom detach --link 42\n"
               "  bpfoom detach --unit batch.slice\n"
               "  bpfoom detach --pin /sys/fs/bpf/bpfoom/largest_leaf@system\n"
               "  bpfoom detach --all --pin /sys/fs/bpf/bpfoom/my_cc@system   # a tcp_congestion_ops")
    which = det.add_mutually_exclusive_group(required=True)
    which.add_argument("--cgroup", metavar="PATH", help="every policy attached to this cgroup")
    which.add_argument("--unit", metavar="UNIT", help="every policy attached to this systemd "
                       "unit's cgroup")
    which.add_argument("--link", metavar="ID", type=int, help="the struct_ops link with this id")
    which.add_argument("--pin", metavar="PATH", help="the link pinned here")
    det.add_argument("--all", action="store_true",
                     help="also struct_ops links that are not OOM policies or PSI handlers "
                          "(what `bpfoom attach` of another .bpf.o made)")
    det.set_defaults(run=_detach)
