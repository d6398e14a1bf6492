"""A process that takes memory the way a leak or a runaway job does: in steps, touching every page.

    python3 hog.py --mb 2000 --step-mb 8 --interval 0.05   # grow to 2000 MiB, then hold
    python3 hog.py --mb 300 --step-mb 300                  # take 300 MiB at once, hold
    python3 hog.py --mb 2000 --compress-ratio 3            # pages zram compresses about 3:1

The arena uses it for culprits and for daemons that just hold memory; stress-ng's
stressors would do, but bookworm's sets its own oom_score_adj to 1000, which
would make every OOM killer's choice for it.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, required=True, help="MiB to hold in the end")
    parser.add_argument("--step-mb", type=int, default=8)
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between steps")
    parser.add_argument("--compress-ratio", type=int, default=0,
                        help="pages that compress about N:1 (random head, zero tail); default "
                             "pages of one repeated byte, which zram stores for nothing")
    args = parser.parse_args()
    if args.compress_ratio:
        head = 4096 // args.compress_ratio
        page = os.urandom(head) + bytes(4096 - head)
    else:
        page = b"\x5a" * 4096
    held = []
    total = 0
    while total < args.mb:
        step = min(args.step_mb, args.mb - total)
        held.append(page * (step << 8))  # written, so every page is really used
        total += step
        time.sleep(args.interval)
    print(f"holding {total} MiB", flush=True)
    signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main())
