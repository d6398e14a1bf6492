"""bpfoom's only import of the C binding; a missing extension gets one clear error."""

from __future__ import annotations

try:
    from libbpf_ffi import ffi, lib
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "bpfoom needs its compiled libbpf binding (libbpf_ffi); "
        "install the project with `pip install .` (or `pip install -e .`) first"
    ) from exc

__all__ = ["ffi", "lib"]
