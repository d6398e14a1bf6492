"""The daemon's TOML configuration: which policy goes on which cgroup, with what.

::

    [daemon]
    pin_dir = "/sys/fs/bpf/bpfoom/daemon"  # links are pinned here as <id>; a restart re-adopts them
    on_exit = "detach"                     # or "keep": SIGTERM/SIGINT leave pinned policies attached
    log = "-"                              # "-" = stderr, or a file appended to
    log_format = "text"                    # or "json": one JSON object per line
    metrics_file = "/var/lib/node_exporter/textfile_collector/bpfoom.prom"  # optional
    journal = "auto"                       # kills/decisions to the journal: "auto" (under systemd),
                                           # "off", or a journal socket path
    kill_hook = ["/usr/local/bin/page-oncall"]  # optional: run per kill (bpfoom.daemon.hook)
    kill_hook_interval = 10                # at most one hook per this many seconds (default 1)
    kubernetes_events = "in-cluster"       # optional: an Event per pod victim (bpfoom.daemon.kube_events);
                                           # "off" (default), "in-cluster", or { server = "https://...",
                                           # token_file = "...", ca_file = "..." }
    pod_log_dir = "/var/log/pods"          # the kubelet's podLogsDir: how pods are named (default)

    [[attach]]
    id = "batch"                           # optional, default "<policy>@<target>" (no dots)
    policy = "largest_leaf"                # shipped policy name or .bpf.o path (relative: to this file)
    cgroup = "/sys/fs/cgroup/batch"        # optional, default system-wide; see the targets below
    map = "my_ops"                         # optional: struct_ops map of an object with several
    name = "my_ops_v2"                     # optional: register under this name (a .bpf.o only)
    pin = true                             # optional, default true (false: detached on exit)
    dry_run = true                         # optional: decide and report, kill nobody (the kernel does)
    [attach.tunables]
    min_victim_bytes = "16M"               # sizes take K, M, G, T (powers of 1024), or "5%": of the
                                           # target's memory.max, else MemTotal (daemon.settings)
    [attach.granularity]                   # optional, bpf_oom_ops policies: what dies (policy_granularity.h)
    "web" = "task"                         # cgroup (relative: under the target) = "task" | "cgroup" | "subtree"
    "/sys/fs/cgroup/batch/jobs" = "subtree"

An entry's target is one of (none of them: system-wide):

* ``cgroup = "/sys/fs/cgroup/batch"``: that cgroup; ``pending`` until it exists.
* ``cgroup = "/sys/fs/cgroup/workload.slice/*.service"``: a pattern (``*``,
  ``?``, ``[...]`` per path component): one attachment per matching cgroup,
  made when the cgroup appears and removed when it goes.
* ``unit = "nginx.service"`` (``.slice``, ``.scope``): the unit's cgroup,
  found through systemd; ``pending`` while the unit does not run.
* ``kubernetes = { qos = "besteffort" }`` (``burstable``; ``guaranteed``:
  each guaranteed pod), ``{ pod_uid = "..." }`` or ``{ pod = "namespace/name" }``
  (through the kubelet's /var/log/pods), with ``root = "..."`` for kubelet's
  ``--cgroup-root``: the kubepods cgroups of both cgroup drivers, as they come
  and go.

Drop-ins: ``policies.d/*.toml`` beside ``policies.toml`` (the file's stem),
read in name order after the file, each holding ``[[attach]]`` entries only
(a package or a team adds its own without editing the main file); ids are
unique across all of them.

Unknown keys are errors that suggest the key meant, so a typo cannot
silently leave a policy with its defaults.  Every problem is reported, each
as its own sentence (``ConfigError.problems``), not only the first.
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import tomllib

from ..bpf.object import BpfObject
from ..oom.catalogue import policies
from ..oom.features import POLICY_KINDS
from ..oom.loader import check_source
from ..oom.events import GRANULARITIES
from ..oom.targets import QOS_CLASSES, CgroupPattern, check_pod_name, check_unit_name, kube_patterns
from ..oom.tunables import suggest
from ..bpf.errors import BpfError, NotFoundError
from .kube_events import ApiServer
from .victim import POD_LOG_DIR
from .settings import check_percentages, check_settings, resolved_tunables

__all__ = ["Config", "ConfigError", "Entry", "Target", "read_config", "parse_config", "check_config",
           "DEFAULT_PIN_DIR", "GRANULARITY_CHOICES", "apply_granularity", "granularity_under",
           "struct_ops_type"]

DEFAULT_PIN_DIR = Path("/sys/fs/bpf/bpfoom/daemon")
_DAEMON_KEYS = ("pin_dir", "on_exit", "log", "log_format", "metrics_file", "journal", "kill_hook",
                "kill_hook_interval", "kubernetes_events", "pod_log_dir")
_EVENTS_KEYS = ("server", "token_file", "ca_file")
_ENTRY_KEYS = ("id", "policy", "cgroup", "unit", "kubernetes", "map", "name", "pin", "tunables",
               "granularity", "dry_run", "cgroup_settings")
_TARGET_KEYS = ("cgroup", "unit", "kubernetes")
_KUBE_KEYS = ("qos", "pod_uid", "pod", "root")
# What OomPolicy.set_granularity takes.
GRANULARITY_CHOICES = tuple(GRANULARITIES)
_ID = re.compile(r"^[A-Za-z0-9_@+-]{1,200}$")
_GLOB = re.compile(r"[*?\[]")


class ConfigError(BpfError, ValueError):
    """The configuration file is malformed; the message names the file, entry and key.

    ``problems`` holds every problem found, each a sentence of its own
    (``str()`` of a ConfigError with several joins them with "; ").
    """

    def __init__(self, code: int, sentence: str, *, problems: tuple[BpfError, ...] = (),
                 **details: Any) -> None:
        super().__init__(code, sentence, **details)
        self.problems: tuple[BpfError, ...] = problems or (self,)

    @classmethod
    def of(cls, problems: list[BpfError]) -> "ConfigError":
        """One error carrying ``problems`` (its errno: the first one's)."""
        if len(problems) == 1 and isinstance(problems[0], ConfigError):
            return problems[0]
        return cls(problems[0].errno, "; ".join(p.strerror for p in problems),
                   problems=tuple(problems))


@dataclass(frozen=True)
class Target:
    """What an entry attaches to, as configured.

    ``kind``: "system", "cgroup" (one path), "pattern" (a path with
    wildcards), "unit" (a systemd unit) or "kubernetes" (``value`` is
    ``qos=CLASS``, ``pod_uid=UID`` or ``pod=NAMESPACE/NAME``; ``root`` the
    directory holding kubepods, None for the cgroup2 mount).
    """

    kind: str = "system"
    value: str = ""
    root: str | None = None

    @property
    def fixed(self) -> bool:
        """One cgroup known from the text alone (or system-wide)."""
        return self.kind in ("system", "cgroup")

    def __str__(self) -> str:
        if self.kind == "system":
            return "system-wide"
        if self.kind in ("cgroup", "pattern"):
            return self.value
        if self.kind == "unit":
            return f"unit {self.value}"
        return f"kubernetes {self.value}" + (f" under {self.root}" if self.root else "")


@dataclass(frozen=True)
class Entry:
    """One ``[[attach]]`` table, or one attachment made of it.

    A configured entry with a pattern, unit or Kubernetes target has no
    ``cgroup``; the daemon makes one entry per cgroup the target resolves
    to, with ``cgroup`` set, its own ``id`` and the configured one as
    ``origin``.
    """

    id: str
    policy: str
    cgroup: str | None = None
    map: str | None = None
    name: str | None = None
    pin: bool = True
    tunables: dict[str, Any] = field(default_factory=dict)
    # cgroup path -> choice: absolute for system and cgroup targets; for the others a
    # relative path is under each cgroup the target resolves to (granularity_under)
    granularity: dict[str, str] = field(default_factory=dict)
    target: Target = Target()
    origin: str | None = None  # the configured entry's id, for one made of it
    # cgroup path (relative: under the target, as granularity) -> {"priority", "protected"}:
    # the `cgroup_settings` map of policies that have one (priority)
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def configured_id(self) -> str:
        return self.origin or self.id

    def same_program(self, other: "Entry") -> bool:
        """Same object, map, name and target: only tunables may differ."""
        return (self.policy, self.cgroup, self.map, self.name, self.pin) == \
            (other.policy, other.cgroup, other.map, other.name, other.pin)


@dataclass(frozen=True)
class Config:
    entries: tuple[Entry, ...]
    pin_dir: Path = DEFAULT_PIN_DIR
    on_exit: str = "detach"
    log: str = "-"
    log_format: str = "text"
    metrics_file: Path | None = None
    journal: str = "auto"
    kill_hook: tuple[str, ...] = ()
    kill_hook_interval: float = 1.0
    kubernetes_events: ApiServer | str = "off"  # "off", "in-cluster" or the server
    pod_log_dir: Path = POD_LOG_DIR


class _Problems:
    """Collects the problems of a file: each check runs even when an earlier one failed."""

    def __init__(self) -> None:
        self.found: list[BpfError] = []

    def check(self, function: Callable[..., Any], *args: Any, default: Any = None) -> Any:
        try:
            return function(*args)
        except BpfError as exc:
            self.found.append(exc)
            return default

    def add(self, where: str, message: str, code: int = errno.EINVAL) -> None:
        self.found.append(ConfigError(code, f"{where}: {message}"))


def _fail(message: str) -> None:
    raise ConfigError(errno.EINVAL, message)


def _unknown(where: str, table: dict[str, Any], allowed: tuple[str, ...], problems: _Problems) -> None:
    for key in table:
        if key not in allowed:
            problems.add(where, f"unknown key {key!r}{suggest(key, allowed)}; "
                         f"allowed: {', '.join(allowed)}")


def _string(where: str, table: dict[str, Any], key: str, default: Any = None) -> Any:
    value = table.get(key, default)
    if value is not None and not isinstance(value, str):
        _fail(f"{where}: {key} must be a string, not {value!r}")
    return value


def _choice(where: str, table: dict[str, Any], key: str, choices: tuple[str, ...]) -> str:
    value = _string(where, table, key, choices[0])
    if value not in choices:
        _fail(f"{where}: {key} = {value!r} is not one of "
              f"{', '.join(map(repr, choices))}{suggest(value, choices)}")
    return value


def _absolute(where: str, table: dict[str, Any], key: str, default: Any = None) -> Path | None:
    value = _string(where, table, key, default)
    if value is None:
        return None
    if not os.path.isabs(value):
        _fail(f"{where}: {key} = {value!r} must be an absolute path")
    return Path(value)


def _reworded(where: str, exc: BpfError) -> ConfigError:
    return ConfigError(exc.errno, f"{where}: {exc.strerror}")


def _target(where: str, table: dict[str, Any], problems: _Problems) -> Target | None:
    """The entry's target; None (and the problem recorded) when it is malformed."""
    given = [key for key in _TARGET_KEYS if key in table]
    if len(given) > 1:
        problems.add(where, f"give one target, not {' and '.join(given)}: cgroup (a path or "
                     "pattern), unit or kubernetes")
        return None
    try:
        if not given:
            return Target()
        if given[0] == "cgroup":
            text = _string(where, table, "cgroup")
            if not os.path.isabs(text) or ".." in Path(text).parts:
                _fail(f"{where}: cgroup = {text!r} must be an absolute path without '..' "
                      "(e.g. /sys/fs/cgroup/batch or /sys/fs/cgroup/workload.slice/*.service)")
            if _GLOB.search(text):
                return Target("pattern", CgroupPattern(text).text)
            return Target("cgroup", str(Path(text)))
        if given[0] == "unit":
            return Target("unit", check_unit_name(_string(where, table, "unit")))
        return _kube_target(f"{where} kubernetes", table["kubernetes"], problems)
    except ConfigError:
        raise
    except BpfError as exc:
        raise _reworded(where, exc) from None


def _kube_target(where: str, table: Any, problems: _Problems) -> Target | None:
    if not isinstance(table, dict):
        _fail(f"{where} must be a table: {{ qos = \"besteffort\" }}, {{ pod_uid = \"...\" }} or "
              "{ pod = \"namespace/name\" }")
    _unknown(where, table, _KUBE_KEYS, problems)
    root = _absolute(where, table, "root")
    chosen = [key for key in ("qos", "pod_uid", "pod") if key in table]
    if len(chosen) != 1:
        _fail(f"{where}: give exactly one of qos, pod_uid and pod"
              + (f", not {' and '.join(chosen)}" if chosen else ""))
    key = chosen[0]
    value = _string(where, table, key)
    if key == "qos":
        if value not in QOS_CLASSES:
            _fail(f"{where}: qos = {value!r} is not one of {', '.join(map(repr, QOS_CLASSES))}"
                  f"{suggest(value, QOS_CLASSES)}")
    elif key == "pod_uid":
        kube_patterns(pod_uid=value, root=root or "/")  # checks the UID's form
        value = value.lower()
    else:
        check_pod_name(value)
    return Target("kubernetes", f"{key}={value}", None if root is None else str(root))


def _entry(where: str, table: Any, base: Path | None, problems: _Problems
           ) -> tuple[Entry | None, bool]:
    """The entry, and whether it is free of problems (one with problems is still returned when
    it names a policy, so that its object and tunables can be checked too)."""
    if not isinstance(table, dict):
        problems.add(where, "must be a table ([[attach]])")
        return None, False
    before = len(problems.found)
    _unknown(where, table, _ENTRY_KEYS, problems)
    policy = problems.check(_string, where, table, "policy")
    if not policy and "policy" not in table:
        problems.add(where, "policy is missing; give a shipped policy name (`bpfoom policies`) "
                     "or the path of a .bpf.o")
    target = problems.check(_target, where, table, problems)
    if isinstance(policy, str) and base is not None and (policy.endswith(".o") or "/" in policy) \
            and not Path(policy).is_absolute():
        policy = str(base / policy)  # relative to the config file, not to the cwd
    entry_id = problems.check(_string, where, table, "id")
    if entry_id is None and isinstance(policy, str) and target is not None:
        named = target.value if target.kind != "system" else "system"
        entry_id = re.sub(r"[^A-Za-z0-9_@+-]", "_",
                          f"{Path(policy).name.removesuffix('.bpf.o')}@{named.strip('/')}")[:200]
    if entry_id is not None and not _ID.match(entry_id):
        problems.add(where, f"id {entry_id!r} must be 1-200 characters of letters, digits and "
                     "_@+- (it names the pin; bpffs refuses dots)")
    pin = table.get("pin", True)
    if not isinstance(pin, bool):
        problems.add(where, f"pin must be true or false, not {pin!r}")
    tunables = table.get("tunables", {})
    if not isinstance(tunables, dict):
        problems.add(where, "tunables must be a table ([attach.tunables])")
    dry_run = table.get("dry_run", False)
    if not isinstance(dry_run, bool):
        problems.add(where, f"dry_run must be true or false, not {dry_run!r}")
    elif dry_run and isinstance(tunables, dict):
        tunables = {**tunables, "dry_run": True}  # the shipped policies' tunable
    map_name = problems.check(_string, where, table, "map")
    name = problems.check(_string, where, table, "name")
    granularity = problems.check(_granularity, where, table.get("granularity", {}), target) \
        if target is not None else None
    if not isinstance(policy, str) or not policy:
        return None, False
    # With problems, still an entry to check the object and tunables of (check_config).
    target = target or Target()
    settings = problems.check(_settings, where, table.get("cgroup_settings", {}), target)
    return Entry(entry_id or "?", policy, target.value if target.kind == "cgroup" else None,
                 map_name, name, pin if isinstance(pin, bool) else True,
                 dict(tunables) if isinstance(tunables, dict) else {},
                 granularity if granularity is not None else {"?": "?"} if "granularity" in table
                 else {}, target, settings=settings or {}), len(problems.found) == before


_SETTING_KEYS = ("priority", "protected")


def _settings(where: str, table: Any, target: Target) -> dict[str, dict[str, Any]]:
    """[attach.cgroup_settings]: cgroup path (relative: under the target) -> {priority, protected}."""
    if not isinstance(table, dict):
        _fail(f"{where}: cgroup_settings must be a table of cgroup path = {{ priority = N, "
              "protected = true }}")
    found: dict[str, dict[str, Any]] = {}
    for path, setting in table.items():
        if not isinstance(setting, dict) or not setting or set(setting) - set(_SETTING_KEYS):
            _fail(f"{where}: cgroup_settings of {path!r} must be {{ priority = N, protected = "
                  f"true|false }} (either or both), not {setting!r}")
        priority = setting.get("priority", 0)
        if isinstance(priority, bool) or not isinstance(priority, int) or \
                not -2**31 <= priority < 2**31:
            _fail(f"{where}: cgroup_settings priority of {path!r} must be an integer, not "
                  f"{priority!r}")
        if not isinstance(setting.get("protected", False), bool):
            _fail(f"{where}: cgroup_settings protected of {path!r} must be true or false")
        if ".." in Path(path).parts:
            _fail(f"{where}: cgroup_settings cgroup {path!r} must not contain '..'")
        if not Path(path).is_absolute():
            if target.kind == "system":
                _fail(f"{where}: cgroup_settings cgroup {path!r} is relative but the entry is "
                      "system-wide; give an absolute cgroup path")
            if target.kind == "cgroup":
                path = str(Path(target.value) / path)
        found[str(Path(path))] = {"priority": priority,
                                  "protected": int(setting.get("protected", False))}
    return found


def _granularity(where: str, table: Any, target: Target) -> dict[str, str]:
    """[attach.granularity]: cgroup path (relative: under the entry's target) -> choice."""
    if not isinstance(table, dict):
        _fail(f"{where}: granularity must be a table ([attach.granularity]) of cgroup path = "
              "\"task\" | \"cgroup\" | \"subtree\"")
    found: dict[str, str] = {}
    for path, choice in table.items():
        if choice not in GRANULARITY_CHOICES:
            _fail(f"{where}: granularity of {path!r} is {choice!r}, not one "
                  f"of {', '.join(map(repr, GRANULARITY_CHOICES))}"
                  f"{suggest(str(choice), GRANULARITY_CHOICES)}")
        if ".." in Path(path).parts:
            _fail(f"{where}: granularity cgroup {path!r} must not contain '..'")
        if not Path(path).is_absolute():
            if target.kind == "system":
                _fail(f"{where}: granularity cgroup {path!r} is relative but the entry is "
                      "system-wide; give an absolute cgroup path")
            if target.kind == "cgroup":
                path = str(Path(target.value) / path)
        found[str(Path(path))] = choice
    return found


def granularity_under(entry: Entry, cgroup: str | os.PathLike[str]) -> dict[str, str]:
    """``entry``'s granularity with relative cgroups taken under ``cgroup`` (one it resolved to)."""
    return {str(path if Path(path).is_absolute() else Path(cgroup) / path): choice
            for path, choice in entry.granularity.items()}


def settings_under(entry: Entry, cgroup: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """``entry``'s cgroup_settings with relative cgroups taken under ``cgroup``."""
    return {str(path if Path(path).is_absolute() else Path(cgroup) / path): value
            for path, value in entry.settings.items()}


def apply_granularity(policy: Any, entry: Entry, before: Entry | None = None) -> Callable[[], None]:
    """Set ``entry``'s [attach.granularity] on its loaded OomPolicy; returns an undo.

    Settings ``before`` had and ``entry`` has not are dropped (back to the
    policy's default).  Applied before attach, or in place on reload: a
    granularity never needs the policy reloaded.
    """
    wanted = entry.granularity
    dropped = set(before.granularity) - set(wanted) if before is not None else set()
    if not wanted and not dropped:
        return lambda: None
    if not hasattr(policy, "set_granularity"):
        raise ConfigError(errno.EINVAL, f"entry {entry.id!r}: granularity applies only to "
                          "bpf_oom_ops policies that include policy_granularity.h (the shipped "
                          "ones); remove [attach.granularity] from this entry")
    previous = {path: policy.granularity(path) for path in {*wanted, *dropped}}

    def undo() -> None:
        for path, choice in previous.items():
            policy.set_granularity(path, choice)
    try:
        for path in dropped:
            policy.set_granularity(path, None)
        for path, choice in wanted.items():
            policy.set_granularity(path, choice)
    except BaseException:
        undo()
        raise
    return undo


def _parse(text: str, source: str, base: Path | None
           ) -> tuple[Config | None, list[tuple[str, Entry, bool]], list[BpfError]]:
    """(the config or None, (where, entry, free of problems) of the entries naming a policy,
    every problem found)."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        error = ConfigError(errno.EINVAL, f"{source} is not valid TOML: {exc}; fix the syntax")
        return None, [], [error]
    problems = _Problems()
    _unknown(source, document, ("daemon", "attach"), problems)
    daemon = document.get("daemon", {})
    if not isinstance(daemon, dict):
        problems.add(source, "[daemon] must be a table")
        daemon = {}
    where = f"{source} [daemon]"
    _unknown(where, daemon, _DAEMON_KEYS, problems)
    tables = document.get("attach", [])
    if not isinstance(tables, list):
        problems.add(source, "attach must be an array of tables ([[attach]])")
        tables = []
    places = [f"{source} [[attach]] #{index + 1}" for index in range(len(tables))]
    parsed = [_entry(where, table, base, problems) for where, table in zip(places, tables)]
    seen: set[str] = set()
    for entry, ok in parsed:
        if not ok or entry is None:
            continue
        if entry.id in seen:
            problems.add(source, f"two [[attach]] entries have the id {entry.id!r}; give one of "
                         "them another id")
        seen.add(entry.id)
    pin_dir = problems.check(_absolute, where, daemon, "pin_dir", str(DEFAULT_PIN_DIR))
    on_exit = problems.check(_choice, where, daemon, "on_exit", ("detach", "keep"))
    log = problems.check(_string, where, daemon, "log", "-")
    log_format = problems.check(_choice, where, daemon, "log_format", ("text", "json"))
    metrics_file = problems.check(_absolute, where, daemon, "metrics_file")
    journal = problems.check(_string, where, daemon, "journal", "auto")
    if isinstance(journal, str) and journal not in ("auto", "off") and not os.path.isabs(journal):
        problems.add(where, f"journal = {journal!r} must be \"auto\", \"off\" or the absolute path "
                     "of a journal socket")
    hook = daemon.get("kill_hook", [])
    if isinstance(hook, str):
        hook = [hook]
    if not isinstance(hook, list) or not all(isinstance(arg, str) for arg in hook) or \
            (hook and not os.path.isabs(hook[0])):
        problems.add(where, f"kill_hook = {hook!r} must be a command: an absolute path, or a list "
                     "of strings starting with one")
        hook = []
    interval = daemon.get("kill_hook_interval", 1.0)
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or interval < 0:
        problems.add(where, f"kill_hook_interval = {interval!r} must be a number of seconds (0 or "
                     "more)")
        interval = 1.0
    events = problems.check(_kube_events, where, daemon.get("kubernetes_events", "off"),
                            problems)
    pod_log_dir = problems.check(_absolute, where, daemon, "pod_log_dir", str(POD_LOG_DIR))
    named = [(where, entry, ok) for where, (entry, ok) in zip(places, parsed) if entry is not None]
    if problems.found:
        return None, named, problems.found
    return (Config(tuple(entry for _, entry, _ in named), pin_dir, on_exit, log, log_format,
                   metrics_file, journal, tuple(hook), float(interval), events, pod_log_dir),
            named, [])


def _kube_events(where: str, value: Any, problems: _Problems) -> ApiServer | str:
    """kubernetes_events: "off", "in-cluster", or a table naming the API server."""
    if value in ("off", "in-cluster"):
        return value
    if not isinstance(value, dict):
        _fail(f"{where}: kubernetes_events = {value!r} must be \"off\", \"in-cluster\" or a "
              "table { server = \"https://HOST:PORT\", token_file = \"...\", ca_file = \"...\" }")
    where = f"{where} kubernetes_events"
    _unknown(where, value, _EVENTS_KEYS, problems)
    server = _string(where, value, "server")
    if not isinstance(server, str) or not re.match(r"^https?://[^/]+", server):
        _fail(f"{where}: server = {server!r} must be the API server's URL (https://HOST:PORT)")
    files = [_absolute(where, value, key) for key in ("token_file", "ca_file")]
    return ApiServer(server, *(str(path) if path is not None else None for path in files))


def drop_in_dir(path: str | Path) -> Path:
    """``/etc/bpfoom/policies.toml`` -> ``/etc/bpfoom/policies.d``: its drop-in directory."""
    path = Path(path)
    return path.with_name(f"{path.stem}.d")


def _parse_file(path: str | Path) -> tuple[Config | None, list[tuple[str, Entry, bool]],
                                         list[BpfError]]:
    """The file and its drop-ins (``<stem>.d/*.toml``, by name): each drop-in holds
    ``[[attach]]`` entries only, added after the file's own; ids are unique across all."""
    config, named, problems = _parse(_read(path), str(path), Path(path).resolve().parent)
    directory = drop_in_dir(path)
    files = sorted(directory.glob("*.toml")) if directory.is_dir() else []
    for drop_in in files:
        text = _read(drop_in)
        _, more, found = _parse(text, str(drop_in), drop_in.resolve().parent)
        problems += found
        try:
            if "daemon" in tomllib.loads(text):
                problems.append(ConfigError(errno.EINVAL, f"{drop_in}: a drop-in holds only "
                                            "[[attach]] entries; move [daemon] to "
                                            f"{path}"))
        except tomllib.TOMLDecodeError:
            pass  # reported by _parse
        known = {entry.id: where for where, entry, ok in named if ok}
        for where, entry, ok in more:
            if ok and entry.id in known:
                problems.append(ConfigError(errno.EINVAL, f"{where}: id {entry.id!r} is taken by "
                                            f"{known[entry.id]}; give one of them another id"))
        named += more
    if problems:
        return None, named, problems
    if files and config is not None:
        config = replace(config, entries=tuple(entry for _, entry, _ in named))
    return config, named, problems


def parse_config(text: str, source: str = "<config>", base: Path | None = None) -> Config:
    """Parse and check configuration text; relative object paths are taken from ``base``.

    ConfigError lists every problem of the text (keys, types, targets,
    ids), not only the first; the objects are not opened (check_config).
    """
    config, _, problems = _parse(text, source, base)
    if problems or config is None:  # no config comes with problems
        raise ConfigError.of(problems)
    return config


def check_config(path: str | Path) -> Config:
    """Read the file at ``path`` and check all that can be checked without the kernel.

    Beyond what ``read_config`` checks: each entry's object exists, is a BPF
    object with the struct_ops map the entry names (or the policy's), and
    takes the entry's tunables (names, types, ranges) and granularity.
    Loads nothing.  ConfigError lists every problem found.
    """
    config, entries, problems = _parse_file(path)
    if config is not None and not entries:
        problems.append(ConfigError(errno.EINVAL, f"{path}: no [[attach]] entry, so nothing would "
                                    "be attached; add one (examples/daemon/ has samples)"))
    oom_targets: dict[str, str] = {}  # target -> the first bpf_oom_ops entry on it
    for where, entry, ok in entries:
        if entry.id != "?":
            where = f"{where} (id {entry.id!r})"
        found = check_source(entry.policy, resolved_tunables(entry, check=True),
                             map_name=entry.map, register_as=entry.name,
                             granularity=bool(entry.granularity))
        found += check_settings(entry) + check_percentages(entry)
        problems.extend(_reworded(where, problem) for problem in found)
        kind = struct_ops_type(entry) if ok else None
        if kind == "bpf_psi_ops" and entry.target.kind != "system":
            problems.append(ConfigError(errno.EINVAL, f"{where}: {entry.policy} is a bpf_psi_ops "
                                        "handler, which attaches system-wide and chooses the "
                                        "cgroups it watches through its settings; remove "
                                        f"the {entry.target.kind} target"))
        if kind == "bpf_oom_ops" and entry.target.kind in ("system", "cgroup", "unit"):
            target = str(entry.target)
            first = oom_targets.setdefault(target, entry.id)
            if first != entry.id:
                problems.append(ConfigError(errno.EEXIST, f"{where}: entries {first!r} and "
                                            f"{entry.id!r} both attach a bpf_oom_ops to {target}, "
                                            "where the kernel takes one; remove one, or move it "
                                            "to a parent or child cgroup"))
    if problems or config is None:  # no config comes with problems
        raise ConfigError.of(problems)
    return config


def struct_ops_type(entry: Entry) -> str | None:
    """The struct_ops type ``entry``'s object registers (opened, not loaded); None if it cannot
    be told (an object that does not open: the check reports that)."""
    for info in policies():
        if info.name == entry.policy:
            return info.requires[0] if info.requires else None
    try:
        with BpfObject.open(Path(entry.policy)) as obj:
            maps = [ops for name, ops in obj.struct_ops.items()
                    if (entry.map is None and ops.struct_name in POLICY_KINDS)
                    or name == entry.map]
            return maps[0].struct_name if len(maps) == 1 else None
    except BpfError:
        return None


def _read(path: str | Path) -> str:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise NotFoundError(errno.ENOENT, f"configuration {str(path)!r} does not exist; check the "
                            "path (examples/daemon/ has samples)") from None
    try:
        return data.decode("utf-8")  # TOML is UTF-8 whatever the locale says
    except UnicodeDecodeError as exc:
        raise ConfigError(errno.EINVAL, f"{path}: byte {exc.start} is not UTF-8 text ({exc.reason}); "
                          "TOML files are UTF-8: save it as UTF-8") from None


def read_config(path: str | Path) -> Config:
    """Read and check the configuration file at ``path`` and its drop-ins (see parse_config)."""
    config, _, problems = _parse_file(path)
    if problems or config is None:  # no config comes with problems
        raise ConfigError.of(problems)
    return config
