"""Kernel and process facts read straight from /proc and /sys.

Tests compare what bpfoom reports with what the kernel shows through its own
interfaces, so these readers deliberately use nothing from bpfoom.
"""
from __future__ import annotations

import ctypes
import fcntl
import functools
import os
import platform
import threading
import struct
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TCP_CC_OBJECT = REPO / "examples" / "tcp_cc" / "tcp_cc.bpf.o"
GLOBALS_OBJECT = REPO / "tests" / "bpf" / "globals.bpf.o"
REJECTED_OBJECT = REPO / "tests" / "bpf" / "rejected.bpf.o"
RINGBUF_OBJECT = REPO / "tests" / "bpf" / "ringbuf.bpf.o"
RING_RECORDS_OBJECT = REPO / "tests" / "bpf" / "ring_records.bpf.o"
COUNT_CALLS_OBJECT = REPO / "tests" / "bpf" / "trace" / "count_calls.bpf.o"
ATTACH_KINDS_OBJECT = REPO / "tests" / "bpf" / "trace" / "attach_kinds.bpf.o"
MAP_KINDS_OBJECT = REPO / "tests" / "bpf" / "maps" / "map_kinds.bpf.o"
TRACEFS = Path("/sys/kernel/tracing")

AVAILABLE_CC = Path("/proc/sys/net/ipv4/tcp_available_congestion_control")
BPFFS = Path("/sys/fs/bpf")
CGROUP2_ROOT = Path("/sys/fs/cgroup/unified")
CGROUP_V1_MEMORY = Path("/sys/fs/cgroup/memory")
VMLINUX_BTF = Path("/sys/kernel/btf/vmlinux")

# The congestion controls the tcp_cc example registers under its default names.
DEMO_CC_NAMES = ("bpfoom_demo", "bpfoom_demo2")
# Names handed out by unique_cc_name(); none may outlive the test that got it.
ISSUED_CC_NAMES: list[str] = []

# setsockopt(SOL_SOCKET, SO_ATTACH_BPF, prog_fd): Python's socket module lacks the name.
SO_ATTACH_BPF = 50
CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21
CAP_BPF = 39


def available_congestion_control() -> list[str]:
    """The congestion controls the kernel has registered right now (none without IPv4)."""
    try:
        return AVAILABLE_CC.read_text().split()
    except FileNotFoundError:
        return []


def times_registered(name: str) -> int:
    """How many congestion controls named ``name`` the kernel has registered (0 or 1)."""
    return available_congestion_control().count(name)


def unique_cc_name() -> str:
    """A congestion control name no other test run uses (15 chars, the kernel's limit).

    Congestion control names are global to the machine: two test runs (or a
    test and the example) registering the same name would see each other's.
    """
    name = f"bpfoom_{uuid.uuid4().hex[:8]}"
    ISSUED_CC_NAMES.append(name)
    return name


def open_fds() -> dict[int, str]:
    """This process's open fds and what each points to."""
    fds = {}
    for entry in os.listdir("/proc/self/fd"):
        try:
            fds[int(entry)] = os.readlink(f"/proc/self/fd/{entry}")
        except FileNotFoundError:  # the fd listdir itself used, already closed
            continue
    return fds


def rss_bytes() -> int:
    """Resident set size of this process."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/self/status has no VmRSS line")


def effective_capabilities() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def has_capability(bit: int) -> bool:
    return bool(effective_capabilities() >> bit & 1)


def vmlinux_btf_has_name(name: str) -> bool:
    """True if the running kernel's BTF string table holds `name` exactly."""
    try:
        data = VMLINUX_BTF.read_bytes()
    except OSError:
        return False
    return b"\0" + name.encode() + b"\0" in data


def is_mountpoint_of(path: Path, fstype: str) -> bool:
    """True if `path` is mounted with filesystem type `fstype`."""
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[1] == str(path) and fields[2] == fstype:
            return True
    return False


# --- A minimal reader of the kernel's BTF, independent of bpfoom's probes ---

_BTF_HEADER = struct.Struct("<HBBIIIII")
_BTF_TYPE = struct.Struct("<III")
_KIND_STRUCT, _KIND_UNION, _KIND_FUNC = 4, 5, 12
# Bytes that follow struct btf_type, per kind: (fixed, per vlen entry).
_KIND_TRAILER = {1: (4, 0), 3: (12, 0), 4: (0, 12), 5: (0, 12), 6: (0, 8), 13: (0, 8),
                 14: (4, 0), 15: (0, 12), 17: (4, 0), 19: (0, 12)}


@functools.lru_cache(maxsize=1)
def vmlinux_btf_index() -> tuple[dict[str, set[str]], frozenset[str]]:
    """(struct/union name -> member names, FUNC names) from /sys/kernel/btf/vmlinux."""
    data = VMLINUX_BTF.read_bytes()
    magic, _version, _flags, hdr_len, type_off, type_len, str_off, _str_len = _BTF_HEADER.unpack_from(data)
    if magic != 0xEB9F:
        raise RuntimeError(f"{VMLINUX_BTF} is not BTF (magic {magic:#x})")
    types_start = hdr_len + type_off
    strings_start = hdr_len + str_off

    def name_at(offset: int) -> str:
        end = data.index(b"\0", strings_start + offset)
        return data[strings_start + offset:end].decode()

    structs: dict[str, set[str]] = {}
    funcs: set[str] = set()
    position = types_start
    while position < types_start + type_len:
        name_off, info, _size = _BTF_TYPE.unpack_from(data, position)
        position += _BTF_TYPE.size
        kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
        fixed, per_entry = _KIND_TRAILER.get(kind, (0, 0))
        if kind in (_KIND_STRUCT, _KIND_UNION) and name_off:
            members = structs.setdefault(name_at(name_off), set())
            for index in range(vlen):
                (member_name,) = struct.unpack_from("<I", data, position + index * 12)
                if member_name:
                    members.add(name_at(member_name))
        elif kind == _KIND_FUNC:
            funcs.add(name_at(name_off))
        position += fixed + per_entry * vlen
    return structs, frozenset(funcs)


def fdinfo(fd: int) -> dict[str, str]:
    """The kernel's own description of one of our fds (/proc/self/fdinfo)."""
    fields = {}
    for line in Path(f"/proc/self/fdinfo/{fd}").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


# poll(2) and ppoll(2), where a thread blocked in RingBuffer.poll() sleeps.
POLL_SYSCALLS = {"x86_64": {7, 271}, "aarch64": {73}}


def blocked_in_poll(thread: threading.Thread, within: float = 30.0) -> bool:
    """Whether ``thread`` reaches poll(2)/ppoll(2) and sleeps there within ``within`` seconds.

    Read from /proc/self/task/<tid>/syscall, so the caller knows the wait began; on an
    architecture not listed in POLL_SYSCALLS only that the thread is still running.
    """
    numbers = POLL_SYSCALLS.get(platform.machine())
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not thread.is_alive():
            return False
        if numbers is None:
            return True
        try:
            current = Path(f"/proc/self/task/{thread.native_id}/syscall").read_text().split()
        except OSError:
            return thread.is_alive()
        if current and current[0].isdigit() and int(current[0]) in numbers:
            return True
        time.sleep(0.01)
    return False


# Where a process sleeps waiting on its fds: poll, select, pselect6, ppoll, epoll_wait,
# epoll_pwait, epoll_pwait2 (x86_64); ppoll, pselect6, epoll_pwait, epoll_pwait2 (aarch64).
WAIT_SYSCALLS = {"x86_64": {7, 23, 232, 270, 271, 281, 441}, "aarch64": {22, 72, 73, 441}}
# sendto(2) and sendmsg(2), where a datagram sender sleeps when the receiver's queue is full.
SEND_SYSCALLS = {"x86_64": {44, 46}, "aarch64": {206, 211}}
_SYS_PIDFD_GETFD = 438  # the same number on every architecture
_FIONREAD = 0x541B


def sleeping_in(pid: int, tid: int, numbers: set[int]) -> bool:
    """Whether task ``tid`` of ``pid`` is asleep (state S) inside one of the syscalls ``numbers``."""
    base = Path(f"/proc/{pid}/task/{tid}")
    try:
        state = (base / "stat").read_text().rpartition(")")[2].split()[0]
        current = (base / "syscall").read_text().split()
    except OSError:
        return False
    return state == "S" and bool(current) and current[0].isdigit() and int(current[0]) in numbers


def _queued_inotify_bytes(pid: int) -> int:
    """Bytes of events waiting in ``pid``'s inotify fds (a copy of each through pidfd_getfd)."""
    libc = ctypes.CDLL(None, use_errno=True)
    queued = 0
    pidfd = os.pidfd_open(pid)
    try:
        for entry in Path(f"/proc/{pid}/fdinfo").iterdir():
            try:
                if "inotify wd:" not in entry.read_text():
                    continue
            except OSError:  # closed meanwhile
                continue
            fd = libc.syscall(_SYS_PIDFD_GETFD, pidfd, int(entry.name), 0)
            if fd < 0:
                raise OSError(ctypes.get_errno(), f"pidfd_getfd of {pid}'s fd {entry.name}")
            try:
                count = ctypes.c_int(0)
                fcntl.ioctl(fd, _FIONREAD, count)
                queued += count.value
            finally:
                os.close(fd)
    finally:
        os.close(pidfd)
    return queued


def idle_with_inotify_read(pid: int, within: float) -> bool:
    """Whether process ``pid`` (its main thread) comes to sleep in its fd wait with no inotify
    event left unread, within ``within`` seconds (a no-hang guard).

    An inotify event is queued before the syscall that caused it returns, so once the caller
    made its change and this is true, the process has read the event and finished handling it.
    """
    numbers = WAIT_SYSCALLS.get(platform.machine())
    assert numbers is not None, f"no wait syscalls known for {platform.machine()}"
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            return False
        if sleeping_in(pid, pid, numbers) and _queued_inotify_bytes(pid) == 0 \
                and sleeping_in(pid, pid, numbers):
            return True
        time.sleep(0.01)
    return False


def require(condition: bool, missing: str) -> None:
    """Skip (or, under BPFOOM_REQUIRE_ALL=1, fail) unless `condition`; `missing` names what is absent."""
    import pytest

    if condition:
        return
    if os.environ.get("BPFOOM_REQUIRE_ALL") == "1":
        pytest.fail(f"{missing} (BPFOOM_REQUIRE_ALL=1 forbids skipping)")
    pytest.skip(missing)
