"""DecisionEvent: one OOM decision a bpfoom policy reported on its ring buffer.

The record is ``struct policy_event`` of examples/policies/policy_event.h.
Its ``schema`` field versions the layout; a record of a schema this module
does not know raises :class:`~bpfoom.errors.InvalidValueError` rather than
being misread.  :meth:`DecisionEvent.to_json` is the documented JSON form
(``"schema": 1``), one object per event:

``schema``            1
``policy``            the policy's name (the struct_ops ``name``)
``action``            "killed", "waiting" (for an earlier victim to exit), "declined",
                      "dry_run" (would have killed ``pids``), "cgroup_offline"
                      (the scope cgroup went away; the kernel detached the policy),
                      or "declared_oom" (a PSI handler declared an OOM in
                      ``oom_cgroup_id``; ``error`` says if that failed)
``reason``            why: "largest_leaf", "priority_class", "only_protected",
                      "largest_task", "newest_task", "victim_exiting",
                      "nothing_killable", "system_wide_oom", "below_minimum",
                      "kill_failed", "memory_pressure" (declared_oom), or "none"
                      (cgroup_offline)
``scope_cgroup_id``   where the policy is attached (0: system-wide)
``oom_cgroup_id``     the memcg that ran out of memory (0: the whole system)
``victim_cgroup_id``  the chosen cgroup (0: none; for cgroup_offline the cgroup that went)
``usage_bytes``       the quantity that decided (leaf usage, task memory)
``pids``              the tasks killed (or, for a dry run, that would be)
``nr_pids``           how many; ``pids`` holds at most the first 16
``candidates``        how many candidates the policy compared
``error``             the errno name of a failed kill, or null
``monotonic_ns``      CLOCK_MONOTONIC time of the decision
``time``              the same moment as wall-clock time (ISO 8601, UTC)
"""

from __future__ import annotations

import datetime
import errno
import struct
import time
from dataclasses import dataclass

from .errors import InvalidValueError, errno_name

__all__ = ["DecisionEvent", "SCHEMA", "ACTIONS", "REASONS", "decode_event"]

SCHEMA = 1
MAX_PIDS = 16

# enum policy_action / enum policy_reason of policy_event.h
ACTIONS = {1: "killed", 2: "waiting", 3: "declined", 4: "dry_run", 5: "cgroup_offline",
           6: "declared_oom"}
REASONS = {
    0: "none", 1: "largest_leaf", 2: "priority_class", 3: "only_protected", 4: "largest_task",
    5: "newest_task", 6: "victim_exiting", 7: "nothing_killable", 8: "system_wide_oom",
    9: "below_minimum", 10: "kill_failed", 11: "memory_pressure",
}

_HEADER = struct.Struct("<HH")
_RECORD = struct.Struct(f"<HHHH32sQQQQQiIII{MAX_PIDS}i")


@dataclass(frozen=True)
class DecisionEvent:
    """What a policy decided about one OOM (see the module doc for each field)."""

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
    schema: int = SCHEMA

    @classmethod
    def from_bytes(cls, data: bytes) -> "DecisionEvent":
        """Decode one ring buffer record; InvalidValueError for an unknown schema or size."""
        if len(data) < _HEADER.size:
            raise InvalidValueError(errno.EINVAL, f"a {len(data)}-byte record is not a policy "
                                    "event; the policy's `events` map must carry struct policy_event")
        schema, size = _HEADER.unpack_from(data)
        if schema != SCHEMA or size != _RECORD.size or len(data) < _RECORD.size:
            raise InvalidValueError(errno.EINVAL, f"policy event of schema {schema} and size {size} "
                                    f"(this bpfoom reads schema {SCHEMA}, {_RECORD.size} bytes); "
                                    "rebuild the policy with this bpfoom's policy_event.h")
        (_, _, action, reason, name, time_ns, scope, oom, victim, usage, error, candidates,
         nr_pids, _reserved, *pids) = _RECORD.unpack_from(data)
        return cls(
            policy=name.split(b"\0", 1)[0].decode(errors="replace"),
            action=ACTIONS.get(action, f"unknown({action})"),
            reason=REASONS.get(reason, f"unknown({reason})"),
            scope_cgroup_id=scope, oom_cgroup_id=oom, victim_cgroup_id=victim,
            usage_bytes=usage, pids=tuple(pids[:min(nr_pids, MAX_PIDS)]), nr_pids=nr_pids,
            candidates=candidates, error=-error if error else None, monotonic_ns=time_ns,
        )

    @property
    def wall_time(self) -> datetime.datetime:
        """The decision's wall-clock time (converted from CLOCK_MONOTONIC now)."""
        offset_ns = time.time_ns() - time.monotonic_ns()
        return datetime.datetime.fromtimestamp((self.monotonic_ns + offset_ns) / 1e9,
                                               tz=datetime.timezone.utc)

    def to_json(self) -> dict:
        """The documented, versioned JSON form (``"schema": 1``)."""
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
            "error": errno_name(self.error) if self.error else None,
            "monotonic_ns": self.monotonic_ns,
            "time": self.wall_time.isoformat(),
        }

    def __str__(self) -> str:
        pids = ",".join(map(str, self.pids)) or "-"
        return (f"{self.policy}: {self.action} ({self.reason}) victim cgroup "
                f"{self.victim_cgroup_id} pids {pids} usage {self.usage_bytes} bytes")


# The ring buffer callbacks' spelling.
decode_event = DecisionEvent.from_bytes
