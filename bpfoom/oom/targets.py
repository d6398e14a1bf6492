"""Targets by the names operators use: systemd units, cgroup patterns, Kubernetes pods.

A policy attaches to one cgroup directory; people name workloads otherwise.
This module turns those names into cgroup v2 paths:

* ``unit_cgroup("nginx.service")``: the unit's ``ControlGroup`` as systemd
  reports it (``systemctl show -P ControlGroup``), under the cgroup2 mount.
* ``CgroupPattern("/sys/fs/cgroup/workload.slice/*.service")``: shell-style
  patterns per path component (``*``, ``?``, ``[...]``), and
  ``CgroupWatcher``, which reports matching cgroups as they appear and go
  (inotify on the directories a match can appear in).
* ``kube_patterns(qos="besteffort")`` / ``kube_patterns(pod_uid=...)``: the
  kubelet's kubepods layouts of both cgroup drivers (cgroupfs:
  ``kubepods/besteffort/pod<uid>``; systemd:
  ``kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid_>.slice``),
  as patterns, so pods that start later are found by the same watcher.
  Guaranteed pods have no QoS cgroup of their own: they sit directly under
  kubepods.
"""

from __future__ import annotations


import errno
import fnmatch
import os
import re
import select
import shutil
import struct
import subprocess
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path

from ..bpf.aio import follow
from ..bpf.inotify import inotify_add_watch, inotify_init, inotify_rm_watch
from ..bpf.errors import (CgroupError, InvalidValueError, NotFoundError,
                          NotSupportedError, error_from_errno)
from ..bpf.cgroup import mounts
from ..bpf.lifecycle import Closeable

__all__ = ["UNIT_SUFFIXES", "QOS_CLASSES", "cgroup2_root", "check_unit_name", "systemd_running",
           "unit_cgroup", "slice_path", "unit_cgroup_when_running", "check_pod_name", "CgroupPattern", "CgroupChange", "CgroupWatcher", "kube_patterns",
           "kube_pod_uids"]

UNIT_SUFFIXES = (".service", ".slice", ".scope")
QOS_CLASSES = ("guaranteed", "burstable", "besteffort")
_UNIT = re.compile(r"^[A-Za-z0-9:_.\\@-]{1,250}$")
_UID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_GLOB = re.compile(r"[*?\[]")


def cgroup2_root() -> Path:
    """The cgroup2 mount holding the hierarchy (``/sys/fs/cgroup``, or ``.../unified`` on hybrid)."""
    cgroup2 = mounts("cgroup2")
    if not cgroup2:
        raise CgroupError(errno.ENOENT, "no cgroup2 file system is mounted; mount one "
                          "(mount -t cgroup2 none /sys/fs/cgroup)")
    return min(cgroup2, key=lambda m: (m != Path("/sys/fs/cgroup"), len(m.parts)))


# -- systemd units -----------------------------------------------------------

def check_unit_name(unit: str) -> str:
    """``unit`` if it names a unit that has a cgroup (.service, .slice, .scope); else InvalidValueError."""
    if not isinstance(unit, str) or not _UNIT.match(unit) or not unit.endswith(UNIT_SUFFIXES) \
            or unit.startswith(".") or unit in UNIT_SUFFIXES:
        raise InvalidValueError(errno.EINVAL, f"{unit!r} is not a systemd unit with a cgroup; give "
                                f"NAME{'|'.join(UNIT_SUFFIXES)} (e.g. nginx.service, user.slice)")
    return unit


def systemd_running() -> str | None:
    """None when systemd is PID 1 (sd_booted()'s test plus /proc/1/comm); otherwise why not."""
    try:
        init = Path("/proc/1/comm").read_text().strip()
    except OSError as exc:
        return f"PID 1 cannot be read ({exc.strerror})"
    if init != "systemd":
        return f"systemd is not running: PID 1 is {init!r}, not systemd"
    if not Path("/run/systemd/system").is_dir():
        return "systemd is PID 1 but /run/systemd/system is missing (not booted with systemd)"
    return None


def unit_cgroup(unit: str, root: str | os.PathLike[str] | None = None) -> Path:
    """The cgroup v2 directory of a running systemd unit (its ``ControlGroup`` property).

    ``root`` is the cgroup2 mount the property is relative to (default: found
    in /proc/self/mounts).  NotSupportedError when systemd is not PID 1,
    NotFoundError when the unit has no cgroup (not loaded or not active).
    """
    check_unit_name(unit)
    try:
        group = _systemctl_show(unit, "ControlGroup")
        detail = "no ControlGroup"
    except NotFoundError as exc:
        group, detail = "", exc.strerror
    if not group:
        raise NotFoundError(errno.ENOENT, f"systemd unit {unit!r} has no cgroup ({detail}); start "
                            f"it first (systemctl status {unit})")
    return Path(root or cgroup2_root()) / group.lstrip("/")


def slice_path(slice_unit: str) -> Path:
    """The cgroup path of a slice relative to the cgroup2 root, by systemd's naming rule.

    ``a-b-c.slice`` lives in ``a.slice/a-b.slice/a-b-c.slice``; ``-.slice`` is the root.
    """
    if not slice_unit.endswith(".slice") or not _UNIT.match(slice_unit):
        raise InvalidValueError(errno.EINVAL, f"{slice_unit!r} is not a slice unit name (NAME.slice)")
    if slice_unit == "-.slice":
        return Path()
    name = slice_unit[:-len(".slice")]
    parts = name.split("-")
    if not all(parts):
        raise InvalidValueError(errno.EINVAL, f"{slice_unit!r} is not a valid slice name: a '-' "
                                "separates the names of its parent slices, none may be empty")
    return Path(*("-".join(parts[:i + 1]) + ".slice" for i in range(len(parts))))


def _systemctl_show(unit: str, prop: str) -> str:
    """One property of ``unit`` (``systemctl show -P``); NotSupportedError without systemd."""
    why = systemd_running()
    if why is not None:
        raise NotSupportedError(errno.EOPNOTSUPP, f"cannot resolve unit {unit!r}: {why}; give the "
                                "unit's cgroup path instead")
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        raise NotSupportedError(errno.ENOENT, f"cannot resolve unit {unit!r}: systemctl is not on "
                                "PATH; give the unit's cgroup path instead")
    try:
        done = subprocess.run([systemctl, "show", "-P", prop, "--", unit],
                              capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        raise NotSupportedError(errno.ETIMEDOUT, f"cannot resolve unit {unit!r}: systemctl show "
                                "did not answer within 30 s; is systemd busy?") from None
    if done.returncode != 0:
        raise NotFoundError(errno.ENOENT, f"systemd does not know unit {unit!r} "
                            f"({done.stderr.strip() or 'systemctl show failed'})")
    return done.stdout.strip()


def unit_cgroup_when_running(unit: str, root: str | os.PathLike[str] | None = None) -> Path:
    """Where the cgroup of ``unit`` is while it runs, whether it runs now or not.

    A slice's path follows from its name; a service's or scope's is its
    ``Slice`` property's path plus the unit's name, so a daemon can wait for
    a unit that has not started yet (systemd creates the cgroup on start
    and removes it on stop).  NotSupportedError without systemd.
    """
    check_unit_name(unit)
    base = Path(root or cgroup2_root())
    if unit.endswith(".slice"):
        return base / slice_path(unit)
    parent = _systemctl_show(unit, "Slice")
    if not parent:
        raise NotFoundError(errno.ENOENT, f"systemd unit {unit!r} has no slice (not loaded); "
                            f"check the name (systemctl status {unit})")
    return base / slice_path(parent) / unit


# -- patterns ----------------------------------------------------------------

class CgroupPattern:
    """An absolute cgroup path whose components may hold ``*``, ``?`` and ``[...]``.

    ``*`` never crosses a ``/``: ``/sys/fs/cgroup/user.slice/*.scope`` matches
    ``user.slice/a.scope``, not ``user.slice/x.slice/a.scope``.
    """

    def __init__(self, pattern: str | os.PathLike[str]) -> None:
        text = os.fspath(pattern)
        path = Path(text)
        if not path.is_absolute() or ".." in path.parts:
            raise InvalidValueError(errno.EINVAL, f"cgroup pattern {text!r} must be an absolute path "
                                    "without '..' (e.g. /sys/fs/cgroup/workload.slice/*.service)")
        parts = path.parts[1:]
        fixed = next((i for i, part in enumerate(parts) if _GLOB.search(part)), len(parts))
        self.text = str(path)
        self.base = Path("/", *parts[:fixed])  # the longest prefix without wildcards
        self.parts: tuple[str, ...] = parts[fixed:]

    @property
    def is_glob(self) -> bool:
        return bool(self.parts)

    def match(self, path: str | os.PathLike[str]) -> bool:
        """Whether ``path`` (absolute) is matched."""
        candidate = Path(path)
        try:
            rest = candidate.relative_to(self.base).parts
        except ValueError:
            return False
        return len(rest) == len(self.parts) and all(
            fnmatch.fnmatchcase(name, part) for name, part in zip(rest, self.parts))

    def levels(self) -> list[list[Path]]:
        """Existing directories level by level: [base], its matching children, ...; the last are the matches."""
        found = [[self.base] if self.base.is_dir() else []]
        for part in self.parts:
            level: list[Path] = []
            for directory in found[-1]:
                try:
                    names = sorted(entry.name for entry in os.scandir(directory) if entry.is_dir(
                        follow_symlinks=False))
                except OSError:  # removed meanwhile
                    continue
                level.extend(directory / name for name in names if fnmatch.fnmatchcase(name, part))
            found.append(level)
        return found

    def matches(self) -> list[Path]:
        """The existing directories the pattern matches, sorted."""
        return self.levels()[-1]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CgroupPattern) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __repr__(self) -> str:
        return f"CgroupPattern({self.text!r})"


# -- watching ----------------------------------------------------------------

_IN_CREATE, _IN_DELETE, _IN_DELETE_SELF = 0x100, 0x200, 0x400
_IN_MOVED_FROM, _IN_MOVED_TO, _IN_MOVE_SELF = 0x40, 0x80, 0x800
_IN_Q_OVERFLOW, _IN_IGNORED, _IN_ONLYDIR = 0x4000, 0x8000, 0x01000000
_IN_NONBLOCK, _IN_CLOEXEC = os.O_NONBLOCK, os.O_CLOEXEC
_WATCH_MASK = (_IN_CREATE | _IN_DELETE | _IN_DELETE_SELF | _IN_MOVED_FROM | _IN_MOVED_TO
               | _IN_MOVE_SELF | _IN_ONLYDIR)
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then the name)


@dataclass(frozen=True)
class CgroupChange:
    """A matching cgroup that appeared (``added``) or went away (not ``added``)."""

    path: Path
    added: bool
    pattern: CgroupPattern


def _anchor(pattern: CgroupPattern) -> Path:
    """The directory whose events show the pattern's base appear or go: its nearest existing ancestor."""
    directory = pattern.base.parent
    while not directory.is_dir() and directory != directory.parent:
        directory = directory.parent
    return directory


class CgroupWatcher(Closeable):
    """Matching cgroups now and as they come and go, for a set of patterns.

    inotify watches the directories a match can appear in (the fixed base of
    each pattern and every directory matching a leading part of it); any
    event there triggers a rescan, so a subtree created in one go (``mkdir
    -p``) is seen whole.  ``fileno()`` is readable when ``changes()`` has
    something to report, for selectors and event loops.
    """

    def __init__(self, patterns: Iterable[str | os.PathLike[str] | CgroupPattern]) -> None:
        super().__init__()
        self.patterns = tuple(p if isinstance(p, CgroupPattern) else CgroupPattern(p)
                              for p in patterns)
        self._fd: int | None = inotify_init(_IN_NONBLOCK | _IN_CLOEXEC)
        self._watches: dict[Path, int] = {}
        self._current: dict[Path, CgroupPattern] = {}
        self._current = self._scan()

    def _live(self) -> int:
        if self._fd is None:
            raise self._closed_error()
        return self._fd

    @property
    def closed(self) -> bool:
        return self._fd is None

    def _closed_message(self) -> str:
        return "the cgroup watcher is closed; make a new one"

    def _watch(self, directory: Path) -> bool:
        """Watch ``directory``; False when it is gone already."""
        if directory in self._watches:
            return True
        wd = inotify_add_watch(self._live(), directory, _WATCH_MASK)
        if wd < 0:
            code = -wd
            if code in (errno.ENOENT, errno.ENOTDIR):
                return False
            raise error_from_errno(code, f"watch cgroup directory {str(directory)!r}")
        self._watches[directory] = wd
        return True

    def _scan(self) -> dict[Path, CgroupPattern]:
        """Watch every directory a match can appear in, then list the matches.

        Repeated until no new directory needed a watch: what appeared before
        its watch was added is then seen by the listing itself.
        """
        found: dict[Path, CgroupPattern] = {}
        for _ in range(64):
            found = {}
            wanted: set[Path] = set()
            added = False
            for pattern in self.patterns:
                levels = pattern.levels()
                for directory in [_anchor(pattern), *(d for level in levels[:-1] for d in level)]:
                    wanted.add(directory)
                    if directory not in self._watches:
                        added |= self._watch(directory)
                for match in levels[-1]:
                    found.setdefault(match, pattern)
            for directory in set(self._watches) - wanted:
                inotify_rm_watch(self._live(), self._watches.pop(directory))
            if not added:
                return found
        return found

    @property
    def current(self) -> list[Path]:
        """The matching cgroups as of the last scan, sorted."""
        return sorted(self._current)

    def fileno(self) -> int:
        """The inotify fd: readable when the watched directories changed."""
        return self._live()

    def _drain(self) -> bool:
        """Read the queued inotify events; whether there were any."""
        seen = False
        while True:
            try:
                data = os.read(self._live(), 65536)
            except BlockingIOError:
                return seen
            if not data:
                return seen
            seen = True
            offset = 0
            while offset < len(data):
                wd, mask, _, length = _EVENT.unpack_from(data, offset)
                offset += _EVENT.size + length
                if mask & _IN_IGNORED:  # the directory went away: its watch is gone
                    self._watches = {d: w for d, w in self._watches.items() if w != wd}

    def changes(self, timeout: float | None = 0) -> list[CgroupChange]:
        """Wait up to ``timeout`` seconds (None: forever) for directory events; what appeared and went.

        Removals come first, then additions, each sorted by path.  Empty when
        the wait timed out or the events changed no match.
        """
        fd = self._live()
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready or not self._drain():
            return []
        before, self._current = self._current, self._scan()
        gone = [CgroupChange(p, False, before[p]) for p in sorted(set(before) - set(self._current))]
        new = [CgroupChange(p, True, self._current[p]) for p in sorted(set(self._current) - set(before))]
        return gone + new

    def achanges(self, timeout: float | None = None) -> AsyncIterator[CgroupChange]:
        """The changes as they come, in an asyncio loop; ends after ``timeout`` seconds without one."""
        return follow(self.fileno, lambda: self.changes(0), timeout)

    def _release(self) -> None:
        """Stop watching."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
            self._watches.clear()


# -- Kubernetes ----------------------------------------------------------------

def _check_uid(uid: object) -> str:
    if not isinstance(uid, str) or not _UID.match(uid):
        raise InvalidValueError(errno.EINVAL, f"{uid!r} is not a pod UID; give the UUID of "
                                "metadata.uid (kubectl get pod NAME -o jsonpath='{.metadata.uid}')")
    return uid.lower()


def kube_patterns(qos: str | None = None, pod_uid: str | None = None,
                  root: str | os.PathLike[str] | None = None) -> list[CgroupPattern]:
    """Patterns of the cgroups of a QoS class or of one pod, for both cgroup drivers.

    ``qos`` "burstable"/"besteffort" names the class's own cgroup (one policy
    there covers every pod of the class, now and later); "guaranteed" names
    each guaranteed pod's cgroup (they have no class cgroup).  ``pod_uid``
    names that pod's cgroup whatever its class.  ``root`` is the directory
    holding kubepods (default: the cgroup2 mount; kubelet's --cgroup-root
    moves it).  Only the layout the node uses will match.
    """
    if (qos is None) == (pod_uid is None):
        raise InvalidValueError(errno.EINVAL, "give either a QoS class or a pod UID")
    base = Path(root) if root is not None else cgroup2_root()
    cgroupfs, systemd = base / "kubepods", base / "kubepods.slice"
    if qos is not None:
        if qos not in QOS_CLASSES:
            raise InvalidValueError(errno.EINVAL, f"QoS class {qos!r} is not one of "
                                    f"{', '.join(QOS_CLASSES)}")
        if qos == "guaranteed":
            paths = [cgroupfs / "pod*", systemd / "kubepods-pod*.slice"]
        else:
            paths = [cgroupfs / qos, systemd / f"kubepods-{qos}.slice"]
        return [CgroupPattern(p) for p in paths]
    uid = _check_uid(pod_uid)
    under = uid.replace("-", "_")
    paths = [cgroupfs / f"pod{uid}", systemd / f"kubepods-pod{under}.slice"]
    for qos_class in QOS_CLASSES[1:]:
        paths += [cgroupfs / qos_class / f"pod{uid}",
                  systemd / f"kubepods-{qos_class}.slice" / f"kubepods-{qos_class}-pod{under}.slice"]
    return [CgroupPattern(p) for p in paths]


_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def check_pod_name(text: str) -> tuple[str, str]:
    """``"namespace/name"`` split in two, or InvalidValueError (Kubernetes' own name rules)."""
    namespace, sep, name = text.partition("/") if isinstance(text, str) else ("", "", "")
    if not sep or not _DNS_LABEL.match(namespace) or not _DNS_SUBDOMAIN.match(name):
        raise InvalidValueError(errno.EINVAL, f"{text!r} is not NAMESPACE/NAME of a pod (lower-case "
                                "letters, digits, '-' and, in the name, '.'; e.g. shop/web-0)")
    return namespace, name


def kube_pod_uids(namespace: str, name: str, log_dir: str | os.PathLike[str] = "/var/log/pods") -> list[str]:
    """UIDs of the pods named ``namespace/name`` on this node, from the kubelet's pod log directories.

    The kubelet keeps ``/var/log/pods/<namespace>_<name>_<uid>`` for each pod
    it runs (the node's own label source; no API server needed).  A pod
    recreated under the same name has a new UID: resolve again when it
    changes.
    """
    prefix = f"{namespace}_{name}_"
    try:
        names = os.listdir(log_dir)
    except FileNotFoundError:
        raise NotFoundError(errno.ENOENT, f"{str(log_dir)!r} does not exist: this node runs no "
                            "kubelet, or it logs elsewhere; give the pod UID instead") from None
    return sorted(entry[len(prefix):] for entry in names
                  if entry.startswith(prefix) and _UID.match(entry[len(prefix):]))
