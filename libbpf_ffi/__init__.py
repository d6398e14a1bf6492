"""Mechanical cffi binding of the patched, statically linked libbpf.

Only ``ffi`` and ``lib`` live here; all policy (errors, ownership, Python
types) is in bpfoom.  The extension carries the version it was built for, so
a stale build left next to newer Python code fails loudly at import instead
of misbehaving later.
"""
from importlib import metadata

from libbpf_ffi._libbpf import ffi, lib

__all__ = ["ffi", "lib"]


def _check_build_version() -> None:
    built_for = ffi.string(lib.LIBBPF_FFI_PACKAGE_VERSION).decode()
    try:
        installed = metadata.version("bpfoom")
    except metadata.PackageNotFoundError:
        return  # used from a source tree without metadata: nothing to compare
    if built_for != installed:
        raise ImportError(
            f"libbpf_ffi._libbpf was built for bpfoom {built_for} but bpfoom "
            f"{installed} is installed; rebuild it with `pip install -e .` "
            "(or reinstall bpfoom)"
        )


_check_build_version()
