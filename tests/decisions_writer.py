"""The pinned decisions writer the pinned-maps and pinned-events tests read (host).

tests/bpf/oom/decisions_from_tcp_cc.bpf.o is a tcp_congestion_ops that sends one
policy_event.h decision per connection it starts, so it runs on any kernel with
struct_ops.  `bpfoom attach --pin P` leaves its link at P, its `events` ring
buffer at P_events and its drop counter at P_events_dropped.
"""
from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import facts

WRITER = facts.REPO / "tests" / "bpf" / "oom" / "decisions_from_tcp_cc.bpf.o"


def bpfoom_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-P", "-m", "bpfoom", *args], capture_output=True,
                          text=True, timeout=120)


def connect_with(congestion_control: str, count: int) -> None:
    """Open and close ``count`` loopback connections whose client uses ``congestion_control``."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        for _ in range(count):
            with socket.socket() as client:
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION,
                                  congestion_control.encode())
                client.connect(server.getsockname())
                server.accept()[0].close()


@dataclass
class Writer:
    name: str  # its congestion control: connections using it send decisions
    link: Path
    events: Path
    dropped: Path


@contextmanager
def attached_writer(pin_dir: Path) -> Iterator[Writer]:
    """The writer attached by `bpfoom attach` with a one-page ring, pinned as
    ``pin_dir``/writer; detached by `bpfoom detach --all` afterwards."""
    name, link = facts.unique_cc_name(), pin_dir / "writer"
    done = bpfoom_cli("attach", str(WRITER), "--name", name, "--ring-size", "4096",
                      "--pin", str(link))
    assert done.returncode == 0, done.stderr
    try:
        yield Writer(name, link, pin_dir / "writer_events", pin_dir / "writer_events_dropped")
    finally:
        gone = bpfoom_cli("detach", "--all", "--pin", str(link))
        assert gone.returncode == 0, gone.stderr
