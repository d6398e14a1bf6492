"""Memory hogs: processes that join a cgroup, allocate and hold anonymous memory.

Used by the pytest plugin's ``memory_hog`` fixture and by bpfoom's own guest
tests.  A hog joins its cgroup itself, after Python's start-up, so the
interpreter's memory is charged elsewhere and the cgroup sees (almost) only
the MiB asked for.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Iterator, NoReturn

__all__ = ["MemoryHog", "memory_hogs", "DEATH_TIMEOUT_S"]

DEATH_TIMEOUT_S = 60.0

# argv: cgroup.procs path, MiB, oom_score_adj, "1" to wait for a line before allocating.
# Says "joined", then (released) allocates and touches every page, says "allocated",
# and holds the memory until killed or its stdin closes.
_SCRIPT = r"""
import mmap, os, sys
procs, mib, adj, gated = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
with open("/proc/self/oom_score_adj", "w") as f:  # not the parent's (a test runner's -1000)
    f.write(adj)
with open(procs, "w") as f:
    f.write(str(os.getpid()))
print("joined", flush=True)
if gated:
    sys.stdin.readline()
memory = mmap.mmap(-1, mib << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
for offset in range(0, len(memory), 4096):
    memory[offset] = 1
print("allocated", flush=True)
sys.stdin.readline()
"""


@dataclass
class MemoryHog:
    """A process in ``cgroup_path`` that allocates ``mib`` MiB (once released, if gated)."""

    proc: subprocess.Popen[bytes]
    cgroup_path: Path
    mib: int
    lines: list[str] = field(default_factory=list)  # what it said so far
    _pending: str = ""

    @classmethod
    def start(cls, cgroup: Any, mib: int, oom_score_adj: int = 0, *, gated: bool = True,
              wait_joined: bool = True) -> "MemoryHog":
        """A hog in ``cgroup`` (a :class:`bpfoom.Cgroup` or a path).  ``gated``: it waits for
        :meth:`release` before allocating.  ``wait_joined``: return once it is in the cgroup
        (fails the test if it never gets there)."""
        path = Path(getattr(cgroup, "path", cgroup))
        proc = subprocess.Popen([sys.executable, "-S", "-c", _SCRIPT, str(path / "cgroup.procs"),
                                 str(mib), str(oom_score_adj), "1" if gated else "0"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        hog = cls(proc, path, mib)
        if wait_joined and not hog.wait_for("joined", 30):
            hog.stop()
            _fail(f"memory hog did not join {path} (exit status {proc.poll()})")
        return hog

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_for(self, word: str, timeout: float = DEATH_TIMEOUT_S) -> bool:
        """True once the hog said ``word`` ("joined", "allocated"); False if it exited or
        the time ran out first.

        Reads the raw pipe: a buffered reader could hold a second line that
        select() then never reports.
        """
        deadline = time.monotonic() + timeout
        while word not in self.lines:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            ready, _, _ = select.select([self._stdout], [], [], left)
            if ready:
                chunk = os.read(self._stdout.fileno(), 4096)
                if not chunk:
                    return False
                self._pending += chunk.decode()
                *complete, self._pending = self._pending.split("\n")
                self.lines.extend(line.strip() for line in complete)
        return True

    def release(self) -> None:
        """Let a gated hog allocate."""
        self._stdin.write(b"go\n")
        self._stdin.flush()

    @property
    def _stdin(self) -> IO[bytes]:
        stream = self.proc.stdin
        assert stream is not None  # start() opens both pipes
        return stream

    @property
    def _stdout(self) -> IO[bytes]:
        stream = self.proc.stdout
        assert stream is not None  # start() opens both pipes
        return stream

    def wait_allocated(self, timeout: float = DEATH_TIMEOUT_S) -> bool:
        """True once all the memory is touched; False if it died (or timed out) first."""
        return self.wait_for("allocated", timeout)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_dead(self, timeout: float = DEATH_TIMEOUT_S) -> str:
        """How it died: "SIGKILL", another signal name, or "exit N"; fails the test on timeout."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _fail(f"memory hog {self.pid} in {self.cgroup_path} still alive after "
                        f"{timeout:.0f} s")
        death = self.death
        assert death is not None  # it exited
        return death

    @property
    def death(self) -> str | None:
        """"SIGKILL", "SIGTERM", ..., "exit N", or None while alive."""
        code = self.proc.poll()
        if code is None:
            return None
        return signal.Signals(-code).name if code < 0 else f"exit {code}"

    @property
    def oom_killed(self) -> bool:
        """Died by SIGKILL (what the OOM killer sends)."""
        return self.death == "SIGKILL"

    def stop(self) -> None:
        """Kill it (if alive) and reap it."""
        if self.alive:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


def _fail(message: str) -> NoReturn:
    """Fail the running test (pytest imported here: ``python -m bpfoom.testing.vm`` runs
    without it)."""
    import pytest

    pytest.fail(message)


@contextmanager
def memory_hogs(gated: bool = True) -> Iterator[Callable[..., MemoryHog]]:
    """``start(cgroup, mib, oom_score_adj=0, *, gated, wait_joined=True)``, every hog it
    started stopped on exit; ``gated`` is the default of each start."""
    started: list[MemoryHog] = []

    def start(cgroup: Any, mib: int, oom_score_adj: int = 0, *, gated: bool = gated,
              wait_joined: bool = True) -> MemoryHog:
        started.append(MemoryHog.start(cgroup, mib, oom_score_adj, gated=gated,
                                       wait_joined=wait_joined))
        return started[-1]

    try:
        yield start
    finally:
        for hog in started:
            hog.stop()
