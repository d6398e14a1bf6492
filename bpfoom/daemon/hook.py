"""The kill hook: a command run for each OOM kill, with the victim's details in its environment.

What earlyoom's ``-N`` and oomd's prekill hooks give: page someone, post to
a chat, tell an orchestrator.  The daemon never waits for it: the command
is started (its own session, stdin/stdout/stderr /dev/null) and reaped from
the event loop; one still running, or one started less than
``min_interval`` seconds ago, makes the next kill's hook skipped (counted,
and logged once per run of skips), so a burst of kills cannot fork-bomb the
node.  A hook running longer than ``timeout`` is killed.

Environment (beside the daemon's own): ``BPFOOM_EVENT`` (``kill``),
``BPFOOM_POLICY``, ``BPFOOM_CONSTRAINT``, ``BPFOOM_VICTIM_PID``,
``BPFOOM_VICTIM_COMM``, ``BPFOOM_VICTIM_UID``, ``BPFOOM_VICTIM_OOM_SCORE_ADJ``,
``BPFOOM_VICTIM_CGROUP``, and where they apply ``BPFOOM_VICTIM_UNIT``,
``BPFOOM_VICTIM_POD``, ``BPFOOM_VICTIM_NAMESPACE``, ``BPFOOM_VICTIM_POD_UID``;
``BPFOOM_JSON``: the whole kill line as JSON.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from typing import Any, Callable

__all__ = ["KillHook"]

_ENV = {"policy": "BPFOOM_POLICY", "constraint": "BPFOOM_CONSTRAINT", "pid": "BPFOOM_VICTIM_PID",
        "comm": "BPFOOM_VICTIM_COMM", "uid": "BPFOOM_VICTIM_UID",
        "oom_score_adj": "BPFOOM_VICTIM_OOM_SCORE_ADJ"}


class KillHook:
    """Runs ``command`` per kill, at most one at a time and one per ``min_interval`` seconds."""

    def __init__(self, command: list[str], log: Callable[..., None], min_interval: float = 1.0,
                 timeout: float = 30.0) -> None:
        self.command = command
        self.log = log
        self.min_interval = min_interval
        self.timeout = timeout
        self.skipped = 0
        self._proc: subprocess.Popen | None = None
        self._started = -float("inf")

    @property
    def running(self) -> bool:
        return self._proc is not None

    def run(self, fields: dict[str, Any]) -> None:
        """Start the hook for one kill (``fields``: the kill's log fields), or skip it."""
        self.reap()
        now = time.monotonic()
        if self._proc is not None or now - self._started < self.min_interval:
            if not self.skipped:
                self.log("warning", "hook_skipped", pid=fields.get("pid"),
                         why=f"the hook ran less than {self.min_interval:g} s ago or still runs; "
                         "skips are counted until it runs again")
            self.skipped += 1
            return
        env = {**os.environ, "BPFOOM_EVENT": "kill",
               "BPFOOM_JSON": json.dumps(fields, default=str, separators=(",", ":"))}
        for key, name in _ENV.items():
            if fields.get(key) is not None:
                env[name] = str(fields[key])
        for key, value in fields.items():
            if key.startswith("victim_") and isinstance(value, str):
                env[f"BPFOOM_{key.upper()}"] = value
        try:
            self._proc = subprocess.Popen(self.command, env=env, stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          start_new_session=True, close_fds=True)
        except OSError as exc:
            self.log("error", "hook_failed", command=self.command, error=str(exc))
            return
        self._started = now
        self.log("info", "hook_started", pid=fields.get("pid"), hook_pid=self._proc.pid,
                 skipped_before=self.skipped)
        self.skipped = 0

    def reap(self) -> None:
        """Collect a finished hook (never blocks); kill one past its timeout."""
        proc = self._proc
        if proc is None:
            return
        code = proc.poll()
        if code is None:
            if time.monotonic() - self._started > self.timeout:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                self.log("warning", "hook_killed", hook_pid=proc.pid,
                         why=f"it ran longer than {self.timeout:g} s")
                self._proc = None
            return
        self._proc = None
        if code != 0:
            self.log("warning", "hook_failed", hook_pid=proc.pid, exit_status=code)

    def due(self) -> float | None:
        """When the loop should look again (a running hook is reaped within a second)."""
        return None if self._proc is None else time.monotonic() + 0.5

    def close(self) -> None:
        self.reap()
