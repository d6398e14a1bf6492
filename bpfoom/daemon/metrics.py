"""Prometheus metrics of OOM handling, in the text exposition format (version 0.0.4).

The daemon feeds every event it reads to :meth:`Metrics.observe` and the
kernel's attachment list to :meth:`Metrics.set_attached`; :meth:`Metrics.write`
replaces a ``.prom`` file atomically (a temporary file in the same
directory, fsync, rename), so node_exporter's textfile collector never reads
half a file.  No dependency: the format is a few lines of text.

The metrics::

    Metric                                    type     labels
    ``bpfoom_kills_total``                    counter  policy ("default": the kernel's killer), constraint
                                                       (memcg, none (system-wide), cpuset, memory_policy,
                                                       bpf (declared by a PSI handler)); memcg and none
                                                       start at 0 for every configured policy
    ``bpfoom_decisions_total``                counter  policy, action, reason
    ``bpfoom_declines_total``                 counter  policy, reason
    ``bpfoom_ooms_without_kill_total``        counter  handled ("true": counted as handled)
    ``bpfoom_overruns_total``                 counter  source (kill_watch or the policy)
    ``bpfoom_records_lost_total``             counter  source
    ``bpfoom_attached_policies``              gauge    policy, kind (oom, psi), target (cgroup path or "system")
    ``bpfoom_last_decision_timestamp_seconds`` gauge   policy
    ``bpfoom_last_kill_timestamp_seconds``    gauge    policy
    ``bpfoom_pending_targets``                gauge    entry, target (a configured target the daemon
                                                       waits for: a cgroup not there yet, a unit not
                                                       running, an attach it retries)
    ``bpfoom_build_info``                     gauge    version (always 1)
    ``bpfoom_kill_watcher_up``                gauge    (1: every OOM kill on the machine is seen)
    ``bpfoom_attach_failures_total``          counter  entry (attaches that failed; starts at 0)
    ``bpfoom_reloads_total``                  counter  result (success, failure; both start at 0)
    ``bpfoom_protected``                      gauge    entry (1: all it resolves to is attached; 0: pending
                                                       or failed, i.e. it cannot attach on this kernel)
"""

from __future__ import annotations

import os
import threading
import time
from datetime import datetime
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from .files import replace_file

__all__ = ["Metrics", "METRICS"]


def _version() -> str:
    """The installed distribution's version (what `bpfoom --version` says)."""
    from importlib import metadata

    try:
        return metadata.version("bpfoom")
    except metadata.PackageNotFoundError:  # a source tree on sys.path, never installed
        return "0+unknown"

# name -> (type, help, label names)
METRICS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "bpfoom_kills_total": ("counter", "OOM victims the kernel marked, by the policy that chose them "
                           "(default: the kernel's own killer) and the OOM's constraint",
                           ("policy", "constraint")),
    "bpfoom_decisions_total": ("counter", "Decisions reported by bpfoom policies",
                               ("policy", "action", "reason")),
    "bpfoom_declines_total": ("counter", "Decisions where a policy declined and left the OOM to the "
                              "next handler", ("policy", "reason")),
    "bpfoom_ooms_without_kill_total": ("counter", "OOMs that ended without a victim",
                                       ("handled",)),
    "bpfoom_overruns_total": ("counter", "Ring buffer overruns (records lost because it was full)",
                              ("source",)),
    "bpfoom_records_lost_total": ("counter", "Records lost to ring buffer overruns", ("source",)),
    "bpfoom_attached_policies": ("gauge", "OOM policies and PSI handlers attached, as the kernel's "
                                 "link list shows them", ("policy", "kind", "target")),
    "bpfoom_last_decision_timestamp_seconds": ("gauge", "Wall-clock time of the last decision",
                                               ("policy",)),
    "bpfoom_last_kill_timestamp_seconds": ("gauge", "Wall-clock time of the last OOM kill",
                                           ("policy",)),
    "bpfoom_pending_targets": ("gauge", "Configured targets the daemon waits for (a cgroup that does "
                               "not exist yet, a unit that does not run, an attach it retries)",
                               ("entry", "target")),
    "bpfoom_build_info": ("gauge", "The bpfoom version running (always 1)", ("version",)),
    "bpfoom_kill_watcher_up": ("gauge", "1 when every OOM kill on the machine is watched (the kill "
                               "watcher runs), 0 when kills are not seen", ()),
    "bpfoom_attach_failures_total": ("counter", "Attaches that failed, by configured entry",
                                     ("entry",)),
    "bpfoom_reloads_total": ("counter", "Configuration reloads, applied (success) or refused "
                             "(failure)", ("result",)),
    "bpfoom_protected": ("gauge", "1 when everything a configured entry resolves to now is attached, "
                         "0 when it is pending or failed (can never attach on this kernel)",
                         ("entry",)),
}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Metrics:
    """The counters and gauges; thread-safe, cheap to update from event callbacks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, dict[tuple[str, ...], float]] = defaultdict(dict)
        self._values["bpfoom_build_info"][(_version(),)] = 1
        self._values["bpfoom_kill_watcher_up"][()] = 0
        for result in ("success", "failure"):
            self._values["bpfoom_reloads_total"][(result,)] = 0

    def init(self, policies: Iterable[str], entries: Iterable[str]) -> None:
        """Start the counters of these policies and configured entries at 0 (a series that
        appears only at its first increment hides it from rate() and `== 0` alerts)."""
        with self._lock:
            for policy in [*policies, "default"]:
                for constraint in ("memcg", "none"):
                    self._values["bpfoom_kills_total"].setdefault((policy, constraint), 0)
            for entry in entries:
                self._values["bpfoom_attach_failures_total"].setdefault((entry,), 0)

    def set_kill_watcher(self, up: bool) -> None:
        with self._lock:
            self._values["bpfoom_kill_watcher_up"][()] = float(up)

    def attach_failed(self, entry: str) -> None:
        with self._lock:
            self._add("bpfoom_attach_failures_total", (entry,))

    def reloaded(self, applied: bool) -> None:
        with self._lock:
            self._add("bpfoom_reloads_total", ("success" if applied else "failure",))

    def _add(self, name: str, labels: tuple[str, ...], amount: float = 1) -> None:
        series = self._values[name]
        series[labels] = series.get(labels, 0) + amount

    def observe(self, event: Any, fields: dict[str, Any] | None = None) -> None:
        """Count one event: DecisionEvent, KillEvent, OomNoKillEvent or OverrunEvent (by its JSON form).

        ``fields`` is ``event.to_json()`` when the caller has it already (the
        daemon logs it first): building it is most of the cost of an event.
        """
        data: dict[str, Any] = event.to_json() if fields is None else fields
        kind = data.get("kind")
        stamp = datetime.fromisoformat(data["time"]).timestamp() if "time" in data else time.time()
        with self._lock:
            if kind == "kill":
                reason = data["constraint"].removeprefix("CONSTRAINT_").lower()  # memcg, none, ...
                self._add("bpfoom_kills_total", (data["policy"], reason))
                self._values["bpfoom_last_kill_timestamp_seconds"][(data["policy"],)] = stamp
            elif kind == "oom_no_kill":
                self._add("bpfoom_ooms_without_kill_total", (str(data["handled"]).lower(),))
            elif kind == "overrun":
                self._add("bpfoom_overruns_total", (data["source"],))
                self._add("bpfoom_records_lost_total", (data["source"],), data["lost"])
            elif "action" in data:  # a policy's decision
                policy, action, reason = data["policy"], data["action"], data["reason"]
                self._add("bpfoom_decisions_total", (policy, action, reason))
                if action == "declined":
                    self._add("bpfoom_declines_total", (policy, reason))
                self._values["bpfoom_last_decision_timestamp_seconds"][(policy,)] = stamp
            else:
                raise TypeError(f"not an OOM event: {event!r}")

    def set_attached(self, attachments: Iterable[Any]) -> None:
        """Replace the attached-policies gauge with ``bpfoom.attached()``'s answer."""
        series: dict[tuple[str, ...], float] = {}
        for item in attachments:
            target = str(item.cgroup_path) if item.cgroup_path else (
                "system" if not item.cgroup_id else f"cgroup_id:{item.cgroup_id}")
            key = (item.policy_name or "?", item.kind, target)
            series[key] = series.get(key, 0) + 1
        with self._lock:
            self._values["bpfoom_attached_policies"] = series

    def set_pending(self, pending: Iterable[Any]) -> None:
        """Replace the pending-targets gauge with the daemon's pending list (``.entry``, ``.target``)."""
        series: dict[tuple[str, ...], float] = {}
        for item in pending:
            key = (item.entry, item.target)
            series[key] = series.get(key, 0) + 1
        with self._lock:
            self._values["bpfoom_pending_targets"] = series

    def set_protected(self, protected: dict[str, bool]) -> None:
        """Replace the per-entry protection gauge (configured entry id -> protected now)."""
        with self._lock:
            self._values["bpfoom_protected"] = {(entry,): float(on) for entry, on in protected.items()}

    def render(self) -> str:
        """The text exposition: HELP and TYPE, then the samples, for every metric."""
        lines = []
        with self._lock:
            for name, (kind, help_text, labels) in METRICS.items():
                lines.append(f"# HELP {name} {_escape(help_text)}")
                lines.append(f"# TYPE {name} {kind}")
                for values, number in sorted(self._values.get(name, {}).items()):
                    pairs = ",".join(f'{label}="{_escape(value)}"' for label, value in zip(labels, values))
                    lines.append(f"{name}{{{pairs}}} {_number(number)}" if pairs else
                                 f"{name} {_number(number)}")
        return "\n".join(lines) + "\n"

    def write(self, path: str | os.PathLike[str]) -> None:
        """Replace ``path`` atomically with :meth:`render`'s text (mode 0644); OSError on failure."""
        replace_file(path, self.render(), fsync=True)
