"""DecisionEvent: one OOM decision a bpfoom policy reported, with its explanation.

The record is ``struct policy_event`` of bpfoom/oom/include/policy_event.h.
Its ``schema`` field versions the layout; a record of a schema this module
does not know raises :class:`~bpfoom.errors.InvalidValueError` rather than
being misread.  :meth:`DecisionEvent.to_json` is the documented JSON form
(``"schema": 2``), one object per event:

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
                      "kill_failed", "memory_pressure" (declared_oom), or "none"
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
import struct
import time
from dataclasses import dataclass, field

from ..bpf.errors import InvalidValueError, errno_name

__all__ = ["DecisionEvent", "Candidate", "Exclusion", "SCHEMA", "ACTIONS", "REASONS",
           "EXCLUSIONS", "GRANULARITIES", "decode_event"]

SCHEMA = 2
MAX_PIDS = 16
MAX_CANDIDATES = 8
MAX_EXCLUDED_IDS = 4

# enum policy_action / policy_reason / policy_exclusion / policy_granularity of policy_event.h
ACTIONS = {1: "killed", 2: "waiting", 3: "declined", 4: "dry_run", 5: "cgroup_offline",
           6: "declared_oom"}
REASONS = {
    0: "none", 1: "largest_leaf", 2: "priority_class", 3: "only_protected", 4: "largest_task",
    5: "newest_task", 6: "victim_exiting", 7: "nothing_killable", 8: "system_wide_oom",
    9: "below_minimum", 10: "kill_failed", 11: "memory_pressure",
}
EXCLUSIONS = ("unkillable", "protected", "oom_victim", "below_minimum")
GRANULARITIES = {1: "task", 2: "cgroup", 3: "subtree"}
_CANDIDATE_PROTECTED = 1

_HEADER = struct.Struct("<HH")
_CANDIDATE = "QQQiiII"
_EXCLUSION = f"II{MAX_EXCLUDED_IDS}Q{MAX_EXCLUDED_IDS}i"
_RECORD = struct.Struct(f"<HHHH32sQQQQQiIIHH{MAX_PIDS}iQQII"
                        f"{_CANDIDATE * MAX_CANDIDATES}{_EXCLUSION * len(EXCLUSIONS)}")
_CANDIDATE_FIELDS = 7
_EXCLUSION_FIELDS = 2 + 2 * MAX_EXCLUDED_IDS


@dataclass(frozen=True)
class Candidate:
    """One candidate a policy ranked: a leaf cgroup (pid 0) or a task."""

    cgroup_id: int
    pid: int
    usage_bytes: int
    rank: int
    priority: int = 0
    protected: bool = False

    def to_json(self) -> dict:
        return {"cgroup_id": self.cgroup_id, "pid": self.pid, "usage_bytes": self.usage_bytes,
                "rank": self.rank, "priority": self.priority, "protected": self.protected}


@dataclass(frozen=True)
class Exclusion:
    """How many candidates were left out for one reason, and the first few (cgroup id, pid)."""

    count: int
    first: tuple[tuple[int, int], ...] = ()

    def to_json(self) -> dict:
        return {"count": self.count,
                "first": [{"cgroup_id": cgroup_id, "pid": pid} for cgroup_id, pid in self.first]}


def _candidates(fields: list[int], count: int) -> tuple[Candidate, ...]:
    found = []
    for index in range(min(count, MAX_CANDIDATES)):
        cgroup_id, usage, rank, pid, priority, flags, _ = \
            fields[index * _CANDIDATE_FIELDS:(index + 1) * _CANDIDATE_FIELDS]
        found.append(Candidate(cgroup_id, pid, usage, rank, priority,
                               bool(flags & _CANDIDATE_PROTECTED)))
    return tuple(found)


def _exclusions(fields: list[int]) -> dict[str, Exclusion]:
    found = {}
    for index, why in enumerate(EXCLUSIONS):
        count, _, *rest = fields[index * _EXCLUSION_FIELDS:(index + 1) * _EXCLUSION_FIELDS]
        ids, pids = rest[:MAX_EXCLUDED_IDS], rest[MAX_EXCLUDED_IDS:]
        found[why] = Exclusion(count, tuple(zip(ids, pids))[:min(count, MAX_EXCLUDED_IDS)])
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
    def from_bytes(cls, data: bytes) -> "DecisionEvent":
        """Decode one record; InvalidValueError for an unknown schema or size."""
        if len(data) < _HEADER.size:
            raise InvalidValueError(errno.EINVAL, f"a {len(data)}-byte record is not a policy "
                                    "event; the policy's `events` map must carry struct policy_event")
        schema, size = _HEADER.unpack_from(data)
        if schema != SCHEMA or size != _RECORD.size or len(data) < _RECORD.size:
            raise InvalidValueError(errno.EINVAL, f"policy event of schema {schema} and size {size} "
                                    f"(this bpfoom reads schema {SCHEMA}, {_RECORD.size} bytes); "
                                    "rebuild the policy with this bpfoom's policy_event.h")
        fields = list(_RECORD.unpack_from(data))
        (_, _, action, reason, name, time_ns, scope, oom, victim, usage, error, candidates,
         nr_pids, granularity, _reserved) = fields[:15]
        pids = fields[15:15 + MAX_PIDS]
        granularity_cgroup, oom_group, nr_candidates, _reserved2 = \
            fields[15 + MAX_PIDS:19 + MAX_PIDS]
        rest = fields[19 + MAX_PIDS:]
        split = _CANDIDATE_FIELDS * MAX_CANDIDATES
        return cls(
            policy=name.split(b"\0", 1)[0].decode(errors="replace"),
            action=ACTIONS.get(action, f"unknown({action})"),
            reason=REASONS.get(reason, f"unknown({reason})"),
            scope_cgroup_id=scope, oom_cgroup_id=oom, victim_cgroup_id=victim,
            usage_bytes=usage, pids=tuple(pids[:min(nr_pids, MAX_PIDS)]), nr_pids=nr_pids,
            candidates=candidates, error=-error if error else None, monotonic_ns=time_ns,
            considered=_candidates(rest[:split], nr_candidates),
            excluded=_exclusions(rest[split:]),
            granularity=GRANULARITIES.get(granularity),
            granularity_cgroup_id=granularity_cgroup, oom_group_cgroup_id=oom_group,
        )

    @property
    def wall_time(self) -> datetime.datetime:
        """The decision's wall-clock time (converted from CLOCK_MONOTONIC now)."""
        offset_ns = time.time_ns() - time.monotonic_ns()
        return datetime.datetime.fromtimestamp((self.monotonic_ns + offset_ns) / 1e9,
                                               tz=datetime.timezone.utc)

    def to_json(self) -> dict:
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


# The ring buffer callbacks' spelling.
decode_event = DecisionEvent.from_bytes
