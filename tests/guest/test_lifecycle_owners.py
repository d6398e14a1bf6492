"""The owners only our kernel can make (a policy, a PSI handler, the kill watcher, the memcg
stats reader) have the one lifecycle of bpfoom.Closeable, as tests/host/test_lifecycle.py
checks for the others: ``with`` gives the object itself, close() twice is fine, the fds it
held are given back, and any use afterwards raises ClosedError (EBADF) saying what to do."""
from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import Any

import pytest

import bpfoom

CASES: dict[str, tuple[Callable[[], Any], Callable[[Any], object]]] = {
    "OomPolicy": (lambda: bpfoom.OomPolicy.load("largest_leaf"), lambda p: p.poll(0)),
    "PsiHandler": (lambda: bpfoom.PsiHandler.load("psi_guard"), lambda h: h.poll(0)),
    "KillWatcher": (bpfoom.KillWatcher, lambda w: w.poll(0)),
    "MemcgStatsReader": (lambda: bpfoom.MemcgStatsReader("/sys/fs/cgroup"), lambda r: r.read()),
}


def open_fds() -> set[int]:
    return {int(name) for name in os.listdir("/proc/self/fd")}


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_owner_has_the_same_lifecycle(name):
    make, use = CASES[name]
    made = make()
    try:
        assert isinstance(made, bpfoom.Closeable) and type(made).__name__ == name
        with made as entered:
            assert entered is made and not made.closed
            use(made)
            held = open_fds()
        assert made.closed and open_fds() < held
        made.close()  # twice: nothing happens
        with pytest.raises(bpfoom.ClosedError) as used:
            use(made)
        assert used.value.errno == errno.EBADF and "; " in str(used.value)
        with pytest.raises(bpfoom.ClosedError):
            with made:
                pass
    finally:
        made.close()
