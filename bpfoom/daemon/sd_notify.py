"""systemd's readiness protocol, written by hand: one datagram to $NOTIFY_SOCKET.

With ``Type=notify`` systemd waits for ``READY=1`` before it counts the
service as started, so units ordered after bpfoom start only once every
policy is attached; with ``Type=notify-reload`` (systemd 253) it also sends
SIGHUP for ``systemctl reload`` and waits for ``RELOADING=1`` then
``READY=1``.  Without NOTIFY_SOCKET (not under systemd) this does
nothing.
"""

from __future__ import annotations

import os
import socket
import time

__all__ = ["notify", "reloading"]


def notify(state: str) -> bool:
    """Send ``state`` (e.g. "READY=1"); True if a socket was there to receive it."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.sendto(state.encode(), address)
        except OSError:
            return False  # systemd went away; readiness no longer matters
    return True


def reloading(status: str | None = None) -> bool:
    """Tell systemd a reload started: RELOADING=1 with MONOTONIC_USEC= (CLOCK_MONOTONIC, which
    ``Type=notify-reload`` needs to tell this reload from an earlier one), and a STATUS=."""
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    line = "" if status is None else "\nSTATUS=" + " ".join(status.split())
    return notify(f"RELOADING=1\nMONOTONIC_USEC={usec}{line}")
