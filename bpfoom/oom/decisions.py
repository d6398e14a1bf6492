"""The last decisions of OOM policies, read without taking them from anyone.

A policy built on bpfoom/oom/include/policy_event.h sends each decision to
its ``events`` ring buffer, which has one consumer (``bpfoom events``, the
daemon, :meth:`OomPolicy.events`), and also keeps its last 16 decisions in
the array map ``decisions``.  Reading that map consumes nothing, so
``bpfoom explain`` can show decisions that an event reader has already
taken.

Attached policies are found from the kernel alone, whoever attached them:
:func:`~bpfoom.attached` gives each ``bpf_oom_ops`` link's struct_ops map,
whose value holds the ids of its programs (the kernel writes them there),
and the programs name the maps they use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .attachments import Attachment, attached
from ..bpf.btf import Btf, vmlinux_btf
from ..bpf.kernel_objects import lookup_bytes, open_map_by_id, open_program_by_id, program_map_ids
from ..bpf.map import map_info
from .events import DecisionEvent, pinned_decision_layout
from .records import RecordLayout

__all__ = ["DECISIONS_MAP", "PolicyDecisions", "read_decisions", "recent_decisions"]

DECISIONS_MAP = "decisions"


def read_decisions(map_fd: int, layout: RecordLayout | None = None) -> list[DecisionEvent]:
    """The decisions kept in a ``decisions`` map (by fd), oldest first.

    ``layout`` is the writer's; by default it comes from the BTF of the
    object that created the map.  An unused slot (schema 0) is skipped; a
    record of a schema this bpfoom does not read raises InvalidValueError,
    as :meth:`DecisionEvent.from_bytes` does.
    """
    info = map_info(map_fd)
    layout = layout or pinned_decision_layout(map_fd)
    found: list[DecisionEvent] = []
    for slot in range(info.max_entries):
        record = lookup_bytes(map_fd, slot.to_bytes(4, "little"), info.value_size,
                              f"slot {slot} of the decisions map")
        if record is not None and record[:2] != b"\0\0":
            found.append(DecisionEvent.from_bytes(record, layout))
    return sorted(found, key=lambda event: event.monotonic_ns)


@dataclass(frozen=True)
class PolicyDecisions:
    """An attached policy and its last decisions (oldest first); ``decisions`` None: it keeps none."""

    attachment: Attachment
    decisions: list[DecisionEvent] | None


def _program_ids(struct_ops_map_id: int, kernel: Btf) -> list[int]:
    """Ids of the programs in a struct_ops map's value (its function pointer slots)."""
    fd = open_map_by_id(struct_ops_map_id)
    if fd is None:
        return []  # detached meanwhile
    try:
        info = map_info(fd)
        raw = lookup_bytes(fd, bytes(4), info.value_size, f"struct_ops map {struct_ops_map_id}")
        if raw is None:
            return []
        wrapper = kernel.type(info.btf_vmlinux_value_type_id)
        data = next((m for m in wrapper.members if m.name == "data"), None)
        if data is None:
            return []
        ids: list[int] = []
        for member in kernel.resolve(data.type_id).members:
            if kernel.is_func_pointer(member.type_id):
                start = (data.offset + member.offset) // 8
                prog_id = int.from_bytes(raw[start:start + 8], "little")
                if prog_id:
                    ids.append(prog_id)
        return ids
    finally:
        os.close(fd)


def _map_ids_of_program(prog_id: int) -> list[int]:
    fd = open_program_by_id(prog_id)
    if fd is None:
        return []
    try:
        return program_map_ids(fd)
    finally:
        os.close(fd)


def _decisions_of(attachment: Attachment, kernel: Btf) -> list[DecisionEvent] | None:
    for prog_id in _program_ids(attachment.map_id, kernel):
        for map_id in _map_ids_of_program(prog_id):
            fd = open_map_by_id(map_id)
            if fd is None:
                continue
            try:
                if map_info(fd).name == DECISIONS_MAP:
                    return read_decisions(fd)
            finally:
                os.close(fd)
    return None


def recent_decisions() -> list[PolicyDecisions]:
    """Every attached bpf_oom_ops policy with its last decisions (needs CAP_SYS_ADMIN)."""
    policies = [a for a in attached() if a.kind == "oom"]
    if not policies:
        return []
    with vmlinux_btf() as kernel:
        return [PolicyDecisions(a, _decisions_of(a, kernel)) for a in policies]
