"""Link: a kernel BPF link (a registered struct_ops, or an attached tracing program)
and its lifetime rules.

Lifetime, as in libbpf-rs:

* A link returned by ``StructOpsMap.attach()`` or ``Program.attach()`` is
  owned: ``close()`` (or the ``with`` block's end) detaches it, unless it is
  pinned, in which case the pin keeps it attached and only our fd is closed.
* ``Link.from_pinned(path)`` owns a new fd to a pinned link; ``close()`` only
  closes that fd (the pin keeps the link attached).
* ``detach()`` always detaches at once, pinned or not; the Link stays open and
  reports ``detached``.  ``unpin()`` removes the pin, so a later ``close()``
  drops the last reference and detaches.
* Garbage collection is a backstop: an unclosed, unpinned, attached link is
  detached when collected, with a ResourceWarning.
* Links outlive the BpfObject whose map they attached.

Thread safety: every method takes the link's lock, so concurrent use
serializes and use after ``close()`` raises ClosedError.
"""

from __future__ import annotations

import errno
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from . import _log
from ._ffi import CData, ffi, lib
from .lifecycle import Closeable
from .errors import (BusyError, InvalidValueError, PathNotFoundError, StateError,
                     check, check_ptr)
from .features import cgroup_attach_supported
from .kernel_objects import fd_kind
from .map import Map

if TYPE_CHECKING:
    from .struct_ops import StructOpsMap

__all__ = ["Link", "LinkInfo", "links"]

_BPFFS_ADVICE = "pin paths must be on a mounted BPF filesystem (mount -t bpf bpf /sys/fs/bpf)"


@dataclass(frozen=True)
class LinkInfo:
    """What the kernel reports about a link (BPF_OBJ_GET_INFO_BY_FD).

    ``map_id`` is the struct_ops map (None for other link types);
    ``cgroup_id`` is the target cgroup's id, 0 for system-wide, or None when
    the kernel does not report one.
    """

    id: int
    type: str
    prog_id: int
    map_id: int | None
    attach_type: str | None
    cgroup_id: int | None


def _enum_str(func: Callable[[int], CData], value: int) -> str | None:
    raw: CData = func(value)
    return ffi.string(raw).decode() if raw != ffi.NULL else None


def link_info_from_fd(fd: int) -> LinkInfo:
    """Query a link fd; EINVAL means the fd is not a link."""
    info = ffi.new("struct bpf_link_info *")
    size = ffi.new("__u32 *", ffi.sizeof("struct bpf_link_info"))
    check(lib.bpf_link_get_info_by_fd(fd, info, size), "query the link",
          advice="the fd must refer to a BPF link")
    link_type = _enum_str(lib.libbpf_bpf_link_type_str, info.type) or f"unknown({info.type})"
    map_id = attach_type = cgroup_id = None
    if info.type == lib.BPF_LINK_TYPE_STRUCT_OPS:
        map_id = info.struct_ops.map_id
        attach_type = "struct_ops"
        cgroup_id = info.struct_ops.cgroup_id if cgroup_attach_supported() else None
    elif info.type == lib.BPF_LINK_TYPE_CGROUP:
        attach_type = _enum_str(lib.libbpf_bpf_attach_type_str, info.cgroup.attach_type)
        cgroup_id = info.cgroup.cgroup_id
    elif info.type == lib.BPF_LINK_TYPE_TRACING:
        attach_type = _enum_str(lib.libbpf_bpf_attach_type_str, info.tracing.attach_type)
    return LinkInfo(info.id, link_type, info.prog_id, map_id, attach_type, cgroup_id)


def links(type: str | None = None) -> list[LinkInfo]:
    """Every BPF link in the kernel, or only those of ``type`` (a :attr:`LinkInfo.type` such
    as "struct_ops", "tracing", "iter"), by enumerating link ids (needs CAP_SYS_ADMIN)."""
    found: list[LinkInfo] = []
    current = ffi.new("__u32 *", 0)
    following = ffi.new("__u32 *")
    while True:
        rc = lib.bpf_link_get_next_id(current[0], following)
        if rc == -errno.ENOENT:
            return found
        check(rc, "enumerate BPF links")
        current[0] = following[0]
        fd = lib.bpf_link_get_fd_by_id(following[0])
        if fd in (-errno.ENOENT, -errno.EAGAIN):
            continue  # went away meanwhile, or another process is still creating it
        check(fd, f"open BPF link {following[0]}")
        try:
            info = link_info_from_fd(fd)
        finally:
            os.close(fd)
        if type is None or info.type == type:
            found.append(info)


L = TypeVar("L", bound="Link")


def adopt_link(cls: type[L], ptr: CData, label: str, *, struct_ops: bool = False) -> L:
    """Own a link libbpf just made (``struct bpf_link *``): by attaching a program (fentry,
    tp_btf, iter, ...) or, with ``struct_ops``, a struct_ops map (update_map() is then safe on
    it).  The object layer's attach calls use this; it learns the id while the link surely
    exists, and on failure closes it, so nothing is left attached."""
    link = cls(ptr, label, from_attach=struct_ops)
    try:
        link.info()
    except BaseException:
        link.close()
        raise
    return link


class Link(Closeable):
    """A BPF link owned by this process; see the module doc for lifetime rules."""

    def __init__(self, ptr: CData, label: str, from_attach: bool) -> None:
        """Wrap a ``struct bpf_link *``; use StructOpsMap.attach() or from_pinned()."""
        super().__init__()
        self._ptr: CData | None = ptr
        self._label = label
        self._libbpf_struct_ops = from_attach  # a libbpf struct_ops link: update_map() is safe on it
        self._detached = False
        self._id: int | None = None

    @classmethod
    def from_pinned(cls, path: str | os.PathLike[str]) -> "Link":
        """Open the link pinned at ``path``; close() leaves it attached."""
        text = os.fsdecode(path)
        action = f"open the link pinned at {text!r}"
        with _log.capture():
            ptr = lib.bpf_link__open(os.fsencode(text))
        if ptr == ffi.NULL and ffi.errno == errno.ENOENT:
            raise PathNotFoundError(errno.ENOENT, f"could not {action}: nothing is pinned there; "
                                "check the path (pins live on the BPF filesystem)")
        check_ptr(ptr, action)
        link = cls(ptr, f"pinned {text}", from_attach=False)
        try:
            kind = fd_kind(lib.bpf_link__fd(ptr))
            if kind not in ("link", None):  # the info query below answers for maps too
                raise InvalidValueError(errno.EINVAL, f"could not {action}: a BPF {kind} is pinned "
                                        "there, not a link")
            link.info()
        except Exception:
            link.close()
            raise
        return link

    # -- state -----------------------------------------------------------
    def _live(self) -> CData:
        ptr = self._ptr
        if ptr is None:
            raise self._closed_error()
        return ptr

    @property
    def closed(self) -> bool:
        return self._ptr is None

    def _closed_message(self) -> str:
        return (f"link ({self._label}) is closed; "
                "open it again with Link.from_pinned() if it was pinned")

    @property
    def detached(self) -> bool:
        """True after detach() (the link fd may still be open)."""
        return self._detached

    @property
    def fd(self) -> int:
        """The link's fd, owned by this Link."""
        with self._lock:
            fd: int = lib.bpf_link__fd(self._live())
            return fd

    @property
    def id(self) -> int:
        """The kernel's link id; still answers after close()."""
        with self._lock:
            return self._id if self._id is not None else self.info().id

    def info(self) -> LinkInfo:
        """The kernel's view of the link."""
        with self._lock:
            info = link_info_from_fd(lib.bpf_link__fd(self._live()))
            self._id = info.id
            return info

    @property
    def pinned_path(self) -> str | None:
        """Where the link is pinned (by this Link or the pin it was opened from)."""
        with self._lock:
            raw = lib.bpf_link__pin_path(self._live())
            return ffi.string(raw).decode() if raw != ffi.NULL else None

    # -- operations ------------------------------------------------------
    def pin(self, path: str | os.PathLike[str]) -> None:
        """Pin the link at ``path`` on bpffs so it outlives this process."""
        text = os.fsdecode(path)
        with self._lock:
            ptr = self._live()
            current = self.pinned_path
            if current is not None:
                raise BusyError(errno.EBUSY, f"could not pin the link at {text!r}: it is already "
                                f"pinned at {current!r}; unpin() it first")
            parent = os.path.dirname(os.path.abspath(text))
            if not os.path.isdir(parent):
                raise PathNotFoundError(errno.ENOENT, f"could not pin the link at {text!r}: directory "
                                    f"{parent!r} does not exist; create it on the BPF filesystem")
            with _log.capture() as warned:
                rc = lib.bpf_link__pin(ptr, os.fsencode(text))
            advice = {errno.EEXIST: "that path is taken; unpin it or pick another path",
                      errno.EINVAL: _BPFFS_ADVICE}.get(-rc)
            check(rc, f"pin the link at {text!r}", advice=advice, detail=_log.cause(warned),
                  cls=InvalidValueError if rc == -errno.EINVAL else None)

    def unpin(self) -> None:
        """Remove the pin; the link stays attached while this Link is open."""
        with self._lock:
            ptr = self._live()
            if lib.bpf_link__pin_path(ptr) == ffi.NULL:
                raise StateError(errno.EINVAL, "could not unpin the link: it is not pinned")
            check(lib.bpf_link__unpin(ptr), "unpin the link")

    def update(self, new_map: "StructOpsMap") -> None:
        """Switch the link to another loaded struct_ops map of the same struct type."""
        if not isinstance(new_map, Map) or not new_map.is_struct_ops:
            raise TypeError(f"update() takes a StructOpsMap, not {type(new_map).__name__}")
        with self._lock:
            ptr = self._live()
            core = new_map.owner
            with core.lock:
                core.require_loaded(f"update a link to map {new_map.name!r}")
                map_ptr = core.map_ptrs[new_map.name]
                action = f"update the link to struct_ops map {new_map.name!r}"
                with _log.capture() as warned:
                    if self._libbpf_struct_ops:
                        rc: int = lib.bpf_link__update_map(ptr, map_ptr)
                    else:
                        rc = self._update_foreign(ptr, map_ptr, new_map)
                check(rc, action, detail=_log.cause(warned))
            self._detached = False

    @staticmethod
    def _update_foreign(ptr: CData, map_ptr: CData, new_map: "StructOpsMap") -> int:
        """update_map for a link libbpf did not create: give the map its kernel value
        (as libbpf's attach does; EBUSY = it already has one), then switch."""
        map_fd = lib.bpf_map__fd(map_ptr)
        value = ffi.from_buffer(new_map.kernel_value())
        rc: int = lib.bpf_map_update_elem(map_fd, ffi.new("__u32 *", 0), value, 0)
        if rc < 0 and rc != -errno.EBUSY:
            return rc
        switched: int = lib.bpf_link_update(lib.bpf_link__fd(ptr), map_fd, ffi.NULL)
        return switched

    def detach(self) -> None:
        """Detach now, even if pinned; the Link stays open (info() still works)."""
        with self._lock:
            check(lib.bpf_link__detach(self._live()), f"detach the link ({self._label})")
            self._detached = True

    def _release(self) -> None:
        """Close our fd: detaches an unpinned link, leaves a pinned one."""
        ptr, self._ptr = self._ptr, None
        if ptr is not None:
            lib.bpf_link__destroy(ptr)

    def _collected(self) -> None:
        ptr = self._ptr
        if ptr is None:
            return
        if lib.bpf_link__pin_path(ptr) == ffi.NULL and not self._detached:
            warnings.warn(f"unclosed link ({self._label}) detached by garbage collection; "
                          "close() it or use it as a context manager", ResourceWarning,
                          source=self)
        self.close()

    def __repr__(self) -> str:
        """Label, kernel id, state and pin; no C memory after close."""
        ident = "" if self._id is None else f" id={self._id}"
        with self._lock:
            ptr = self._ptr
            if ptr is None:
                return f"<Link {self._label}{ident} closed>"
            raw = lib.bpf_link__pin_path(ptr)
            pin = f" pinned at {ffi.string(raw).decode()!r}" if raw != ffi.NULL else ""
        return f"<Link {self._label}{ident} {'detached' if self._detached else 'attached'}{pin}>"
