"""libbpf's messages, routed into the ``logging`` logger "bpfoom.libbpf".

libbpf calls its print hook from whatever thread runs the libbpf call, so a
thread can also collect the warnings of one operation (:func:`capture`) and
quote the last one in the exception it raises.  The hook never lets a Python
exception unwind into C.
"""

from __future__ import annotations

import logging
import threading

from ._ffi import CData, ffi, lib

__all__ = ["logger", "capture", "cause", "install", "sync_level"]

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
_hook_level: list[int] = [-2]  # the max level last handed to the C shim


def libbpf_ffi_print(level: int, message: CData) -> int:
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


# Registered by a call, not as a decorator: the binding is untyped, and a decorator's Any would
# hide the function's own types from the checkers.
ffi.def_extern()(libbpf_ffi_print)


class capture:
    """Collect the libbpf warnings this thread emits inside the block (``with capture() as w``).

    A plain class, not a generator context manager: it wraps every libbpf
    call that can fail, several per attach cycle, and costs a third as much.
    """

    __slots__ = ("_sinks", "_collected")

    def __enter__(self) -> list[str]:
        sync_level()
        sinks: list[list[str]] | None = getattr(_local, "sinks", None)
        if sinks is None:
            sinks = _local.sinks = []
        self._sinks: list[list[str]] = sinks
        self._collected: list[str] = []
        sinks.append(self._collected)
        return self._collected

    def __exit__(self, *exc: object) -> None:
        self._sinks.pop()


def cause(warnings: list[str]) -> str | None:
    """The first libbpf warning of an operation: usually the cause, the rest follow from it."""
    for text in warnings:
        stripped = text.strip()
        if stripped and not stripped.startswith("--"):
            return stripped.removeprefix("libbpf: ")
    return None


def sync_level() -> None:
    """Let through C only the levels the logger (or a capture) can use.

    Formatting and calling into Python for each of libbpf's debug lines costs
    more than some of the operations that emit them, so the C shim drops what
    nobody would read.  Called before every libbpf operation, so a logging
    configuration made after import takes effect at the next one.
    """
    wanted = lib.LIBBPF_WARN
    if logger.isEnabledFor(logging.DEBUG):
        wanted = lib.LIBBPF_DEBUG
    elif logger.isEnabledFor(logging.INFO):
        wanted = lib.LIBBPF_INFO
    if wanted != _hook_level[0]:
        lib.libbpf_ffi_set_print(wanted)
        _hook_level[0] = wanted


def install() -> None:
    """Point libbpf's print hook at :func:`libbpf_ffi_print` (idempotent)."""
    sync_level()
