"""Probes of what the running kernel can load: program types, map types, helpers, kfuncs.

Each answer is a :class:`Feature` (cached per process): True or False only
when the probe was conclusive, None (unknown) otherwise, never "supported"
by default.  Program types, map types and helpers are probed by loading a
tiny program or creating a tiny map (libbpf's ``libbpf_probe_bpf_*``, which
need the rights to do so); kfuncs by their presence in vmlinux BTF.
Names are libbpf's ("kprobe", "struct_ops", "ringbuf", ...); helpers are
named as in ``enum bpf_func_id`` without ``BPF_FUNC_`` ("ringbuf_output").
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from ._ffi import ffi, lib
from .btf import Kind, vmlinux_btf
from .errors import BpfError, errno_name
from .features import Feature

__all__ = ["probe_prog_type", "probe_map_type", "probe_helper", "probe_kfunc",
           "prog_type_names", "map_type_names"]

# libbpf names enum values up to this bound (the kernel's enums are far smaller).
_ENUM_BOUND = 256


def _names(to_str: Callable[[int], object]) -> dict[str, int]:
    found: dict[str, int] = {}
    for value in range(_ENUM_BOUND):
        raw = to_str(value)
        if raw != ffi.NULL:
            found[ffi.string(raw).decode()] = value
    return found


@functools.cache
def prog_type_names() -> dict[str, int]:
    """Program type name -> enum bpf_prog_type value, as this libbpf knows them."""
    return _names(lib.libbpf_bpf_prog_type_str)


@functools.cache
def map_type_names() -> dict[str, int]:
    """Map type name -> enum bpf_map_type value, as this libbpf knows them."""
    return _names(lib.libbpf_bpf_map_type_str)


def _lookup(kind: str, name: object, table: dict[str, int]) -> int:
    if not isinstance(name, str):
        raise TypeError(f"a {kind} is named by a str, not {type(name).__name__}")
    try:
        return table[name]
    except KeyError:
        raise ValueError(f"unknown {kind} {name!r}; known: {', '.join(sorted(table))}") from None


# libbpf answers these by matching a verifier message that differs between kernels
# (6.18 refuses its fentry probe with another text): a refusal proves nothing.
_MESSAGE_MATCHED = ("tracing", "lsm", "ext")
_CAP_SYS_ADMIN, _CAP_BPF = 21, 39


def _privileged() -> bool:
    """Whether this process may load programs and create maps of every type (CAP_BPF or
    CAP_SYS_ADMIN); without it libbpf reports every refusal as "not supported"."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            line = next(l for l in status if l.startswith("CapEff:"))
    except (OSError, StopIteration):
        return False
    caps = int(line.split()[1], 16)
    return bool(caps >> _CAP_BPF & 1 or caps >> _CAP_SYS_ADMIN & 1)


def _unprivileged(name: str, what: str) -> Feature | None:
    if _privileged():
        return None
    return Feature(name, None, f"{what} was not tried: it needs CAP_BPF or CAP_SYS_ADMIN "
                   "(root), without which every refusal looks like \"not supported\"")


def _verdict(name: str, rc: int, what: str, *, refusal_proves: bool = True) -> Feature:
    if rc == 1:
        return Feature(name, True, f"{what} succeeded")
    if rc == 0 and refusal_proves:
        return Feature(name, False, f"{what}: the kernel refused it")
    if rc == 0:
        return Feature(name, None, f"{what}: refused, but libbpf's probe of this type matches "
                       "a verifier message that differs between kernels, so it proves nothing")
    return Feature(name, None, f"{what} was inconclusive ({errno_name(-rc)})")


@functools.cache
def probe_prog_type(prog_type: str) -> Feature:
    """Whether the kernel loads programs of ``prog_type`` ("kprobe", "tracing", ...)."""
    value = _lookup("program type", prog_type, prog_type_names())
    name, what = f"prog_type:{prog_type}", f"loading a minimal {prog_type} program"
    refused = _unprivileged(name, what)
    return refused if refused is not None else _verdict(
        name, lib.libbpf_probe_bpf_prog_type(value, ffi.NULL), what,
        refusal_proves=prog_type not in _MESSAGE_MATCHED)


@functools.cache
def probe_map_type(map_type: str) -> Feature:
    """Whether the kernel creates maps of ``map_type`` ("ringbuf", "queue", ...)."""
    value = _lookup("map type", map_type, map_type_names())
    name, what = f"map_type:{map_type}", f"creating a minimal {map_type} map"
    refused = _unprivileged(name, what)
    return refused if refused is not None else _verdict(
        name, lib.libbpf_probe_bpf_map_type(value, ffi.NULL), what)


@functools.cache
def _helper_ids() -> dict[str, int]:
    """Helper name -> id from vmlinux BTF's enum bpf_func_id (empty without BTF)."""
    try:
        with vmlinux_btf() as btf:
            enum_id = btf.find("bpf_func_id", Kind.ENUM)
            if enum_id is None:
                return {}
            return {m.name.removeprefix("BPF_FUNC_"): int(m.value)
                    for m in btf.type(enum_id).members}
    except BpfError:
        return {}


@functools.cache
def probe_helper(prog_type: str, helper: str) -> Feature:
    """Whether programs of ``prog_type`` may call helper ``helper`` ("ringbuf_output", ...).

    The helper's id comes from vmlinux BTF; without it the answer is unknown.
    """
    value = _lookup("program type", prog_type, prog_type_names())
    if not isinstance(helper, str):
        raise TypeError(f"a helper is named by a str, not {type(helper).__name__}")
    name = f"helper:{prog_type}:{helper}"
    ids = _helper_ids()
    if not ids:
        return Feature(name, None, "vmlinux BTF (enum bpf_func_id) could not be read, so the "
                       "helper's id is unknown; use a kernel with CONFIG_DEBUG_INFO_BTF")
    if helper not in ids:
        return Feature(name, False, f"vmlinux BTF enum bpf_func_id has no BPF_FUNC_{helper}")
    what = f"loading a {prog_type} program calling bpf_{helper}"
    refused = _unprivileged(name, what)
    return refused if refused is not None else _verdict(
        name, lib.libbpf_probe_bpf_helper(value, ids[helper], ffi.NULL), what)


@functools.cache
def probe_kfunc(kfunc: str) -> Feature:
    """Whether vmlinux BTF declares kfunc ``kfunc`` (presence, not which program types may call it)."""
    if not isinstance(kfunc, str):
        raise TypeError(f"a kfunc is named by a str, not {type(kfunc).__name__}")
    name = f"kfunc:{kfunc}"
    try:
        with vmlinux_btf() as btf:
            present = btf.find(kfunc, Kind.FUNC) is not None
    except BpfError as err:
        return Feature(name, None, f"vmlinux BTF could not be loaded ({errno_name(err.errno or 0)})")
    return Feature(name, present, f"vmlinux BTF {'has' if present else 'has no'} FUNC {kfunc}")
