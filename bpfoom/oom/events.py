"""DecisionEvent: one OOM decision a bpfoom policy reported, with its explanation.

The record is ``struct policy_event`` of bpfoom/oom/include/policy_event.h,
decoded with the layout in the BTF of the object that wrote it (see
:mod:`bpfoom.oom.records`).  Its ``schema`` field versions the record; a
record of a schema this module does not know raises
:class:`~bpfoom.errors.InvalidValueError` rather than being misread.
:meth:`DecisionEvent.to_json` is the documented JSON form
(``"schema": 2``), one object per event::

    ``schema``            2 (1 had no explanation: no ``considered``, ``excluded``,
                          ``granularity*``, ``oom_group_cgroup_id``)
    ``policy``            the policy's name (the struct_ops ``name``)
    ``action``            "killed", "waiting" (for an earlier victim to exit), "declined",
                          "dry_run" (would have killed ``pids``), "cgroup_offline"
                          (the scope cgroup went away; the kernel detached the policy),
                          or "declared_oom" (a PSI handler declared an OOM in
                          ``oom_cgroup_id``; ``error`` says if that failed)
    ``reason``            the rule: "largest_leaf", "priority_class", "only_protected",
                          "largest_task", "newest_task", "victim_exiting",
                          "nothing_killable", "system_wide_oom", "below_minimum",
                          "kill_failed", "memory_pressure" (declared_oom),
                          "quiet_after_oom" (a PSI handler's trigger fired too soon after
                          an OOM it declared freed memory: declined), or "none"
                          (cgroup_offline)
    ``scope_cgroup_id``   where the policy is attached (0: system-wide)
    ``oom_cgroup_id``     the memcg that ran out of memory (0: the whole system)
    ``victim_cgroup_id``  the chosen cgroup (0: none; for cgroup_offline the cgroup that went)
    ``usage_bytes``       the quantity that decided (leaf usage minus page cache, task memory)
    ``pids``              the tasks killed (or, for a dry run, that would be)
    ``nr_pids``           how many; ``pids`` holds at most the first 16
    ``candidates``        how many candidates the policy compared
    ``considered``        the best candidates (at most 8), in the order they would die:
                          ``{"cgroup_id", "pid" (0 for a cgroup), "usage_bytes" (a cgroup's
                          memory.current, a task's resident + swapped bytes), "rank" (what
                          it was ranked by: usage minus page cache, task memory, start time
                          in CLOCK_MONOTONIC ns for newest_task), "priority" (its class,
                          priority policy), "protected"}``
    ``excluded``          why others were left out, always the four keys "unkillable"
                          (a task with oom_score_adj -1000, or a cgroup holding one),
                          "protected" (passed over for an unprotected cgroup),
                          "oom_victim" (already an OOM victim, or a cgroup holding one),
                          "below_minimum" (a task under min_victim_bytes), each
                          ``{"count", "first": [{"cgroup_id", "pid"}, ...]}`` (at most 4)
    ``granularity``       what was killed: "task", "cgroup" or "subtree" (null: nothing)
    ``granularity_cgroup_id``  the cgroup whose setting applied (0: the policy's default)
    ``oom_group_cgroup_id``    the memcg with memory.oom.group that the kernel killed
                          whole when it killed the victim (0: none); why more tasks
                          may die than ``granularity`` says
    ``error``             the errno name of a failed kill, or null
    ``monotonic_ns``      CLOCK_MONOTONIC time of the decision
    ``time``              the same moment as wall-clock time (ISO 8601, UTC)
"""

from __future__ import annotations

import datetime
import errno
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..bpf.btf import Btf
from ..bpf.errors import StateError, errno_name
from ..bpf.map import Map
from ..bpf.object import BpfObject
from .kill_events import wall_time
from .records import RecordLayout, RecordText, shipped_layout

__all__ = ["DecisionEvent", "Candidate", "Exclusion", "SCHEMA", "ACTIONS", "REASONS",
           "EXCLUSIONS", "GRANULARITIES", "EVENTS_MAP", "DROPPED_MAP", "events_map", "decision_layout",
           "pinned_decision_layout"]

SCHEMA = 2
# The maps of policy_event.h: the decision ring buffer and its drop counter.
EVENTS_MAP = "events"
DROPPED_MAP = "events_dropped"

# enum policy_action / policy_reason / policy_exclusion / policy_granularity of policy_event.h
ACTIONS = {1: "killed", 2: "waiting", 3: "declined", 4: "dry_run", 5: "cgroup_offline",
           6: "declared_oom"}
REASONS = {
    0: "none", 1: "largest_leaf", 2: "priority_class", 3: "only_protected", 4: "largest_task",
    5: "newest_task", 6: "victim_exiting", 7: "nothing_killable", 8: "system_wide_oom",
    9: "below_minimum", 10: "kill_failed", 11: "memory_pressure", 12: "quiet_after_oom",
}
EXCLUSIONS = ("unkillable", "protected", "oom_victim", "below_minimum")
# What dies once the victim is chosen: the names OomPolicy.set_granularity and the daemon's
# configuration take, and the numbers policies read from their `granularity` map.
GRANULARITIES = {"task": 1, "cgroup": 2, "subtree": 3}
_GRANULARITY_NAMES = {number: name for name, number in GRANULARITIES.items()}
_CANDIDATE_PROTECTED = 1

_STRUCT = "policy_event"
_FIELDS = ("action", "reason", "policy", "time_ns", "scope_cgroup_id", "oom_cgroup_id",
           "victim_cgroup_id", "usage_bytes", "error", "candidates", "nr_pids", "granularity",
           "pids", "granularity_cgroup_id", "oom_group_cgroup_id", "nr_candidates", "candidate",
           "excluded")
_HOW: RecordText = {"what": "policy event", "schema": SCHEMA,
                    "advice": "rebuild the policy with this bpfoom's policy_event.h"}
# The object whose BTF decodes records given without one (DecisionEvent.from_bytes).
_REFERENCE_OBJECT = Path(__file__).resolve().parent / "policies" / "largest_leaf.bpf.o"


def events_map(obj: BpfObject, name: str) -> Map:
    """An object's decision ring buffer; StateError if its source lacks policy_event.h."""
    if EVENTS_MAP not in obj.maps:
        raise StateError(errno.EINVAL, f"{name} has no `{EVENTS_MAP}` ring buffer of decision "
                         "events; include policy_event.h in its source")
    return obj.maps[EVENTS_MAP]


def decision_layout(btf: Btf | None, where: str) -> RecordLayout:
    """The layout of struct policy_event in a policy's BTF (InvalidValueError if it has none)."""
    return RecordLayout.from_btf(btf, _STRUCT, _FIELDS, where=where, **_HOW)


def pinned_decision_layout(fd: int) -> RecordLayout | None:
    """The layout in the BTF of the policy that created map ``fd`` (None: the map has no BTF)."""
    return RecordLayout.of_map(fd, _STRUCT, _FIELDS, **_HOW)


def reference_layout() -> RecordLayout:
    """The layout of the shipped policies (read once from one of their objects)."""
    return shipped_layout(_REFERENCE_OBJECT, _STRUCT, _FIELDS, _HOW["what"], SCHEMA,
                          _HOW["advice"])


@dataclass(frozen=True)
class Candidate:
    """One candidate a policy ranked: a leaf cgroup (pid 0) or a task."""

    cgroup_id: int
    pid: int
    usage_bytes: int
    rank: int
    priority: int = 0
    protected: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"cgroup_id": self.cgroup_id, "pid": self.pid, "usage_bytes": self.usage_bytes,
                "rank": self.rank, "priority": self.priority, "protected": self.protected}


@dataclass(frozen=True)
class Exclusion:
    """How many candidates were left out for one reason, and the first few (cgroup id, pid)."""

    count: int
    first: tuple[tuple[int, int], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count,
                "first": [{"cgroup_id": cgroup_id, "pid": pid} for cgroup_id, pid in self.first]}


def _candidates(slots: list[dict[str, Any]], count: int) -> tuple[Candidate, ...]:
    return tuple(Candidate(c["cgroup_id"], c["pid"], c["usage_bytes"], c["rank"], c["priority"],
                           bool(c["flags"] & _CANDIDATE_PROTECTED)) for c in slots[:count])


def _exclusions(slots: list[dict[str, Any]]) -> dict[str, Exclusion]:
    found: dict[str, Exclusion] = {}
    for why, slot in zip(EXCLUSIONS, slots):
        firsts = tuple(zip(slot["cgroup_ids"], slot["pids"]))
        found[why] = Exclusion(slot["count"], firsts[:slot["count"]])
    return found


@dataclass(frozen=True)
class DecisionEvent:
    """What a policy decided about one OOM, and why (see the module doc for each field)."""

    policy: str
    action: str
    reason: str
    scope_cgroup_id: int
    oom_cgroup_id: int
    victim_cgroup_id: int
    usage_bytes: int
    pids: tuple[int, ...]
    nr_pids: int
    candidates: int
    error: int | None
    monotonic_ns: int
    considered: tuple[Candidate, ...] = ()
    excluded: dict[str, Exclusion] | None = field(default=None, hash=False)
    granularity: str | None = None
    granularity_cgroup_id: int = 0
    oom_group_cgroup_id: int = 0
    schema: int = SCHEMA

    @classmethod
    def from_bytes(cls, data: bytes, layout: RecordLayout | None = None) -> "DecisionEvent":
        """Decode one record; InvalidValueError for an unknown schema or size.

        ``layout`` is the writer's (:func:`decision_layout` of its object's
        BTF); without one, the shipped policies' layout is used.
        """
        record = (layout or reference_layout()).decode(data)
        nr_pids, error = record["nr_pids"], record["error"]
        return cls(
            policy=record["policy"],
            action=ACTIONS.get(record["action"], f"unknown({record['action']})"),
            reason=REASONS.get(record["reason"], f"unknown({record['reason']})"),
            scope_cgroup_id=record["scope_cgroup_id"], oom_cgroup_id=record["oom_cgroup_id"],
            victim_cgroup_id=record["victim_cgroup_id"], usage_bytes=record["usage_bytes"],
            pids=tuple(record["pids"][:nr_pids]), nr_pids=nr_pids,
            candidates=record["candidates"], error=-error if error else None,
            monotonic_ns=record["time_ns"],
            considered=_candidates(record["candidate"], record["nr_candidates"]),
            excluded=_exclusions(record["excluded"]),
            granularity=_GRANULARITY_NAMES.get(record["granularity"]),
            granularity_cgroup_id=record["granularity_cgroup_id"],
            oom_group_cgroup_id=record["oom_group_cgroup_id"],
        )

    @property
    def wall_time(self) -> datetime.datetime:
        """The decision's wall-clock time (converted from CLOCK_MONOTONIC now)."""
        return wall_time(self.monotonic_ns)

    def to_json(self) -> dict[str, Any]:
        """The documented, versioned JSON form (``"schema": 2``)."""
        excluded = self.excluded or {why: Exclusion(0) for why in EXCLUSIONS}
        return {
            "schema": self.schema,
            "policy": self.policy,
            "action": self.action,
            "reason": self.reason,
            "scope_cgroup_id": self.scope_cgroup_id,
            "oom_cgroup_id": self.oom_cgroup_id,
            "victim_cgroup_id": self.victim_cgroup_id,
            "usage_bytes": self.usage_bytes,
            "pids": list(self.pids),
            "nr_pids": self.nr_pids,
            "candidates": self.candidates,
            "considered": [candidate.to_json() for candidate in self.considered],
            "excluded": {why: exclusion.to_json() for why, exclusion in excluded.items()},
            "granularity": self.granularity,
            "granularity_cgroup_id": self.granularity_cgroup_id,
            "oom_group_cgroup_id": self.oom_group_cgroup_id,
            "error": errno_name(self.error) if self.error else None,
            "monotonic_ns": self.monotonic_ns,
            "time": self.wall_time.isoformat(),
        }

    def __str__(self) -> str:
        pids = ",".join(map(str, self.pids)) or "-"
        group = f" (memory.oom.group of cgroup {self.oom_group_cgroup_id} killed it whole)" \
            if self.oom_group_cgroup_id else ""
        return (f"{self.policy}: {self.action} ({self.reason}) victim cgroup "
                f"{self.victim_cgroup_id} pids {pids} usage {self.usage_bytes} bytes{group}")
