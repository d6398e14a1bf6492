"""Per-cgroup settings given by path, as operators know cgroups, turned into what policies key by id.

* A tunable given a cgroup path (``guard_children_of = "/sys/fs/cgroup/workload"``) or a list of
  them (psi_guard's ``guarded_cgroups``) takes the cgroups' ids when the object is loaded; a list
  shorter than the array is padded with zeros.
* ``[attach.cgroup_settings]`` fills the ``cgroup_settings`` map (cgroup id -> priority,
  protected) of a policy that has one (``priority``), before it attaches and again on reload.

A cgroup that does not exist when the object is loaded is an error for a tunable (the handler
could never watch it) and skipped, with a log line, for a setting (it applies once a reload or
restart finds it).

* A size tunable (its name ends in ``_bytes``) given a percentage (``min_victim_bytes = "5%"``,
  more than 0, at most 100) is that share of the memory the policy guards: the target cgroup's
  ``memory.max``, or ``MemTotal`` (/proc/meminfo) for a system-wide entry and for a cgroup
  without a limit (``max``) or without the memory controller.  Worked out each time the object
  is loaded or its tunables change (a start, a restart, a reload that changes them), logged as
  ``tunable_resolved``; a later change of memory.max is not followed.
"""

from __future__ import annotations

import errno
import re
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..bpf.cgroup import Cgroup
from ..bpf.errors import BpfError, NotFoundError
from ..bpf.object import BpfObject
from ..oom.catalogue import policies

if TYPE_CHECKING:  # config imports this module for its check
    from .config import Entry

__all__ = ["resolved_tunables", "check_settings", "check_percentages", "apply_settings",
           "SETTINGS_MAP"]

SETTINGS_MAP = "cgroup_settings"
_PERCENT = re.compile(r"\s*(\S*?)\s*%\s*")


def _cgroup_id(path: str, check: bool) -> int:
    try:
        with Cgroup.open(path) as cgroup:
            return cgroup.id
    except BpfError:
        if check:
            return 1  # the check runs before the cgroups exist: only the form counts there
        raise NotFoundError(errno.ENOENT, f"cgroup {path} does not exist, so its id cannot be "
                            "given to the policy; create it first, or remove it from the "
                            "configuration") from None


def _is_path(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("/")


def _percent(key: str, value: Any) -> Decimal | None:
    """The percentage ``value`` gives (None: it is no percentage); BpfError if it is a bad one."""
    found = _PERCENT.fullmatch(value) if isinstance(value, str) else None
    if found is None:
        return None
    if not key.endswith("_bytes"):
        raise BpfError(errno.EINVAL, f"tunable {key!r} = {value!r}: only sizes (tunables named "
                       "*_bytes) take a percentage; give a number")
    try:
        share = Decimal(found[1])
    except InvalidOperation:
        share = Decimal("NaN")
    if not (share.is_finite() and 0 < share <= 100):
        raise BpfError(errno.EINVAL, f"tunable {key!r} = {value!r} is not a percentage of "
                       "memory: give more than 0 and at most 100, like \"5%\" or \"12.5%\"")
    return share


def check_percentages(entry: Entry) -> list[BpfError]:
    """The entry's malformed percentages, one problem each."""
    problems = []
    for key, value in entry.tunables.items():
        try:
            _percent(key, value)
        except BpfError as exc:
            problems.append(exc)
    return problems


def _mem_total() -> int:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    raise BpfError(errno.ENOENT, "/proc/meminfo has no MemTotal line; give a size, not a "
                   "percentage")


def memory_reference(cgroup: str | None) -> tuple[int, str]:
    """(bytes, what they are) a percentage is taken of, for an entry on ``cgroup``."""
    if cgroup is not None:
        try:
            limit = (Path(cgroup) / "memory.max").read_text().strip()
        except OSError:
            limit = "max"  # no memory controller there: no limit of its own
        if limit != "max":
            return int(limit), f"memory.max of {cgroup}"
    return _mem_total(), "MemTotal"


def resolved_tunables(entry: Entry, *, check: bool = False,
                      log: Callable[..., None] | None = None) -> dict[str, Any]:
    """``entry.tunables`` with cgroup paths replaced by ids (``check``: a stand-in id) and
    percentages by bytes (``check``: 0; ``log``: told what each came to)."""
    info = next((info for info in policies() if info.name == entry.policy), None)
    out: dict[str, Any] = {}
    for key, value in entry.tunables.items():
        share = _percent(key, value) if not check else None
        if check and _PERCENT.fullmatch(str(value)):
            value = 0  # check_percentages reports a malformed one
        elif share is not None:
            total, of = memory_reference(entry.cgroup)
            value = int(total * share / 100)
            if log is not None:
                log("info", "tunable_resolved", id=entry.id, tunable=key,
                    value=entry.tunables[key], bytes=value, of=of)
        elif _is_path(value):
            value = _cgroup_id(value, check)
        elif isinstance(value, list) and any(_is_path(item) for item in value):
            value = [_cgroup_id(item, check) if _is_path(item) else item for item in value]
            default = info.tunables[key].default if info and key in info.tunables else None
            if isinstance(default, (list, tuple)) and len(value) < len(default):
                value += [0] * (len(default) - len(value))
        out[key] = value
    return out


def _has_settings_map(entry: Entry) -> bool:
    path = next((info.path for info in policies() if info.name == entry.policy), Path(entry.policy))
    try:
        with BpfObject.open(path) as obj:
            return SETTINGS_MAP in obj.maps
    except BpfError:
        return True  # the check reports an object that does not open


def check_settings(entry: Entry) -> list[BpfError]:
    if entry.settings and not _has_settings_map(entry):
        return [BpfError(errno.EINVAL, f"{entry.policy} has no {SETTINGS_MAP} map (the `priority` "
                         "policy has); remove [attach.cgroup_settings]")]
    return []


def apply_settings(loaded: Any, entry: Entry, before: Entry | None,
                   log: Callable[..., None]) -> Callable[[], None]:
    """Write ``entry``'s cgroup_settings into the loaded object's map (dropping ``before``'s
    that are gone); returns an undo."""
    if not entry.settings and (before is None or not before.settings):
        return lambda: None
    table = loaded.object.maps[SETTINGS_MAP]
    previous: dict[int, Any] = {}

    def put(path: str, value: dict[str, Any] | None) -> None:
        try:
            cgroup_id = _cgroup_id(path, False)
        except BpfError as exc:
            log("warning", "setting_skipped", id=entry.id, cgroup=path, why=exc.strerror)
            return
        previous.setdefault(cgroup_id, table.get(cgroup_id))
        if value is None:
            if cgroup_id in table:
                del table[cgroup_id]
        else:
            table[cgroup_id] = value

    for path in set(before.settings if before else ()) - set(entry.settings):
        put(path, None)
    for path, value in entry.settings.items():
        put(path, value)

    def undo() -> None:
        for cgroup_id, value in previous.items():
            if value is None:
                if cgroup_id in table:
                    del table[cgroup_id]
            else:
                table[cgroup_id] = value
    return undo
