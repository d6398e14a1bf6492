"""bpfoom's only import of the C binding; a missing extension gets one clear error."""

from __future__ import annotations

from typing import Any, TypeAlias

try:
    from libbpf_ffi import ffi, lib
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "bpfoom needs its compiled libbpf binding (libbpf_ffi); "
        "install the project with `pip install .` (or `pip install -e .`) first"
    ) from exc

# A cffi pointer, array or struct (``struct bpf_map *``, ``char[]``, ...).  The binding is
# generated at build time, so checkers know its values only as Any; the alias names what a
# parameter or attribute holds, and keeps cdata out of the public signatures that use it.
CData: TypeAlias = Any

__all__ = ["CData", "ffi", "lib"]
