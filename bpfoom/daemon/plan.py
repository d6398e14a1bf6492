"""What a reload must change: the wanted attachments against the attached ones.

The plan is computed in full, reading but changing nothing, before
:mod:`bpfoom.daemon.apply` touches the kernel; a plan that cannot be carried
out is then undone as a whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Protocol

from ..oom.loader import LoadedPolicy
from .config import Config, Entry

__all__ = ["Step", "Plan", "plan_reload", "DAEMON_SETTINGS"]

# [daemon] keys that only a restart applies.
DAEMON_SETTINGS = ("pin_dir", "on_exit", "log", "log_format", "metrics_file", "journal",
                   "kill_hook", "kill_hook_interval", "kubernetes_events", "pod_log_dir")

# "retune": set tunables/granularity on the live object; "switch": load a new object and
# point the link at it; "remove": detach; "add": load and attach.
Action = Literal["retune", "switch", "remove", "add"]


@dataclass(frozen=True)
class Step:
    action: Action
    id: str
    entry: Entry | None  # the wanted entry (None: "remove")
    tunables: dict[str, Any] = field(default_factory=dict)  # "retune": the changed ones

    @property
    def wanted(self) -> Entry:
        """The entry of an "add", "switch" or "retune" step (a "remove" has none)."""
        if self.entry is None:
            raise ValueError(f"the {self.action} step of {self.id!r} has no entry")
        return self.entry


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    restart_only: tuple[str, ...] = ()  # [daemon] settings that changed but wait for a restart

    def loads(self) -> list[Step]:
        """The steps that need a newly loaded object."""
        return [step for step in self.steps if step.action in ("switch", "add")]


class Attached(Protocol):
    """What the plan reads of an attached entry (apply.Running)."""

    entry: Entry
    loaded: LoadedPolicy
    live_object: bool


def plan_reload(running: Mapping[str, Attached], wanted: Mapping[str, Entry], old: Config,
                new: Config) -> Plan:
    """The steps from ``running`` (configured by ``old``) to ``wanted`` (the attachments ``new``
    resolves to, by id): removals and in-place changes first, additions last, so a moved entry
    frees its target before it is taken."""
    steps: list[Step] = []
    added: list[Step] = [Step("add", key, entry) for key, entry in wanted.items()
                         if key not in running]
    for key, current in running.items():
        entry = wanted.get(key)
        if entry == current.entry:
            continue
        if entry is None or (entry.cgroup, entry.pin) != (current.entry.cgroup, current.entry.pin):
            steps.append(Step("remove", key, None))  # gone, or moved: detach, then attach anew
            if entry is not None:
                added.append(Step("add", key, entry))
            continue
        changed = _retunable(current, entry)
        if changed is not None:
            steps.append(Step("retune", key, entry, changed))
        else:
            steps.append(Step("switch", key, entry))
    restart_only = tuple(name for name in DAEMON_SETTINGS
                         if getattr(new, name) != getattr(old, name))
    return Plan(tuple(steps + added), restart_only)


def _retunable(current: Attached, entry: Entry) -> dict[str, Any] | None:
    """The tunables to set in place, or None when only a fresh load can apply ``entry``."""
    if not (entry.same_program(current.entry) and current.live_object):
        return None
    if set(current.entry.tunables) - set(entry.tunables):
        return None  # a tunable back to its default: only a fresh load knows the default
    changed = {k: v for k, v in entry.tunables.items() if current.entry.tunables.get(k) != v}
    if not all(current.loaded.mutable(key) for key in changed):
        return None
    return changed
