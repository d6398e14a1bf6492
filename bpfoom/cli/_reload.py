"""``bpfoom reload [CONFIG]``: make the running daemon apply its edited configuration.

The daemon is found as ``bpfoom status`` finds it (the flock on its pin
directory, never a process name: ``pidof bpfoom`` finds ``python3``), sent
SIGHUP, and its state file watched until it records that reload's outcome,
which is printed: exit status 1 when the daemon refused the configuration
and kept the previous one.
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import signal
import time
from pathlib import Path

from ..bpf.errors import BpfError, NotFoundError

__all__ = ["add_parser"]

WAIT_S = 120.0  # a reload loads objects (the verifier): seconds on a busy machine


def _choose(config: str | None) -> tuple[int, dict]:
    """(pid, state) of the daemon running ``config`` (or the only one)."""
    from ..daemon.state import read_state
    from ._status import daemons

    found = []
    for daemon in daemons():
        state = read_state(daemon["pid"]) or {}
        if config is None or Path(state.get("config", "")).resolve() == Path(config).resolve():
            found.append((daemon["pid"], state))
    if not found:
        raise NotFoundError(errno.ESRCH, "no bpfoom daemon runs" + (
            f" with {config}" if config else "") + "; start one with `bpfoom run CONFIG` (or "
            "`systemctl start bpfoom`), and check $BPFOOM_STATE_DIR if it runs with another")
    if len(found) > 1:
        raise BpfError(errno.EINVAL, f"{len(found)} bpfoom daemons run (pids "
                       f"{', '.join(str(pid) for pid, _ in found)}); name the configuration to "
                       "reload: bpfoom reload CONFIG")
    return found[0]


def _reload(args: argparse.Namespace) -> int:
    from ..daemon.state import read_state

    pid, before = _choose(args.config)
    count = before.get("reloads", 0)
    os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + WAIT_S
    while True:
        state = read_state(pid)
        if state is None and not os.path.exists(f"/proc/{pid}"):
            raise BpfError(errno.ESRCH, f"daemon {pid} exited during the reload; see its log "
                           "(journalctl -u bpfoom)")
        if state is not None and state.get("reloads", 0) > count:
            break
        if time.monotonic() > deadline:
            raise BpfError(errno.ETIMEDOUT, f"daemon {pid} did not finish the reload within "
                           f"{WAIT_S:.0f} s; see its log (journalctl -u bpfoom)")
        time.sleep(0.1)  # the state file is replaced by a rename: nothing to wait on but time
    if state.get("reload_error"):
        why = re.sub(r"^\[Errno \d+ \w*\] ", "", state["reload_error"])  # ours says EINVAL
        raise BpfError(errno.EINVAL, f"daemon {pid}: reload refused, previous configuration "
                       f"kept: {why}")
    print(f"daemon {pid} reloaded {state.get('config')}: {state.get('status')}")
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "reload", help="make the running daemon apply its edited configuration",
        description="Send SIGHUP to the bpfoom daemon running CONFIG (or the only one), wait "
                    "for the reload to finish and print its outcome; exit status 1 when the "
                    "daemon refused the configuration (it keeps the previous one).",
        epilog="example:\n  bpfoom reload /etc/bpfoom/policies.toml",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", metavar="CONFIG", nargs="?",
                        help="the configuration the daemon runs (default: the only daemon)")
    parser.set_defaults(run=_reload)
