"""Kill events: every OOM victim the kernel marked and every OOM that ended without one.

The records come from the kill watcher (bpfoom/oom/kill_watch.bpf.c, record
``struct kill_record`` of bpfoom/oom/include/kill_record.h, decoded with the
layout in the watcher object's BTF; see :class:`~bpfoom.kill_watch.KillWatcher`).
The record's ``schema`` versions it: one of a schema this module does not
know raises :class:`~bpfoom.errors.InvalidValueError` rather than being misread.

``to_json()`` is the documented JSON form, one object per event, all with
``"schema": 1``, a ``"kind"``, ``"monotonic_ns"`` (CLOCK_MONOTONIC, the clock
of policy decision events too) and ``"time"`` (the same moment as wall-clock
time, ISO 8601 UTC):

``"kind": "kill"``  the kernel marked a task as an OOM victim (killed it, or
gave an already exiting task the memory reserves to die)::

  ``policy``            who chose it: the ``name`` of the BPF OOM policy that was
                        running (``oom_policy=`` in the kernel's report), or
                        ``"default"`` for the kernel's own killer
  ``by_bpf``            true when a BPF policy chose it
  ``pid``, ``tgid``     the victim thread and its process
  ``comm``              the victim's command name
  ``uid``               the victim's user id
  ``oom_score_adj``     the victim's oom_score_adj
  ``victim_cgroup_id``  the victim's cgroup (cgroup2 id)
  ``oom_cgroup_id``     the memory cgroup that ran out of memory (0: the whole system)
  ``constraint``        the kernel's constraint: "CONSTRAINT_NONE", "CONSTRAINT_CPUSET",
                        "CONSTRAINT_MEMORY_POLICY", "CONSTRAINT_MEMCG" or "CONSTRAINT_BPF"
                        (an OOM a BPF PSI handler declared)
  ``constraint_text``   CONSTRAINT_BPF: the declaring handler's text, else null
  ``oom_seq``           which OOM the watcher saw (from 1; all victims of one OOM,
                        e.g. a memory.oom.group kill, share it; 0: outside an OOM it saw)
  ``victim_nr``         this victim's number within its OOM, from 1

``"kind": "oom_no_kill"``  an OOM ended without marking a victim (an earlier victim
is still exiting, a notifier freed memory, nothing was killable, ...)::

  ``pid``, ``tgid``, ``comm``  the task that ran into the OOM
  ``oom_cgroup_id``, ``constraint``, ``oom_seq``  as for a kill
  ``handled``           what out_of_memory() returned: true means the kernel
                        counts the OOM as dealt with (the allocation is retried)

``"kind": "overrun"``  the watcher's ring buffer was full and records were lost::

  ``lost``              records lost since the previous overrun event
  ``total_lost``        records lost since the watcher started
  (``monotonic_ns``/``time`` say when the loss was noticed, not when it happened)
"""

from __future__ import annotations

import datetime
import errno
import time
from typing import Any
from dataclasses import dataclass
from pathlib import Path

from ..bpf.btf import Btf
from ..bpf.errors import InvalidValueError
from .records import RecordLayout, RecordText, shipped_layout

__all__ = ["KillEvent", "OomNoKillEvent", "OverrunEvent", "KILL_SCHEMA", "CONSTRAINTS",
           "WATCHER_OBJECT", "decode_kill_record", "kill_layout"]

KILL_SCHEMA = 1
WATCHER_OBJECT = Path(__file__).resolve().parent / "kill_watch.bpf.o"

# enum kill_constraint of kill_record.h
CONSTRAINTS = {0: "CONSTRAINT_NONE", 1: "CONSTRAINT_CPUSET", 2: "CONSTRAINT_MEMORY_POLICY",
               3: "CONSTRAINT_MEMCG", 4: "CONSTRAINT_BPF", 15: "unknown"}
_KIND_KILL, _KIND_OOM_NO_KILL = 1, 2

_STRUCT = "kill_record"
_FIELDS = ("kind", "constraint", "time_ns", "oom_seq", "oom_cgroup_id", "victim_cgroup_id", "pid",
           "tgid", "uid", "oom_score_adj", "by_bpf", "result", "victim_nr", "comm", "policy",
           "constraint_text")
_HOW: RecordText = {"what": "kill record", "schema": KILL_SCHEMA,
                    "advice": "the kill watcher object does not match this bpfoom: reinstall it"}


def kill_layout(btf: Btf | None, where: str) -> RecordLayout:
    """The layout of struct kill_record in the watcher object's BTF."""
    return RecordLayout.from_btf(btf, _STRUCT, _FIELDS, where=where, **_HOW)


def wall_time(monotonic_ns: int) -> datetime.datetime:
    """A CLOCK_MONOTONIC time as wall-clock time (converted with the clocks' offset now)."""
    offset_ns = time.time_ns() - time.monotonic_ns()
    return datetime.datetime.fromtimestamp((monotonic_ns + offset_ns) / 1e9,
                                           tz=datetime.timezone.utc)


class _Event:
    kind = ""
    monotonic_ns: int

    @property
    def wall_time(self) -> datetime.datetime:
        """When it happened, as wall-clock time."""
        return wall_time(self.monotonic_ns)

    def _fields(self) -> dict[str, Any]:
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        """The documented, versioned JSON form (see the module doc)."""
        return {"schema": KILL_SCHEMA, "kind": self.kind, **self._fields(),
                "monotonic_ns": self.monotonic_ns, "time": self.wall_time.isoformat()}


@dataclass(frozen=True)
class KillEvent(_Event):
    """One OOM victim the kernel marked, attributed to the policy that chose it."""

    policy: str
    by_bpf: bool
    pid: int
    tgid: int
    comm: str
    uid: int
    oom_score_adj: int
    victim_cgroup_id: int
    oom_cgroup_id: int
    constraint: str
    constraint_text: str | None
    oom_seq: int
    victim_nr: int
    monotonic_ns: int
    kind = "kill"

    def _fields(self) -> dict[str, Any]:
        return {"policy": self.policy, "by_bpf": self.by_bpf, "pid": self.pid,
                "tgid": self.tgid, "comm": self.comm, "uid": self.uid,
                "oom_score_adj": self.oom_score_adj, "victim_cgroup_id": self.victim_cgroup_id,
                "oom_cgroup_id": self.oom_cgroup_id, "constraint": self.constraint,
                "constraint_text": self.constraint_text, "oom_seq": self.oom_seq,
                "victim_nr": self.victim_nr}

    def __str__(self) -> str:
        return (f"{self.policy}: killed pid {self.pid} ({self.comm}) in cgroup "
                f"{self.victim_cgroup_id}; OOM #{self.oom_seq} in cgroup {self.oom_cgroup_id} "
                f"({self.constraint_text or self.constraint})")


@dataclass(frozen=True)
class OomNoKillEvent(_Event):
    """An OOM that ended without a victim being marked."""

    pid: int
    tgid: int
    comm: str
    oom_cgroup_id: int
    constraint: str
    handled: bool
    oom_seq: int
    monotonic_ns: int
    kind = "oom_no_kill"

    def _fields(self) -> dict[str, Any]:
        return {"pid": self.pid, "tgid": self.tgid, "comm": self.comm,
                "oom_cgroup_id": self.oom_cgroup_id, "constraint": self.constraint,
                "handled": self.handled, "oom_seq": self.oom_seq}

    def __str__(self) -> str:
        outcome = "counted as handled" if self.handled else "not handled"
        return (f"OOM #{self.oom_seq} in cgroup {self.oom_cgroup_id} (hit by pid {self.pid}, "
                f"{self.comm}) ended without a kill, {outcome}")


@dataclass(frozen=True)
class OverrunEvent(_Event):
    """Records lost because a ring buffer was full: the kill watcher's or a policy's."""

    lost: int
    total_lost: int
    monotonic_ns: int
    source: str = "kill_watch"  # or the name of the policy whose decisions were lost
    kind = "overrun"

    def _fields(self) -> dict[str, Any]:
        return {"source": self.source, "lost": self.lost, "total_lost": self.total_lost}

    def __str__(self) -> str:
        if self.source == "kill_watch":
            return (f"kill watcher overrun: {self.lost} records lost ({self.total_lost} in all); "
                    "read faster or give KillWatcher a larger ring_size")
        return (f"{self.source} overrun: {self.lost} decisions lost ({self.total_lost} in all); "
                "read faster or load the policy with a larger ring_size")


def decode_kill_record(data: bytes, layout: RecordLayout | None = None
                       ) -> KillEvent | OomNoKillEvent:
    """Decode one ring buffer record; InvalidValueError for an unknown schema, size or kind.

    ``layout`` is the watcher's (:func:`kill_layout` of its loaded object);
    without one, the shipped watcher object's.
    """
    layout = layout or shipped_layout(WATCHER_OBJECT, _STRUCT, _FIELDS, _HOW["what"], KILL_SCHEMA,
                                      _HOW["advice"])
    record = layout.decode(data)
    kind, constraint = record["kind"], record["constraint"]
    constraint_name = CONSTRAINTS.get(constraint, f"unknown({constraint})")
    common = dict(pid=record["pid"], tgid=record["tgid"], comm=record["comm"],
                  oom_cgroup_id=record["oom_cgroup_id"], constraint=constraint_name,
                  oom_seq=record["oom_seq"], monotonic_ns=record["time_ns"])
    if kind == _KIND_KILL:
        by_bpf = bool(record["by_bpf"])
        return KillEvent(
            policy=record["policy"] if by_bpf else "default", by_bpf=by_bpf, uid=record["uid"],
            oom_score_adj=record["oom_score_adj"], victim_cgroup_id=record["victim_cgroup_id"],
            constraint_text=record["constraint_text"] or None, victim_nr=record["victim_nr"],
            **common)
    if kind == _KIND_OOM_NO_KILL:
        return OomNoKillEvent(handled=bool(record["result"]), **common)
    raise InvalidValueError(errno.EINVAL, f"kill record of unknown kind {kind}; {_HOW['advice']}")
