"""inotify through the binding's libc declarations: what watching cgroup directories needs.

Python's ``os`` has no inotify; the OOM layer's cgroup watcher uses these
three calls (its events are read from the fd with ``os.read``).
"""

from __future__ import annotations

import os

from ._ffi import ffi, lib
from .errors import error_from_errno

__all__ = ["inotify_init", "inotify_add_watch", "inotify_rm_watch"]


def inotify_init(flags: int) -> int:
    """A new inotify fd (``flags``: ``os.O_NONBLOCK | os.O_CLOEXEC``); BpfError on failure."""
    fd = int(lib.inotify_init1(flags))
    if fd < 0:
        raise error_from_errno(ffi.errno, "start watching directories (inotify_init1)")
    return fd


def inotify_add_watch(fd: int, path: str | os.PathLike[str], mask: int) -> int:
    """Watch ``path`` on inotify ``fd``; the watch descriptor, or ``-errno`` on failure."""
    wd = int(lib.inotify_add_watch(fd, os.fsencode(path), mask))
    return wd if wd >= 0 else -ffi.errno


def inotify_rm_watch(fd: int, wd: int) -> None:
    """Stop watch ``wd``; one already gone (its directory removed) is no error."""
    lib.inotify_rm_watch(fd, wd)
