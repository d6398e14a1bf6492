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

from ..bpf._ffi import ffi, lib
from .attachments import Attachment, attached
from ..bpf.btf import Btf
from ..bpf.errors import check, check_ptr
from .events import DecisionEvent

__all__ = ["DECISIONS_MAP", "PolicyDecisions", "read_decisions", "recent_decisions"]

DECISIONS_MAP = "decisions"


def read_decisions(map_fd: int) -> list[DecisionEvent]:
    """The decisions kept in a ``decisions`` map (by fd), oldest first.

    An unused slot (schema 0) is skipped; a record of a schema this bpfoom does
    not read raises InvalidValueError, as :meth:`DecisionEvent.from_bytes` does.
    """
    info = _map_info(map_fd)
    value = ffi.new("char[]", info.value_size)
    key = ffi.new("__u32 *")
    found = []
    for slot in range(info.max_entries):
        key[0] = slot
        check(lib.bpf_map_lookup_elem(map_fd, key, value), f"read slot {slot} of the decisions map")
        record = bytes(ffi.buffer(value, info.value_size))
        if record[:2] != b"\0\0":
            found.append(DecisionEvent.from_bytes(record))
    return sorted(found, key=lambda event: event.monotonic_ns)


@dataclass(frozen=True)
class PolicyDecisions:
    """An attached policy and its last decisions (oldest first); ``decisions`` None: it keeps none."""

    attachment: Attachment
    decisions: list[DecisionEvent] | None


def _map_info(fd: int):
    info = ffi.new("struct bpf_map_info *")
    size = ffi.new("__u32 *", ffi.sizeof("struct bpf_map_info"))
    check(lib.bpf_map_get_info_by_fd(fd, info, size), "query a BPF map")
    return info


def _program_ids(struct_ops_map_id: int, kernel: Btf) -> list[int]:
    """Ids of the programs in a struct_ops map's value (its function pointer slots)."""
    fd = lib.bpf_map_get_fd_by_id(struct_ops_map_id)
    if fd < 0:
        return []  # detached meanwhile
    try:
        info = _map_info(fd)
        value = ffi.new("char[]", info.value_size)
        if lib.bpf_map_lookup_elem(fd, ffi.new("__u32 *", 0), value) < 0:
            return []
        raw = bytes(ffi.buffer(value, info.value_size))
        wrapper = kernel.type(info.btf_vmlinux_value_type_id)
        data = next((m for m in wrapper.members if m.name == "data"), None)
        if data is None:
            return []
        ids = []
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
    fd = lib.bpf_prog_get_fd_by_id(prog_id)
    if fd < 0:
        return []
    try:
        info = ffi.new("struct bpf_prog_info *")
        size = ffi.new("__u32 *", ffi.sizeof("struct bpf_prog_info"))
        check(lib.bpf_prog_get_info_by_fd(fd, info, size), f"query program {prog_id}")
        count = info.nr_map_ids
        ids = ffi.new("__u32[]", max(count, 1))
        info = ffi.new("struct bpf_prog_info *")
        info.nr_map_ids = count
        info.map_ids = int(ffi.cast("uintptr_t", ids))
        size[0] = ffi.sizeof("struct bpf_prog_info")
        check(lib.bpf_prog_get_info_by_fd(fd, info, size), f"list the maps of program {prog_id}")
        return list(ids[0:min(count, info.nr_map_ids)])
    finally:
        os.close(fd)


def _decisions_of(attachment: Attachment, kernel: Btf) -> list[DecisionEvent] | None:
    for prog_id in _program_ids(attachment.map_id, kernel):
        for map_id in _map_ids_of_program(prog_id):
            fd = lib.bpf_map_get_fd_by_id(map_id)
            if fd < 0:
                continue
            try:
                if ffi.string(_map_info(fd).name).decode() == DECISIONS_MAP:
                    return read_decisions(fd)
            finally:
                os.close(fd)
    return None


def recent_decisions() -> list[PolicyDecisions]:
    """Every attached bpf_oom_ops policy with its last decisions (needs CAP_SYS_ADMIN)."""
    policies = [a for a in attached() if a.kind == "oom"]
    if not policies:
        return []
    vmlinux = check_ptr(lib.btf__load_vmlinux_btf(), "read the kernel's BTF",
                        advice="use a kernel with CONFIG_DEBUG_INFO_BTF")
    try:
        kernel = Btf(vmlinux)
        return [PolicyDecisions(a, _decisions_of(a, kernel)) for a in policies]
    finally:
        lib.btf__free(vmlinux)
