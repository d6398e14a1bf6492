"""A dup2() racing BPF_LINK_CREATE cannot swap the cgroup after the permission check
(issue 22, defect 5).

The link layer lets a caller name a cgroup with CAP_SYS_ADMIN, or with CAP_BPF
and write access to the cgroup's directory. It used to look the fd number up
twice (the permission check on one file, the cgroup from a second lookup), so
a thread dup2()ing another cgroup's fd onto that number in between had a link
created for a cgroup the caller may not write. Patch 0001 now takes the
cgroup from the file it checked.

Here a caller with CAP_BPF only, owning one cgroup ("mine") and not another
("theirs"), creates links naming fd N while a second thread keeps dup2()ing
"theirs" and "mine" onto N; every link it gets must be for "mine" (link info
cgroup_id). With the series as it is, bpf_oom_ops itself also asks for
CAP_SYS_ADMIN (defect 2), so this caller gets no link at all and the test
guards the link layer for the day a type relies on it alone: it failed on a
kernel built without that check and with the double lookup back (the
README's table says how it was run).
"""
from __future__ import annotations

import ctypes
import errno
import json
import os
import struct
import threading
import time
from collections import Counter
from pathlib import Path

import bpfoom
from kerneltest import CAP_BPF, in_child, open_guard, raw_struct_ops_link

ATTEMPTS = 3000
DEADLINE_S = 90.0  # a bound on the test's length, not a timing assertion
_SYS_BPF = 321  # x86_64
BPF_OBJ_GET_INFO_BY_FD = 15
_libc = ctypes.CDLL(None, use_errno=True)


def link_cgroup_id(link_fd: int) -> int:
    """bpf_link_info.struct_ops.cgroup_id of a link fd (raw: the caller lacks CAP_SYS_ADMIN)."""
    info = ctypes.create_string_buffer(64)
    attr = ctypes.create_string_buffer(16)
    struct.pack_into("=IIQ", attr, 0, link_fd, len(info), ctypes.addressof(info))
    if _libc.syscall(_SYS_BPF, BPF_OBJ_GET_INFO_BY_FD, attr, len(attr)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"link info: {os.strerror(err)}")
    return struct.unpack_from("=Q", info, 24)[0]  # after type, id, prog_id, map_id, padding


def race(map_fd: int, mine: Path, theirs: Path, summary: Path) -> int:
    """In the child: create links naming fd N while N flips between the two cgroups.

    Returns how many links were created for "theirs"; `summary` gets the counts.
    """
    mine_fd = os.open(mine, os.O_RDONLY | os.O_DIRECTORY)
    theirs_fd = os.open(theirs, os.O_RDONLY | os.O_DIRECTORY)
    target = os.dup(mine_fd)
    stop = threading.Event()

    def flip() -> None:
        while not stop.is_set():
            os.dup2(theirs_fd, target)
            os.dup2(mine_fd, target)

    flipper = threading.Thread(target=flip, daemon=True)
    flipper.start()
    outcomes: Counter[str] = Counter()
    ids: Counter[int] = Counter()
    started = time.monotonic()
    try:
        for _ in range(ATTEMPTS):
            if time.monotonic() - started > DEADLINE_S:
                break
            fd = raw_struct_ops_link(map_fd, target)
            if fd < 0:
                outcomes[errno.errorcode.get(-fd, str(-fd))] += 1
                continue
            try:
                ids[link_cgroup_id(fd)] += 1
                outcomes["linked"] += 1
            finally:
                os.close(fd)
    finally:
        stop.set()
        flipper.join()
    theirs_id = os.stat(theirs).st_ino
    summary.write_text(json.dumps({"outcomes": outcomes, "cgroup_ids": ids,
                                   "mine": os.stat(mine).st_ino, "theirs": theirs_id}))
    return ids[theirs_id]


def test_a_dup2_race_never_links_a_cgroup_the_caller_may_not_write(cgroups, tmp_path):
    mine, theirs = cgroups("mine"), cgroups("theirs")
    os.chown(theirs.path, 4242, 4242)  # delegated to someone else; "mine" stays root's
    obj = open_guard()
    try:
        ops = obj.struct_ops["guard_policy"]
        ops.attach().close()  # libbpf sets the map's value at the first attach
        summary = tmp_path / "summary.json"
        wrong = in_child(lambda: race(ops.fd, mine.path, theirs.path, summary),
                         caps={CAP_BPF}, timeout=DEADLINE_S + 60)
        seen = json.loads(summary.read_text())
        print(f"dup2 race outcomes: {seen}")  # in the log: how much the race was exercised
        assert wrong == 0, f"links created for a cgroup the caller may not write: {seen}"
        # Refusals are permission refusals, nothing else (no EBADF from a half-swapped fd).
        assert set(seen["outcomes"]) <= {"linked", "EPERM"}, seen
        assert sum(seen["outcomes"].values()) > 0, seen
        assert not any(info.cgroup_id == theirs.id for info in bpfoom.links("struct_ops"))
    finally:
        obj.close()
