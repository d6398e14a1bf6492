"""Who a victim is, in the words operators act on: its cgroup path, systemd unit, Kubernetes pod.

Events carry cgroup ids; a person needs ``/sys/fs/cgroup/system.slice/nginx.service``,
``nginx.service`` or ``shop/web-0``.  Resolved when the event arrives (the
cgroup may be gone later), from the cgroup's path alone: the unit is the
innermost ``.service``/``.scope`` component (else ``.slice``); the pod is
the ``pod<uid>`` component of a kubepods path (either cgroup driver), named
through the kubelet's ``/var/log/pods/<namespace>_<name>_<uid>``.  Only
the fields that apply are returned.  A cgroup already gone is named from
:class:`KnownCgroups`, the cgroups the daemon attached to: systemd removes a
service's cgroup as soon as its main process died, often before the kill is read.

Opening a cgroup by id (a kernfs file handle) needs CAP_DAC_READ_SEARCH, which
neither the shipped unit nor the DaemonSet grants (it reads every file on the
machine); refused, the path is found by walking the cgroup2 mounts for the
directory whose inode is the id, which needs nothing (a kill is rare; a node
has thousands of cgroups, not millions).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path

from ..bpf.cgroup import Cgroup
from ..bpf.errors import BpfError, PermissionDeniedError
from ..oom.attachments import cgroup_paths

__all__ = ["describe", "KnownCgroups", "POD_LOG_DIR"]

POD_LOG_DIR = Path("/var/log/pods")
_POD = re.compile(r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})")


class KnownCgroups:
    """Paths by id of the cgroups a daemon attached to, kept after they go (the latest
    ``limit``), to name a victim whose cgroup went before its event was read."""

    def __init__(self, limit: int = 1024) -> None:
        self.limit = limit
        self.paths: dict[int, str] = {}

    def remember(self, paths: Iterable[str | os.PathLike[str]]) -> None:
        """Record the id of each of ``paths`` that exists now (its cgroup2 inode number)."""
        for path in paths:
            try:
                cgroup_id = os.stat(path).st_ino
            except OSError:
                continue
            self.paths.pop(cgroup_id, None)
            self.paths[cgroup_id] = os.fspath(path)
        while len(self.paths) > self.limit:
            del self.paths[next(iter(self.paths))]


def describe(cgroup_id: int, prefix: str = "victim_",
             pod_log_dir: str | os.PathLike = POD_LOG_DIR,
             known: Mapping[int, str] | None = None) -> dict[str, str]:
    """``{prefix}cgroup``, ``{prefix}unit``, ``{prefix}pod_uid``, ``{prefix}pod`` and
    ``{prefix}namespace`` (those that apply) for the cgroup ``cgroup_id``; empty when it is 0,
    or gone and not in ``known`` (ids to paths)."""
    if not cgroup_id:
        return {}
    path = _path_of(cgroup_id) or (known or {}).get(cgroup_id)
    if path is None:
        return {}
    found = {f"{prefix}cgroup": path}
    unit = _unit(path)
    if unit is not None:
        found[f"{prefix}unit"] = unit
    uid = _pod_uid(path)
    if uid is not None:
        found[f"{prefix}pod_uid"] = uid
        named = _pod_names(str(pod_log_dir)).get(uid)
        if named is not None:
            found[f"{prefix}namespace"], found[f"{prefix}pod"] = named
    return found


def _path_of(cgroup_id: int) -> str | None:
    """The cgroup's path: by file handle, else (no CAP_DAC_READ_SEARCH, or a seccomp filter
    that refuses open_by_handle_at) by walking; None once it is gone."""
    try:
        with Cgroup.from_id(cgroup_id) as cgroup:
            return str(cgroup.path)
    except PermissionDeniedError:
        return cgroup_paths({cgroup_id}).get(cgroup_id)
    except (BpfError, OSError):
        return None


def _unit(path: str) -> str | None:
    parts = Path(path).parts
    for suffixes in ((".service", ".scope"), (".slice",)):
        for part in reversed(parts):
            if part.endswith(suffixes) and part != "-.slice":
                return part
    return None


def _pod_uid(path: str) -> str | None:
    """The UID of the pod whose cgroup holds ``path`` (the systemd driver spells it with _)."""
    found = _POD.search(path)
    return None if found is None else found[1].replace("_", "-")


@lru_cache(maxsize=1)
def _pod_listing(log_dir: str, stamp: float) -> dict[str, tuple[str, str]]:
    names: dict[str, tuple[str, str]] = {}
    try:
        entries = os.listdir(log_dir)
    except OSError:
        return names
    for entry in entries:
        namespace, _, rest = entry.partition("_")
        name, _, uid = rest.rpartition("_")
        if namespace and name and uid:
            names[uid] = (namespace, name)
    return names


def _pod_names(log_dir: str) -> dict[str, tuple[str, str]]:
    """uid -> (namespace, name), read again whenever the directory changed."""
    try:
        stamp = os.stat(log_dir).st_mtime
    except OSError:
        return {}
    return _pod_listing(log_dir, stamp)
