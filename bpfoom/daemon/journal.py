"""OOM events to the systemd journal, through its native protocol (written by hand, no dependency).

One datagram per entry to ``/run/systemd/journal/socket``: ``KEY=value``
lines, or for a value holding a newline ``KEY\\n``, its length as a 64-bit
little-endian integer, the bytes and ``\\n``.  An entry too large for a
datagram goes into a sealed memfd whose descriptor is passed instead
(SCM_RIGHTS), as journald expects.  Sending never blocks: a journal that
cannot take the entry now makes :meth:`Journal.send` return False.

Every kill has ``MESSAGE_ID`` :data:`KILL_MESSAGE_ID`, so
``journalctl MESSAGE_ID=c4a938d5b82d4e2f9eed25edae10de4d`` lists every OOM
kill; the structured fields are the event's JSON fields, upper-cased, with a
``BPFOOM_`` prefix (``BPFOOM_POLICY``, ``BPFOOM_PID``, ``BPFOOM_COMM``, ...).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import socket
import struct
from typing import Any

from ..bpf.lifecycle import Closeable

__all__ = ["Journal", "JOURNAL_SOCKET", "KILL_MESSAGE_ID", "OOM_NO_KILL_MESSAGE_ID",
           "OVERRUN_MESSAGE_ID", "DECISION_MESSAGE_ID", "encode"]

JOURNAL_SOCKET = "/run/systemd/journal/socket"
KILL_MESSAGE_ID = "c4a938d5b82d4e2f9eed25edae10de4d"
OOM_NO_KILL_MESSAGE_ID = "426f5eb602884a17b7e17b2b51dcaecb"
OVERRUN_MESSAGE_ID = "fce4ac128cac4342ac4dbf95ba181b85"
DECISION_MESSAGE_ID = "c2799c0a4adb4a18af88ce2c645e718d"
# syslog priorities (sd-journal's PRIORITY=)
WARNING, NOTICE, INFO = 4, 5, 6

_FIELD = re.compile(r"^[A-Z0-9][A-Z0-9_]{0,63}$")
_SEALS = (getattr(fcntl, "F_SEAL_SEAL", 1) | getattr(fcntl, "F_SEAL_SHRINK", 2)
          | getattr(fcntl, "F_SEAL_GROW", 4) | getattr(fcntl, "F_SEAL_WRITE", 8))


def encode(fields: dict[str, Any]) -> bytes:
    """One journal entry in the native protocol; ValueError for a field name journald would drop."""
    parts = []
    for name, value in fields.items():
        if not _FIELD.match(name):
            raise ValueError(f"{name!r} is not a journal field name (A-Z, 0-9, _; not starting "
                             "with _; at most 64 characters)")
        data = value if isinstance(value, bytes) else str(value).encode()
        key = name.encode()
        if b"\n" in data:
            parts.append(key + b"\n" + struct.pack("<Q", len(data)) + data + b"\n")
        else:
            parts.append(key + b"=" + data + b"\n")
    return b"".join(parts)


def _field_name(key: str) -> str:
    return "BPFOOM_" + re.sub(r"[^A-Z0-9_]", "_", key.upper())


class Journal(Closeable):
    """A connectionless writer of journal entries; ``address`` is for tests and containers."""

    def __init__(self, address: str = JOURNAL_SOCKET, identifier: str = "bpfoom") -> None:
        super().__init__()
        self.address = address
        self.identifier = identifier
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @staticmethod
    def available(address: str = JOURNAL_SOCKET) -> bool:
        """Whether a journal socket is there (systemd-journald runs)."""
        return os.path.exists(address)

    def send(self, message: str, priority: int = INFO, **fields: Any) -> bool:
        """Send one entry (MESSAGE, PRIORITY, SYSLOG_IDENTIFIER and ``fields``).

        False when the journal cannot take it now (gone, or its queue full);
        other OSErrors (a bad address) propagate.
        """
        data = encode({"MESSAGE": message, "PRIORITY": priority,
                       "SYSLOG_IDENTIFIER": self.identifier, **fields})
        self._check_open()
        try:
            try:
                self._socket.sendto(data, socket.MSG_DONTWAIT, self.address)
            except OSError as exc:
                if exc.errno not in (errno.EMSGSIZE, errno.ENOBUFS):
                    raise
                self._send_memfd(data)
        except (BlockingIOError, ConnectionRefusedError, FileNotFoundError):
            return False
        return True

    def _send_memfd(self, data: bytes) -> None:
        """Too large for a datagram: the entry in a sealed memfd, its fd passed alone."""
        fd = os.memfd_create("bpfoom-journal", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            _write_all(fd, data)
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
            self._socket.sendmsg([], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", fd))],
                                 socket.MSG_DONTWAIT, self.address)
        finally:
            os.close(fd)

    def event(self, event: Any, entry_id: str | None = None, fields: dict[str, Any] | None = None,
              message: str | None = None) -> bool:
        """Journal one OOM event (kill, OOM without kill, overrun, or a policy's decision).

        ``fields``: its JSON form when the caller has it (the daemon adds the victim's cgroup
        path, unit and pod); ``message``: the MESSAGE= line (default: ``str(event)``).
        """
        fields = dict(event.to_json() if fields is None else fields)
        kind = fields.pop("kind", None)
        message_id, priority = {
            "kill": (KILL_MESSAGE_ID, WARNING), "oom_no_kill": (OOM_NO_KILL_MESSAGE_ID, WARNING),
            "overrun": (OVERRUN_MESSAGE_ID, WARNING)}.get(kind, (DECISION_MESSAGE_ID, INFO))
        structured = {_field_name(k): _value(v) for k, v in fields.items() if v is not None}
        if entry_id is not None:
            structured["BPFOOM_ENTRY"] = entry_id
        structured["BPFOOM_KIND"] = kind or "decision"
        if kind is None and fields.get("action") == "killed":
            priority = WARNING
        return self.send(message or str(event), priority, MESSAGE_ID=message_id, **structured)

    @property
    def closed(self) -> bool:
        return self._socket.fileno() == -1

    def _closed_message(self) -> str:
        return "the journal writer is closed; make a new Journal"

    def _release(self) -> None:
        self._socket.close()


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
