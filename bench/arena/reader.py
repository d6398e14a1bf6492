"""A working set read over and over, in one long-lived process (a shell loop of `cat` would
start a new process per pass, which the arena would count as deaths).

    python3 reader.py /dev/zram1
"""
from __future__ import annotations

import sys


def main() -> int:
    path = sys.argv[1]
    while True:
        with open(path, "rb") as data:
            while data.read(1 << 20):
                pass


if __name__ == "__main__":
    sys.exit(main())
