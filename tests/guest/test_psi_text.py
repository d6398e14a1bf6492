"""The pressure files' text trigger interface, after trigger creation moved to a params
struct (patch 0006): the same text is accepted or refused, and events still reach pollers."""
from __future__ import annotations

import errno
import os
import select
from pathlib import Path

import pytest

EVENT_TIMEOUT_S = 30.0


def open_trigger(path: Path, text: str) -> int:
    """A pressure file opened for a trigger, with `text` written to it."""
    fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
    try:
        os.write(fd, text.encode())
    except OSError:
        os.close(fd)
        raise
    return fd


def fired(fd: int, timeout_s: float) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLPRI)
    return any(mask & select.POLLPRI for _, mask in poller.poll(timeout_s * 1000))


def test_cgroup_and_system_triggers_fire_under_pressure(cgroups, hogs):
    hungry = cgroups("text-hungry")
    # No swap and a low memory.high: the hog is throttled and reclaimed from, a memory stall.
    hungry.write("memory.high", "16M")
    cgroup_fd = open_trigger(hungry.path / "memory.pressure", "some 50000 1000000")
    system_fd = open_trigger(Path("/proc/pressure/memory"), "some 50000 1000000")
    try:
        hogs(hungry, 64)
        assert fired(cgroup_fd, EVENT_TIMEOUT_S), "memory.pressure trigger never fired"
        assert fired(system_fd, EVENT_TIMEOUT_S), "/proc/pressure/memory trigger never fired"
    finally:
        os.close(cgroup_fd)
        os.close(system_fd)


def test_idle_cgroup_trigger_stays_quiet(cgroups):
    idle = cgroups("text-idle")
    fd = open_trigger(idle.path / "memory.pressure", "some 10000 500000")
    try:
        assert not fired(fd, 2.0)
    finally:
        os.close(fd)


@pytest.mark.parametrize("text", [
    "bogus 1 2",              # neither some nor full
    "some 0 1000000",         # zero threshold
    "some 2000000 1000000",   # threshold beyond the window
    "some 100000 0",          # zero window
    "some 100000 20000000",   # window beyond 10 s
])
def test_bad_trigger_text_is_einval(cgroups, text):
    cg = cgroups("text-bad")
    with pytest.raises(OSError) as caught:
        os.close(open_trigger(cg.path / "memory.pressure", text))
    assert caught.value.errno == errno.EINVAL


def test_one_trigger_per_open_file(cgroups):
    cg = cgroups("text-busy")
    fd = open_trigger(cg.path / "memory.pressure", "some 100000 1000000")
    try:
        with pytest.raises(OSError) as caught:
            os.write(fd, b"some 200000 1000000")
        assert caught.value.errno == errno.EBUSY
    finally:
        os.close(fd)
