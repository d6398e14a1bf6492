"""A `bpfoom run CONFIG` child process whose JSON log lines tests wait for (host and guest)."""
from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

WAIT_S = 180.0  # a daemon starting under TCG (the VM without KVM) loads and verifies for a while


class DaemonProcess:
    """`python -m bpfoom run CONFIG` with its JSON log lines collected from stderr."""

    def __init__(self, config: Path, env: dict[str, str] | None = None,
                 prefix: tuple[str, ...] = (), args: tuple[str, ...] = ()) -> None:
        """``prefix``: a command that runs the daemon (e.g. setpriv limiting its capabilities);
        ``args``: more options of `bpfoom run`."""
        self.proc = subprocess.Popen([*prefix, sys.executable, "-P", "-m", "bpfoom", "run", *args,
                                      str(config)],
                                     stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                                     env={**os.environ, **(env or {})})
        self.lines: queue.Queue[dict | str] = queue.Queue()
        self.seen: list[dict | str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            try:
                self.lines.put(json.loads(line))
            except ValueError:
                self.lines.put(line.rstrip("\n"))

    def wait_event(self, event: str, timeout: float = WAIT_S) -> dict:
        """The next log record of ``event`` (fails on timeout or exit, showing the log)."""
        return self.wait_event_any([event], timeout)

    def wait_events(self, *events: str, timeout: float = WAIT_S) -> dict[str, dict]:
        """The next record of each of ``events``, in whatever order the daemon logs them."""
        deadline = time.monotonic() + timeout
        found: dict[str, dict] = {}
        while len(found) < len(set(events)):
            missing = [e for e in events if e not in found]
            record = self.wait_event_any(missing, max(0.0, deadline - time.monotonic()))
            found.setdefault(record["event"], record)
        return found

    def wait_event_any(self, events: list[str], timeout: float) -> dict:
        """The next log record of any of ``events``; the records passed over stay in ``seen``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                record = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"daemon logged none of {events} within {timeout:.0f} s: {self.seen}")
            self.seen.append(record)
            if isinstance(record, dict) and record.get("event") in events:
                return record

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = WAIT_S) -> int:
        code = self.proc.wait(timeout=timeout)
        self.proc.stderr.close()
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait()


