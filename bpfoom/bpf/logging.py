"""libbpf's messages into Python logging (logger "bpfoom.libbpf"): the public switch."""

from __future__ import annotations

from . import _log

__all__ = ["install_libbpf_logging"]


def install_libbpf_logging() -> None:
    """Send libbpf's messages to the logger "bpfoom.libbpf" at its level (idempotent).

    ``import bpfoom`` does this; a program that imports only the object layer
    calls it itself.
    """
    _log.install()
