"""The daemon's TOML configuration: which policy goes on which cgroup, with what.

::

    [daemon]
    pin_dir = "/sys/fs/bpf/bpfoom/daemon"  # links are pinned here as <id>; a restart re-adopts them
    on_exit = "detach"                     # or "keep": SIGTERM/SIGINT leave pinned policies attached
    log = "-"                              # "-" = stderr, or a file appended to
    log_format = "text"                    # or "json": one JSON object per line

    [[attach]]
    id = "batch"                           # optional, default "<policy>@<cgroup or system>" (no dots)
    policy = "largest_leaf"                # shipped policy name or .bpf.o path (relative: to this file)
    cgroup = "/sys/fs/cgroup/batch"        # optional, default system-wide
    map = "my_ops"                         # optional: struct_ops map of an object with several
    name = "my_ops_v2"                     # optional: register under this name (a .bpf.o only)
    pin = true                             # optional, default true (false: detached on exit)
    [attach.tunables]
    min_usage_mb = 16
    [attach.granularity]                   # optional, bpf_oom_ops policies: what dies (policy_granularity.h)
    "web" = "task"                         # cgroup (relative: under `cgroup`) = "task" | "cgroup" | "subtree"
    "/sys/fs/cgroup/batch/jobs" = "subtree"

Unknown keys are errors that suggest the key meant, so a typo cannot
silently leave a policy with its defaults.
"""

from __future__ import annotations

import errno
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]

from ._load import suggest
from .errors import BpfError, NotFoundError

__all__ = ["Config", "ConfigError", "Entry", "read_config", "DEFAULT_PIN_DIR", "GRANULARITY_CHOICES",
           "apply_granularity"]

DEFAULT_PIN_DIR = Path("/sys/fs/bpf/bpfoom/daemon")
_DAEMON_KEYS = ("pin_dir", "on_exit", "log", "log_format")
_ENTRY_KEYS = ("id", "policy", "cgroup", "map", "name", "pin", "tunables", "granularity")
# What OomPolicy.set_granularity takes (bpfoom.policy.GRANULARITIES).
GRANULARITY_CHOICES = ("task", "cgroup", "subtree")
_ID = re.compile(r"^[A-Za-z0-9_@+-]{1,200}$")


class ConfigError(BpfError, ValueError):
    """The configuration file is malformed; the message names the file, entry and key."""


@dataclass(frozen=True)
class Entry:
    """One ``[[attach]]`` table."""

    id: str
    policy: str
    cgroup: str | None = None
    map: str | None = None
    name: str | None = None
    pin: bool = True
    tunables: dict[str, Any] = field(default_factory=dict)
    granularity: dict[str, str] = field(default_factory=dict)  # absolute cgroup path -> choice

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


def _unknown(where: str, table: dict[str, Any], allowed: tuple[str, ...]) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(errno.EINVAL, f"{where}: unknown key {key!r}{suggest(key, allowed)}; "
                              f"allowed: {', '.join(allowed)}")


def _string(where: str, table: dict[str, Any], key: str, default: Any = None) -> Any:
    value = table.get(key, default)
    if value is not None and not isinstance(value, str):
        raise ConfigError(errno.EINVAL, f"{where}: {key} must be a string, not {value!r}")
    return value


def _choice(where: str, table: dict[str, Any], key: str, choices: tuple[str, ...]) -> str:
    value = _string(where, table, key, choices[0])
    if value not in choices:
        raise ConfigError(errno.EINVAL, f"{where}: {key} = {value!r} is not one of "
                          f"{', '.join(map(repr, choices))}{suggest(value, choices)}")
    return value


def _entry(where: str, table: Any, base: Path | None) -> Entry:
    if not isinstance(table, dict):
        raise ConfigError(errno.EINVAL, f"{where} must be a table ([[attach]])")
    _unknown(where, table, _ENTRY_KEYS)
    policy = _string(where, table, "policy")
    if not policy:
        raise ConfigError(errno.EINVAL, f"{where}: policy is missing; give a shipped policy name "
                          "(`bpfoom policies`) or the path of a .bpf.o")
    cgroup = _string(where, table, "cgroup")
    if base is not None and (policy.endswith(".o") or "/" in policy) and not Path(policy).is_absolute():
        policy = str(base / policy)  # relative to the config file, not to the cwd
    entry_id = _string(where, table, "id") or re.sub(
        r"[^A-Za-z0-9_@+-]", "_",
        f"{Path(policy).name.removesuffix('.bpf.o')}@{(cgroup or 'system').strip('/')}")[:200]
    if not _ID.match(entry_id):
        raise ConfigError(errno.EINVAL, f"{where}: id {entry_id!r} must be 1-200 characters of "
                          "letters, digits and _@+- (it names the pin; bpffs refuses dots)")
    pin = table.get("pin", True)
    if not isinstance(pin, bool):
        raise ConfigError(errno.EINVAL, f"{where}: pin must be true or false, not {pin!r}")
    tunables = table.get("tunables", {})
    if not isinstance(tunables, dict):
        raise ConfigError(errno.EINVAL, f"{where}: tunables must be a table ([attach.tunables])")
    return Entry(entry_id, policy, cgroup, _string(where, table, "map"),
                 _string(where, table, "name"), pin, dict(tunables),
                 _granularity(where, table.get("granularity", {}), cgroup))


def _granularity(where: str, table: Any, cgroup: str | None) -> dict[str, str]:
    """[attach.granularity]: cgroup path (relative: under the entry's cgroup) -> choice."""
    if not isinstance(table, dict):
        raise ConfigError(errno.EINVAL, f"{where}: granularity must be a table ([attach.granularity]) "
                          "of cgroup path = \"task\" | \"cgroup\" | \"subtree\"")
    found: dict[str, str] = {}
    for path, choice in table.items():
        if choice not in GRANULARITY_CHOICES:
            raise ConfigError(errno.EINVAL, f"{where}: granularity of {path!r} is {choice!r}, not one "
                              f"of {', '.join(map(repr, GRANULARITY_CHOICES))}"
                              f"{suggest(str(choice), GRANULARITY_CHOICES)}")
        if not Path(path).is_absolute():
            if cgroup is None:
                raise ConfigError(errno.EINVAL, f"{where}: granularity cgroup {path!r} is relative but "
                                  "the entry is system-wide; give an absolute cgroup path")
            path = str(Path(cgroup) / path)
        found[str(Path(path))] = choice
    return found


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


def parse_config(text: str, source: str = "<config>", base: Path | None = None) -> Config:
    """Parse and check configuration text; relative object paths are taken from ``base``."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(errno.EINVAL, f"{source} is not valid TOML: {exc}; fix the syntax") from None
    _unknown(source, document, ("daemon", "attach"))
    daemon = document.get("daemon", {})
    if not isinstance(daemon, dict):
        raise ConfigError(errno.EINVAL, f"{source}: [daemon] must be a table")
    _unknown(f"{source} [daemon]", daemon, _DAEMON_KEYS)
    where = f"{source} [daemon]"
    tables = document.get("attach", [])
    if not isinstance(tables, list):
        raise ConfigError(errno.EINVAL, f"{source}: attach must be an array of tables ([[attach]])")
    entries = tuple(_entry(f"{source} [[attach]] #{index + 1}", table, base)
                    for index, table in enumerate(tables))
    seen: set[str] = set()
    for entry in entries:
        if entry.id in seen:
            raise ConfigError(errno.EINVAL, f"{source}: two [[attach]] entries have the id "
                              f"{entry.id!r}; give one of them another id")
        seen.add(entry.id)
    return Config(entries, Path(_string(where, daemon, "pin_dir", str(DEFAULT_PIN_DIR))),
                  _choice(where, daemon, "on_exit", ("detach", "keep")),
                  _string(where, daemon, "log", "-"),
                  _choice(where, daemon, "log_format", ("text", "json")))


def read_config(path: str | Path) -> Config:
    """Read and check the configuration file at ``path``."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise NotFoundError(errno.ENOENT, f"configuration {str(path)!r} does not exist; check the "
                            "path (examples/daemon/ has samples)") from None
    return parse_config(text, str(path), Path(path).resolve().parent)
