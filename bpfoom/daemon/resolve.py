"""From configured targets to the attachments wanted now, and what is still awaited.

A configured entry names a cgroup, a pattern, a systemd unit or Kubernetes
pods (:class:`~bpfoom.daemon.config.Target`).  :class:`Resolver` turns the
entries into one entry per cgroup that exists now (the *attachments*), and
reports every target that resolves to nothing yet as :class:`Pending`: a
cgroup that does not exist, a pattern without a match, a unit that does not
run, a systemd that cannot be asked.  :meth:`Resolver.patterns` are the
paths to watch (:class:`~bpfoom.oom.targets.CgroupWatcher`): when one
changes, resolving again finds what appeared and what went.

Units are asked from systemd only in :meth:`Resolver.refresh_units` (a
subprocess each): at construction, and when the daemon retries a unit that
could not be resolved.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..bpf.errors import BpfError
from ..oom.targets import (CgroupPattern, check_pod_name, kube_patterns, kube_pod_uids,
                           unit_cgroup_when_running)
from .config import Entry, granularity_under, settings_under

__all__ = ["Pending", "Resolver", "attachment_id", "POD_LOG_DIR"]

POD_LOG_DIR = Path("/var/log/pods")  # the kubelet's pod log directories: <namespace>_<name>_<uid>
_SLUG = re.compile(r"[^A-Za-z0-9_@+-]")


@dataclass(frozen=True)
class Pending:
    """A configured target that has no attachment now, and why.

    ``attachment`` is set when a cgroup is there but attaching to it failed
    (the daemon retries it after ``retry_in`` seconds).
    """

    entry: str  # the configured entry's id
    target: str  # what is awaited: a cgroup path, a pattern, a unit
    why: str
    attachment: str | None = None
    retry_in: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"entry": self.entry, "target": self.target, "why": self.why,
                "attachment": self.attachment,
                "retry_in": None if self.retry_in is None else round(self.retry_in, 1)}


def attachment_id(entry: Entry, cgroup: str | os.PathLike[str]) -> str:
    """The id (and pin name) of ``entry``'s attachment to ``cgroup``, one of several it may have:
    ``<entry id>+<cgroup name>-<hash of its path>``, the same in every run."""
    path = os.fspath(cgroup)
    digest = hashlib.sha1(path.encode()).hexdigest()[:8]
    name = _SLUG.sub("_", Path(path).name)[: max(1, 190 - len(entry.id))]
    return f"{entry.id}+{name}-{digest}"[:200]


class Resolver:
    """The configured entries, resolved against the cgroups that exist now."""

    def __init__(self, entries: Iterable[Entry], *, pod_log_dir: str | os.PathLike[str] = POD_LOG_DIR
                 ) -> None:
        self.entries = tuple(entries)
        self.pod_log_dir = Path(pod_log_dir)
        self._units: dict[str, Path | BpfError] = {}
        self.refresh_units()

    # -- units ---------------------------------------------------------------------
    def refresh_units(self) -> bool:
        """Ask systemd again where each unit's cgroup is; whether an answer changed."""
        before = {unit: str(found) for unit, found in self._units.items()}
        for entry in self.entries:
            if entry.target.kind == "unit":
                try:
                    self._units[entry.target.value] = unit_cgroup_when_running(entry.target.value)
                except BpfError as exc:
                    self._units[entry.target.value] = exc
        return before != {unit: str(found) for unit, found in self._units.items()}

    @property
    def units_unresolved(self) -> list[str]:
        """Units systemd could not be asked about (retried later)."""
        return [unit for unit, found in self._units.items() if isinstance(found, BpfError)]

    # -- resolving -----------------------------------------------------------------
    def _kube(self, entry: Entry) -> tuple[list[CgroupPattern], str | None]:
        """The patterns of a Kubernetes target, or why there are none yet."""
        key, _, value = entry.target.value.partition("=")
        root = entry.target.root
        if key == "qos":
            return kube_patterns(qos=value, root=root), None
        if key == "pod_uid":
            return kube_patterns(pod_uid=value, root=root), None
        namespace, name = check_pod_name(value)
        try:
            uids = kube_pod_uids(namespace, name, self.pod_log_dir)
        except BpfError as exc:
            return [], exc.strerror
        if not uids:
            return [], (f"no pod {value} runs on this node (no {namespace}_{name}_<uid> in "
                        f"{self.pod_log_dir})")
        return [p for uid in uids for p in kube_patterns(pod_uid=uid, root=root)], None

    def patterns(self) -> list[CgroupPattern]:
        """Every path whose appearance or removal changes what the entries resolve to."""
        found: list[CgroupPattern] = []
        for entry in self.entries:
            kind = entry.target.kind
            if kind == "cgroup":
                found.append(CgroupPattern(entry.target.value))
            elif kind == "pattern":
                found.append(CgroupPattern(entry.target.value))
            elif kind == "unit":
                path = self._units.get(entry.target.value)
                if isinstance(path, Path):
                    found.append(CgroupPattern(path))
            elif kind == "kubernetes":
                key, _, value = entry.target.value.partition("=")
                if key == "pod":
                    namespace, name = check_pod_name(value)
                    found.append(CgroupPattern(self.pod_log_dir / f"{namespace}_{name}_*"))
                found.extend(self._kube(entry)[0])
        return list(dict.fromkeys(found))

    def resolve(self) -> tuple[dict[str, Entry], list[Pending]]:
        """(attachment id -> entry with its cgroup, for what exists now; what is pending)."""
        wanted: dict[str, Entry] = {}
        pending: list[Pending] = []
        for entry in self.entries:
            target = entry.target
            if target.kind == "system":
                wanted[entry.id] = entry
            elif target.kind == "cgroup":
                if os.path.isdir(target.value):
                    wanted[entry.id] = entry
                else:
                    pending.append(Pending(entry.id, target.value,
                                           f"cgroup {target.value} does not exist yet"))
            elif target.kind == "unit":
                found = self._units.get(target.value)
                if isinstance(found, BpfError):
                    pending.append(Pending(entry.id, str(target), found.strerror))
                elif found is not None and found.is_dir():
                    wanted[entry.id] = replace(entry, cgroup=str(found),
                                               granularity=granularity_under(entry, found),
                                               settings=settings_under(entry, found))
                else:
                    pending.append(Pending(entry.id, str(target), f"{target.value} does not run "
                                           f"(its cgroup {found} does not exist)"))
            else:
                if target.kind == "pattern":
                    patterns, why = [CgroupPattern(target.value)], None
                else:
                    patterns, why = self._kube(entry)
                matches = sorted({path for pattern in patterns for path in pattern.matches()})
                for path in matches:
                    key = attachment_id(entry, path)
                    wanted[key] = replace(entry, id=key, cgroup=str(path), origin=entry.id,
                                          granularity=granularity_under(entry, path),
                                          settings=settings_under(entry, path))
                if not matches:
                    looked = ", ".join(p.text for p in patterns)
                    pending.append(Pending(entry.id, str(target), why or (
                        f"no cgroup matches {looked} yet" if looked else "nothing to look for")))
        return wanted, pending
