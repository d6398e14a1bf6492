"""A process that takes memory the way a leak or a runaway job does: in steps, touching every page.

    python3 hog.py --mb 2000 --step-mb 8 --interval 0.05   # grow to 2000 MiB, then hold
    python3 hog.py --mb 300 --step-mb 300                  # take 300 MiB at once, hold

The arena uses it for culprits and for daemons that just hold memory; stress-ng's
stressors would do, but bookworm's sets its own oom_score_adj to 1000, which
would make every OOM killer's choice for it.
"""
from __future__ import annotations

import argparse
import signal
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, required=True, help="MiB to hold in the end")
    parser.add_argument("--step-mb", type=int, default=8)
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between steps")
    args = parser.parse_args()
    held = []
    total = 0
    while total < args.mb:
        step = min(args.step_mb, args.mb - total)
        held.append(b"\x5a" * (step << 20))  # written, so every page is really used
        total += step
        time.sleep(args.interval)
    print(f"holding {total} MiB", flush=True)
    signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main())
