"""What a scenario's machine has besides RAM: zram swap, and a file set on a disk.

The guest's root is 9p, which keeps no page cache, and tmpfs pages cannot be
reclaimed without swap; so the data whose pages the kernel can drop and read
back (the page-cache thrashing scenario) is a zram disk read through its page
cache: a block device in RAM whose compressible data costs little of it (the
image has no mkfs for a real file system, and none is needed).  Both are made
afresh before every run, so no run inherits the last one's swap or cache.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from bpfoom import parse_size  # the daemon's sizes: K, M, G, T

ZRAM_CONTROL = Path("/sys/class/zram-control")
FILES = Path("/dev/zram1")  # the "disk" a file set lives on
ALGORITHM = "lzo-rle"  # Debian's zram-tools default; zram's own LZO backend in our kernel


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, text=True, timeout=300)


def _device(index: int) -> Path:
    """/sys/block/zram<index>, made if missing (the kernel starts with zram0 only)."""
    while not Path(f"/sys/block/zram{index}").exists():
        (ZRAM_CONTROL / "hot_add").read_text()
    return Path(f"/sys/block/zram{index}")


def _reset(index: int) -> Path:
    device = _device(index)
    (device / "reset").write_text("1\n")
    return device


def zram_swap(size: str) -> None:
    """zram0 as the only swap, `size` of uncompressed pages (what zram-tools sets up)."""
    subprocess.run(["swapoff", "/dev/zram0"], capture_output=True, check=False)
    device = _reset(0)
    algorithms = (device / "comp_algorithm").read_text()
    if ALGORITHM in algorithms:
        (device / "comp_algorithm").write_text(ALGORITHM + "\n")
    (device / "disksize").write_text(f"{parse_size(size)}\n")
    _run("mkswap", "/dev/zram0")
    _run("swapon", "-p", "100", "/dev/zram0")


def no_swap() -> None:
    subprocess.run(["swapoff", "-a"], capture_output=True, check=False)
    if Path("/sys/block/zram0").exists():
        subprocess.run(["swapoff", "/dev/zram0"], capture_output=True, check=False)
        _reset(0)


def file_set(total_mb: int) -> Path:
    """`total_mb` MiB of compressible data on the zram1 disk, its page cache dropped: reading
    /dev/zram1 (buffered, through the block device's page cache) is then disk I/O until the
    pages are cached, and cached pages are clean, so the kernel can drop and read them again."""
    device = _reset(1)
    (device / "disksize").write_text(f"{total_mb << 20}\n")
    line = b"".join(bytes([65 + (i % 26)]) * 63 + b"\n" for i in range(64))  # 4 KiB of text
    chunk = line * 256  # 1 MiB
    with open(FILES, "wb") as disk:
        disk.writelines(chunk for _ in range(total_mb))
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")
    return FILES
