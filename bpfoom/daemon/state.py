"""The daemon's state as a file ``bpfoom status`` reads: what waits, and the last reload.

What the kernel runs is read from the kernel; what a daemon waits for (a
cgroup that does not exist yet, a unit that does not run, an attach it
retries) exists only in the daemon.  It writes that, replaced atomically on
every change, to ``$BPFOOM_STATE_DIR/daemon-<pid>.json`` (default
``/run/bpfoom``, the unit's ``RuntimeDirectory=``) and removes it on exit.
A state that cannot be written is reported once in the log and never stops
the daemon.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .files import replace_file

__all__ = ["STATE_DIR_ENV", "DEFAULT_STATE_DIR", "state_dir", "state_path", "write_state",
           "read_state", "remove_state"]

STATE_DIR_ENV = "BPFOOM_STATE_DIR"
DEFAULT_STATE_DIR = Path("/run/bpfoom")
SCHEMA = 1


def state_dir() -> Path:
    return Path(os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR)


def state_path(pid: int) -> Path:
    return state_dir() / f"daemon-{pid}.json"


def write_state(pid: int, state: dict[str, Any]) -> Path:
    """Replace the state file of ``pid`` atomically; OSError when it cannot be written."""
    target = state_path(pid)
    target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    replace_file(target, json.dumps({"schema": SCHEMA, "pid": pid, **state}, default=str), fsync=False)
    return target


def read_state(pid: int) -> dict[str, Any] | None:
    """The state ``pid`` last wrote, or None (no file, not readable, or another pid's)."""
    try:
        state = json.loads(state_path(pid).read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and state.get("pid") == pid else None


def remove_state(pid: int) -> None:
    try:
        state_path(pid).unlink()
    except OSError:
        pass
