"""Journal entries over the native protocol, received by a real AF_UNIX datagram socket.

The test binds the socket journald would own and parses what arrives by the
protocol's rules (KEY=value lines; KEY, 64-bit length, bytes for values with
newlines; a sealed memfd passed by SCM_RIGHTS for entries too large for a
datagram).
"""
from __future__ import annotations

import fcntl
import os
import platform
import socket
import struct
import threading
import time

import pytest

import bpfoom
import facts
from bpfoom import daemon

SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE


def parse_entry(data: bytes) -> dict[str, bytes]:
    fields: dict[str, bytes] = {}
    while data:
        line, newline, rest = data.partition(b"\n")
        assert newline, "an entry ends with a newline"
        if b"=" in line:
            key, _, value = line.partition(b"=")
            data = rest
        else:
            key = line
            (size,) = struct.unpack_from("<Q", rest)
            value, data = rest[8:8 + size], rest[8 + size:]
            assert data[:1] == b"\n", "a binary value is followed by a newline"
            data = data[1:]
        fields[key.decode()] = value
    return fields


@pytest.fixture
def journal_socket(tmp_path):
    """A bound datagram socket standing where journald's is."""
    path = str(tmp_path / "socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        server.settimeout(5)
        yield server, path


def receive(server: socket.socket, memfd: bool = False) -> dict[str, bytes]:
    """The next entry; ``memfd``: it must come as a passed memfd, else as a plain datagram."""
    data, ancillary, _, _ = server.recvmsg(1 << 16, socket.CMSG_SPACE(struct.calcsize("i")))
    assert bool(ancillary) == memfd
    if not ancillary:
        return parse_entry(data)
    assert data == b"", "a memfd entry is sent as an empty datagram with the fd"
    level, kind, payload = ancillary[0]
    assert (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS)
    (fd,) = struct.unpack("i", payload[:4])
    try:
        assert fcntl.fcntl(fd, fcntl.F_GET_SEALS) & SEALS == SEALS, "journald needs a sealed memfd"
        size = os.fstat(fd).st_size
        return parse_entry(os.pread(fd, size, 0))
    finally:
        os.close(fd)


def a_kill() -> bpfoom.KillEvent:
    return bpfoom.KillEvent(policy="largest_leaf", by_bpf=True, pid=4242, tgid=4240, comm="hog",
                            uid=1000, oom_score_adj=0, victim_cgroup_id=7, oom_cgroup_id=6,
                            constraint="CONSTRAINT_MEMCG", constraint_text=None, oom_seq=3,
                            victim_nr=1, monotonic_ns=time.monotonic_ns())


def test_a_kill_arrives_with_its_message_id_priority_and_fields(journal_socket):
    server, path = journal_socket
    with daemon.Journal(path) as journal:
        assert journal.event(a_kill(), entry_id="batch")
    entry = receive(server)
    assert entry["MESSAGE_ID"] == b"c4a938d5b82d4e2f9eed25edae10de4d"
    assert entry["PRIORITY"] == b"4"
    assert entry["SYSLOG_IDENTIFIER"] == b"bpfoom"
    assert b"killed pid 4242 (hog)" in entry["MESSAGE"]
    assert (entry["BPFOOM_KIND"], entry["BPFOOM_POLICY"], entry["BPFOOM_PID"], entry["BPFOOM_COMM"],
            entry["BPFOOM_BY_BPF"], entry["BPFOOM_ENTRY"]) == (
        b"kill", b"largest_leaf", b"4242", b"hog", b"1", b"batch")
    assert entry["BPFOOM_VICTIM_CGROUP_ID"] == b"7" and entry["BPFOOM_CONSTRAINT"] == b"CONSTRAINT_MEMCG"


def test_values_with_newlines_use_the_length_prefixed_form(journal_socket):
    server, path = journal_socket
    with daemon.Journal(path) as journal:
        assert journal.send("two\nlines", BPFOOM_NOTE="a=b\nc")
    entry = receive(server)
    assert entry["MESSAGE"] == b"two\nlines" and entry["BPFOOM_NOTE"] == b"a=b\nc"


def test_an_entry_too_large_for_a_datagram_goes_through_a_sealed_memfd(journal_socket):
    server, path = journal_socket
    big = "x" * (1 << 20)  # over any unix datagram limit (wmem_max)
    with daemon.Journal(path) as journal:
        assert journal.send("large", BPFOOM_BLOB=big)
    entry = receive(server, memfd=True)
    assert entry["MESSAGE"] == b"large" and entry["BPFOOM_BLOB"] == big.encode()


def test_field_names_journald_would_drop_are_refused():
    for bad in ("_PID", "lower", "X" * 65, "A-B"):
        with pytest.raises(ValueError, match="journal field name"):
            daemon.journal.encode({bad: "1"})


def test_no_journal_is_reported_not_raised(tmp_path):
    with daemon.Journal(str(tmp_path / "absent")) as journal:
        assert journal.send("nobody listens") is False


def test_a_full_journal_never_blocks_the_sender(journal_socket):
    server, path = journal_socket
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
    results: list[bool] = []
    with daemon.Journal(path) as journal:
        sender = threading.Thread(
            target=lambda: results.extend(journal.send("flood", BPFOOM_N=str(n))
                                          for n in range(2000)), daemon=True)
        sender.start()
        # nobody reads the socket: a sender that waits for room sleeps in sendto/sendmsg for good
        numbers = facts.SEND_SYSCALLS[platform.machine()]
        while sender.is_alive():
            assert not facts.sleeping_in(os.getpid(), sender.native_id or 0, numbers), \
                "the sender waits for room in the full journal socket"
            sender.join(0.01)
    assert True in results and False in results  # some queued, the rest refused, none waited
