"""The ``bpfoom`` command line.

Exit status: 0 success, 1 the operation failed (a BpfError, reported on
stderr as one sentence), 2 bad usage (argparse's convention).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from .errors import BpfError

__all__ = ["main"]


def _features(args: argparse.Namespace) -> int:
    from .features import features

    feats = features()
    if args.json:
        json.dump(feats.as_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    width = max(len(name) for name in feats)
    for name in feats:
        feature = feats[name]
        mark = {True: "yes", False: "no", None: "unknown"}[feature.supported]
        print(f"{name:<{width}}  {mark:<7}  {feature.detail}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bpfoom", description="Load BPF out-of-memory policies through libbpf.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    feats = commands.add_parser("features", help="what the running kernel supports")
    feats.add_argument("--json", action="store_true", help="print JSON instead of a table")
    feats.set_defaults(run=_features)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bpfoom`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except BpfError as exc:
        print(f"bpfoom: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # e.g. `bpfoom features | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
