"""libbpf's messages, routed into the ``logging`` logger "bpfoom.libbpf".

libbpf calls its print hook from whatever thread runs the libbpf call, so a
thread can also collect the warnings of one operation (:func:`capture`) and
quote the last one in the exception it raises.  The hook never lets a Python
exception unwind into C.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from typing import Iterator

from ._ffi import ffi, lib

__all__ = ["logger", "capture", "cause", "install"]

logger = logging.getLogger("bpfoom.libbpf")
# A library does not decide where messages go: without the application's
# logging setup they are dropped (the exceptions quote the relevant ones).
logging.getLogger("bpfoom").addHandler(logging.NullHandler())

_LEVELS = {
    lib.LIBBPF_WARN: logging.WARNING,
    lib.LIBBPF_INFO: logging.INFO,
    lib.LIBBPF_DEBUG: logging.DEBUG,
}
_local = threading.local()


@ffi.def_extern()
def libbpf_ffi_print(level: int, message) -> int:
    """Called by the binding's C shim with one formatted libbpf message."""
    try:
        py_level = _LEVELS.get(level, logging.WARNING)
        sinks = getattr(_local, "sinks", None) if py_level >= logging.WARNING else None
        enabled = logger.isEnabledFor(py_level)
        if sinks or enabled:  # libbpf's many debug lines usually stop here
            text = ffi.string(message).decode("utf-8", "replace").rstrip("\n")
            if sinks:
                sinks[-1].append(text)
            if enabled:
                logger.log(py_level, "%s", text)
    except Exception:  # noqa: BLE001 - nothing may unwind through C
        pass
    return 0


@contextmanager
def capture() -> Iterator[list[str]]:
    """Collect the libbpf warnings this thread emits inside the block."""
    sinks = getattr(_local, "sinks", None)
    if sinks is None:
        sinks = _local.sinks = []
    collected: list[str] = []
    sinks.append(collected)
    try:
        yield collected
    finally:
        sinks.pop()


def cause(warnings: list[str]) -> str | None:
    """The first libbpf warning of an operation: usually the cause, the rest follow from it."""
    for text in warnings:
        stripped = text.strip()
        if stripped and not stripped.startswith("--"):
            return stripped.removeprefix("libbpf: ")
    return None


def install() -> None:
    """Point libbpf's print hook at :func:`libbpf_ffi_print` (idempotent)."""
    lib.libbpf_ffi_set_print(True)
