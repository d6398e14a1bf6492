"""Explicit attach calls: the target named by the caller, not by the program's section.

``Program.attach()`` attaches where the section says (``SEC("tp_btf/...")``);
these attach a loaded program of the matching type to a target given at run
time, as libbpf's ``bpf_program__attach_*`` and cilium/ebpf's ``link``
package do: a tracepoint (``attach_tracepoint("oom", "mark_victim")``), a
raw tracepoint, a kprobe or kretprobe, a cgroup (with the attach type its
section declares, e.g. ``SEC("cgroup/sock_create")``) and an iterator.

Each returns an owned :class:`Link` (closing it detaches); a failed attach
raises a specific error and leaves nothing attached (libbpf frees what it
made before returning NULL).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import _log
from ._ffi import CData, ffi, lib
from .cgroup import Cgroup, CgroupTarget
from .errors import NotFoundError, NotSupportedError, StateError, check_ptr, error_from_errno
from .iterator import CGROUP_ORDERS, IterLink
from .link import Link, adopt_link

if TYPE_CHECKING:
    from .object import ObjectCore

__all__ = ["ExplicitAttach"]

_TRACEFS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
_KPROBE_PMU = "/sys/bus/event_source/devices/kprobe"


def _tracefs() -> str | None:
    """Where tracefs is mounted (libbpf reads tracepoint ids and kprobe_events there)."""
    return next((path for path in _TRACEFS if os.path.isdir(os.path.join(path, "events"))), None)


class ExplicitAttach:
    """The explicit attach calls of :class:`bpfoom.Program` (a mixin: the program's fields)."""

    _core: ObjectCore
    _ptr: CData
    name: str
    section: str

    def _attach_checked(self, kinds: tuple[str, ...], what: str, target: str,
                        call: Callable[[], CData], advice: Callable[[int], str | None]) -> Link:
        """Run ``call`` (a libbpf attach returning a link or NULL) for a loaded program of ``kinds``."""
        with self._core.lock:
            self._core.require_loaded(f"attach program {self.name!r}")
            raw = lib.libbpf_bpf_prog_type_str(lib.bpf_program__type(self._ptr))
            kind = ffi.string(raw).decode() if raw != ffi.NULL else "unknown"
            if kind not in kinds:
                raise StateError(errno.EINVAL, f"cannot attach program {self.name!r} "
                                 f"({self.section}, a {kind} program) as a {what}; it must be "
                                 f"declared as one: {' or '.join(kinds)}")
            if lib.bpf_program__fd(self._ptr) < 0:
                raise StateError(errno.EBADFD, f"cannot attach program {self.name!r}: it was not "
                                 "loaded (autoload off); set autoload before load()")
            with _log.capture() as warnings:
                ptr = call()
            code = ffi.errno
            if ptr == ffi.NULL:
                raise error_from_errno(code or errno.EINVAL, f"attach program {self.name!r} to "
                                       f"{what} {target}", advice=advice(code),
                                       detail=_log.cause(warnings),
                                       cls=_class_for(code, what))
            return adopt_link(Link, ptr, f"{what} {target} {self.name}")

    def attach_tracepoint(self, category: str, name: str) -> Link:
        """Attach a ``SEC("tracepoint")`` program to tracepoint ``category:name`` (e.g. "oom", "mark_victim").

        NotFoundError if the tracepoint does not exist or tracefs, where its
        id is read, is not mounted.
        """
        _check_names(category=category, name=name)

        def advice(code: int) -> str | None:
            if code != errno.ENOENT:
                return None
            if _tracefs() is None:
                return "tracefs is not mounted; mount -t tracefs nodev /sys/kernel/tracing"
            return f"no such tracepoint; the kernel's are listed under {_tracefs()}/events"

        return self._attach_checked(("tracepoint",), "tracepoint", f"{category}:{name}",
                                    lambda: lib.bpf_program__attach_tracepoint(
                                        self._ptr, category.encode(), name.encode()), advice)

    def attach_raw_tracepoint(self, name: str) -> Link:
        """Attach a ``SEC("raw_tracepoint")`` program to raw tracepoint ``name`` (e.g. "sys_enter")."""
        _check_names(name=name)
        return self._attach_checked(
            ("raw_tracepoint", "raw_tracepoint_writable"), "raw tracepoint", name,
            lambda: lib.bpf_program__attach_raw_tracepoint(self._ptr, name.encode()),
            lambda code: "no such tracepoint in this kernel" if code == errno.ENOENT else None)

    def attach_kprobe(self, function: str) -> Link:
        """Attach a ``SEC("kprobe")`` program to the entry of kernel function ``function``."""
        return self._attach_probe(function, retprobe=False)

    def attach_kretprobe(self, function: str) -> Link:
        """Attach a ``SEC("kretprobe")`` program to the return of kernel function ``function``."""
        return self._attach_probe(function, retprobe=True)

    def _attach_probe(self, function: str, *, retprobe: bool) -> Link:
        _check_names(function=function)
        what = "kretprobe" if retprobe else "kprobe"

        def advice(code: int) -> str | None:
            if not _kprobes_available():
                return ("this kernel has no kprobes: it needs CONFIG_KPROBES (the kprobe PMU or "
                        "tracefs kprobe_events)")
            if code in (errno.ENOENT, errno.EINVAL):
                return f"no kernel function {function!r} can be probed; see /proc/kallsyms"
            return None

        return self._attach_checked(("kprobe",), what, function,
                                    lambda: lib.bpf_program__attach_kprobe(
                                        self._ptr, retprobe, function.encode()), advice)

    def attach_cgroup(self, cgroup: CgroupTarget) -> Link:
        """Attach a cgroup program (``SEC("cgroup/sock_create")``, ``SEC("cgroup_skb/ingress")``,
        ...) to ``cgroup`` with the attach type its section declares.

        ``cgroup`` is a path, a :class:`Cgroup` or a cgroup id (an ``int`` is
        always an id).  The link holds the cgroup: it may be closed afterwards.
        """
        with Cgroup.of(cgroup) as opened:  # TypeError for anything but a path, Cgroup or id
            fd, label = opened.fd, str(opened.path)
            kinds = ("cgroup_skb", "cgroup_sock", "cgroup_sock_addr", "cgroup_sockopt",
                     "cgroup_sysctl", "cgroup_device", "sock_ops")
            return self._attach_checked(kinds, "cgroup", label,
                                        lambda: lib.bpf_program__attach_cgroup(self._ptr, fd),
                                        lambda code: None)

    def attach_iter(self, *, cgroup: CgroupTarget | None = None,
                    order: str = "descendants_pre") -> IterLink:
        """Attach a ``SEC("iter/...")`` program as an iterator; :meth:`IterLink.read` runs a walk.

        ``cgroup`` (with ``order``) is for ``iter/cgroup`` programs:
        where the walk starts; other iterators (task, bpf_map, ...) take none.
        """
        if cgroup is None:
            return self._attach_iterator(None, "")
        if order not in CGROUP_ORDERS:
            raise ValueError(f"order must be one of {', '.join(CGROUP_ORDERS)}, not {order!r}")
        info = ffi.new("union bpf_iter_link_info *")
        info.cgroup.order = getattr(lib, CGROUP_ORDERS[order])
        if isinstance(cgroup, int) and not isinstance(cgroup, bool):
            info.cgroup.cgroup_id = Cgroup.id_of(cgroup)  # the kernel looks the id up itself
            return self._attach_iterator(info, order)
        with Cgroup.of(cgroup) as opened:  # TypeError for anything but a path or a Cgroup
            info.cgroup.cgroup_fd = opened.fd
            return self._attach_iterator(info, order)

    def _attach_iterator(self, info: CData | None, order: str) -> IterLink:
        opts = ffi.new("struct bpf_iter_attach_opts *")
        opts.sz = ffi.sizeof("struct bpf_iter_attach_opts")
        if info is not None:
            opts.link_info = info
            opts.link_info_len = ffi.sizeof("union bpf_iter_link_info")
        core = self._core
        with core.lock:
            core.require_loaded(f"attach iterator program {self.name!r}")
            if lib.bpf_program__type(self._ptr) != lib.BPF_PROG_TYPE_TRACING or \
                    not self.section.startswith(("iter/", "iter.s/")):
                raise StateError(errno.EINVAL, f"program {self.name!r} ({self.section}) is not "
                                 "an iterator; declare it in SEC(\"iter/cgroup\") (or iter/task, ...)")
            where = f", {order}" if order else ""
            action = f"attach iterator {self.name!r} ({self.section}{where})"
            with _log.capture() as warnings:
                ptr = lib.bpf_program__attach_iter(self._ptr, opts)
            check_ptr(ptr, action, detail=_log.cause(warnings))
            return adopt_link(IterLink, ptr, f"{self.section} {self.name}")


def _check_names(**names: object) -> None:
    for label, value in names.items():
        if not isinstance(value, str):
            raise TypeError(f"{label} must be a str, not {type(value).__name__}")
        if not value or "\0" in value or "/" in value:
            raise ValueError(f"{label} must be a non-empty name without '/' or NUL, not {value!r}")


def _kprobes_available() -> bool:
    tracefs = _tracefs()
    return os.path.isdir(_KPROBE_PMU) or (
        tracefs is not None and os.path.exists(os.path.join(tracefs, "kprobe_events")))


def _class_for(code: int, what: str) -> type[NotFoundError] | type[NotSupportedError] | None:
    """NotSupportedError where the kernel has no kprobes at all; else by errno."""
    if what in ("kprobe", "kretprobe") and not _kprobes_available():
        return NotSupportedError
    return None
