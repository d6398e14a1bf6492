"""A login session: one scope holding many processes, where one of them will run away.

    python3 session.py --children 300 --child-mb 1 --runaway-pid-file /run/arena-runaway.pid \
        -- python3 hog.py --mb 4000 --step-mb 32

Forks `--children` idle processes that each hold `--child-mb` MiB (shells, editors, a
terminal's tabs), then waits.  On SIGUSR1 it starts the command after `--` as one more child
(the runaway) and writes its pid to `--runaway-pid-file`: the arena's culprit is that one
process, and every other process of the scope that dies is collateral.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path


def idle_child(mb: int) -> None:
    held = b"\x5a" * (mb << 20)  # written: really resident
    signal.pause()
    del held


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--children", type=int, required=True)
    parser.add_argument("--child-mb", type=int, default=1)
    parser.add_argument("--runaway-pid-file", type=Path, required=True)
    parser.add_argument("command", nargs="+")
    args = parser.parse_args()
    # A scope's kill reaches every process: the idle ones ignore it from their first
    # instruction on (inherited), only this one starts the runaway.
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    for _ in range(args.children):
        if os.fork() == 0:
            idle_child(args.child_mb)
            os._exit(0)
    started = False

    def start_runaway(_signum: int, _frame: object) -> None:
        nonlocal started
        if started:
            return
        started = True
        pid = os.fork()
        if pid == 0:
            # systemd's kill goes round the scope's processes until it finds no new one, so
            # it can reach this child too; a handler would not survive exec, an ignore does.
            signal.signal(signal.SIGUSR1, signal.SIG_IGN)
            os.execvp(args.command[0], args.command)
        args.runaway_pid_file.write_text(f"{pid}\n")

    signal.signal(signal.SIGUSR1, start_runaway)
    print(f"session: {args.children} processes", flush=True)
    while True:
        try:
            os.wait()  # reap the runaway and whatever dies; the session itself stays
        except ChildProcessError:
            signal.pause()
        except InterruptedError:
            continue


if __name__ == "__main__":
    sys.exit(main())
