"""The ``bpfoom`` command line.

Exit status: 0 success, 1 the operation failed (reported on stderr as one
sentence naming the errno and what to do), 2 bad usage (argparse's
convention).  ``--json`` output is one JSON document with ``"schema": 1``
(``bpfoom events --json``: one such object per line); fields are only ever
added under the same schema number.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib import metadata

from ..bpf.errors import BpfError, errno_name

__all__ = ["main", "build_parser", "UsageError"]


class UsageError(Exception):
    """Argument text argparse could not check itself (exit status 2)."""

_EPILOG = """\
examples:
  bpfoom features                         what this kernel supports
  bpfoom policies                         the shipped policies and their tunables
  bpfoom attach largest_leaf --cgroup /sys/fs/cgroup/batch --set min_victim_bytes=16M
  bpfoom attach ./my_policy.bpf.o --pin /sys/fs/bpf/my_policy
  bpfoom list --json                      what is attached where
  bpfoom detach --cgroup /sys/fs/cgroup/batch
  bpfoom events --follow --json           decisions, one JSON object per line
  bpfoom explain --last 3                 the last decisions: candidates, exclusions, rule
  bpfoom run /etc/bpfoom/policies.toml    the daemon: attach a config, stay, detach on SIGTERM
  bpfoom reload                           the daemon applies its edited config (or says why not)

exit status: 0 ok, 1 the operation failed, 2 bad usage
"""


def build_parser() -> argparse.ArgumentParser:
    from . import _attach, _events, _explain, _reload, _show, _status, _top

    parser = argparse.ArgumentParser(
        prog="bpfoom", description="Load BPF out-of-memory policies and attach them to cgroups.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"bpfoom {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _show.add_parsers(commands)
    _attach.add_parsers(commands)
    _events.add_parser(commands)
    _explain.add_parser(commands)
    _status.add_parser(commands)
    _reload.add_parser(commands)
    _top.add_parser(commands)
    run = commands.add_parser(
        "run", help="run the daemon on a TOML config", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Attach every policy of CONFIG (all or nothing; a target that does not exist "
                    "yet is pending and attached when it appears), stream their decisions as "
                    "log lines, reload CONFIG on SIGHUP, detach on SIGTERM/SIGINT.",
        epilog="example:\n  bpfoom run --check examples/daemon/workloads.toml\n"
               "  bpfoom run examples/daemon/workloads.toml\n"
               "  bpfoom reload examples/daemon/workloads.toml    # apply the edited config")
    run.add_argument("config", metavar="CONFIG", help="path of the TOML configuration")
    run.add_argument("--check", action="store_true",
                     help="only check CONFIG and exit, without the kernel: syntax, keys, targets, "
                          "objects and their struct_ops, tunable names, types and ranges, "
                          "granularity; every problem on its own line, exit status 1")
    run.add_argument("--metrics-listen", metavar="HOST:PORT",
                     help="serve the Prometheus metrics at http://HOST:PORT/metrics "
                          "(e.g. 0.0.0.0:9863 in a pod)")
    run.set_defaults(run=_run)
    return parser


def _version() -> str:
    """The installed distribution's version (the one pip reports)."""
    try:
        return metadata.version("bpfoom")
    except metadata.PackageNotFoundError:  # a source tree on sys.path, never installed
        return "0+unknown"


def _run(args: argparse.Namespace) -> int:
    from ..daemon import check_config, run_daemon

    if args.check:
        config = check_config(args.config)
        count = len(config.entries)
        print(f"{args.config}: {count} {'policy' if count == 1 else 'policies'}, pinned under "
              f"{config.pin_dir}")
        for entry in config.entries:
            where = "system-wide" if entry.target.kind == "system" else f"on {entry.target}"
            print(f"  {entry.id}: {entry.policy} {where}")
        return 0
    return run_daemon(args.config, args.metrics_listen)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bpfoom`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except BpfError as exc:
        for problem in getattr(exc, "problems", (exc,)):  # a configuration's: each on its line
            print(f"bpfoom: {problem}", file=sys.stderr)
        return 1
    except UsageError as exc:  # malformed argument text found after parsing
        parser.error(str(exc))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `bpfoom features | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # e.g. creating a pin directory without the right
        name = errno_name(exc.errno) if exc.errno else "error"
        print(f"bpfoom: [{name}] {exc.strerror or exc}"
              f"{' (' + exc.filename + ')' if exc.filename else ''}; check the path and your "
              "privileges (run as root)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
