"""Cgroup: a cgroup v2 directory held open by an O_DIRECTORY fd.

Only cgroup v2 is accepted: a struct_ops link stores the id of a v2 cgroup,
and a v1 hierarchy (or a plain directory) would silently mean something
else.  The check is the file system magic of the directory (fstatfs), the
id is the directory's inode number, which is the kernel's cgroup id.

Wherever bpfoom takes "a cgroup" it takes a path, a :class:`Cgroup`, or an
``int``, and an ``int`` is always a cgroup **id** (what :attr:`Cgroup.id`,
events and ``LinkInfo.cgroup_id`` report), never a file descriptor: wrap a
raw fd with :meth:`Cgroup.from_fd`.

Thread safety: every method takes the object's lock; using a Cgroup after
close() raises ClosedError.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from pathlib import Path
from typing import Any, Union

from ._ffi import ffi, lib
from .lifecycle import Closeable
from .errors import (BpfError, CgroupError, InvalidValueError, NotFoundError,
                     PathNotFoundError, error_from_errno)

__all__ = ["Cgroup", "CgroupTarget", "mounts"]

CGROUP2_SUPER_MAGIC = 0x63677270
CGROUP_SUPER_MAGIC = 0x27E0EB  # cgroup v1
FILEID_KERNFS = 0xFE  # a kernfs file handle: the node id, which for cgroup2 is the cgroup id

# What API functions accept as "a cgroup": a v2 path, an open Cgroup, or a cgroup id.
CgroupTarget = Union[str, "os.PathLike[str]", "Cgroup", int]

def _fs_magic(fd: int) -> int:
    """f_type of the file system holding ``fd``."""
    buf = ffi.new("struct statfs *")
    if lib.fstatfs(fd, buf) != 0:
        raise error_from_errno(ffi.errno, "inspect the cgroup fd")
    return int(buf.f_type) & 0xFFFFFFFF


def _kernfs_handle(node_id: int) -> tuple[Any, Any]:
    """A ``struct file_handle`` naming kernfs node ``node_id`` (for cgroup2, the cgroup id)."""
    header = ffi.sizeof("struct file_handle")
    raw = ffi.new("char[]", header + 8)
    handle = ffi.cast("struct file_handle *", raw)
    handle.handle_bytes, handle.handle_type = 8, FILEID_KERNFS
    ffi.memmove(raw + header, struct.pack("=Q", node_id), 8)
    return raw, handle


def _os_error(exc: OSError, action: str, **how: Any) -> BpfError:
    """A BpfError for an OSError of a path operation (ENOENT: PathNotFoundError)."""
    code = exc.errno or errno.EIO
    return error_from_errno(code, action, cls=PathNotFoundError if code == errno.ENOENT else None,
                            **how)


def _checked_id(cgroup_id: int) -> int:
    if cgroup_id <= 0:
        raise InvalidValueError(errno.EINVAL, f"{cgroup_id} is not a cgroup id (ids are positive; "
                                "0 in link info means system-wide: pass None for that)")
    return cgroup_id


_TARGET_TYPES = ("a cgroup is a cgroup v2 path, a bpfoom.Cgroup or a cgroup id (int), not {}; "
                 "for a raw directory fd use bpfoom.Cgroup.from_fd(fd)")


def mounts(fs_type: str) -> list[Path]:
    """Where file systems of ``fs_type`` ("cgroup2", "bpf", ...) are mounted, from /proc/self/mounts."""
    with open("/proc/self/mounts") as table:
        fields = [line.split() for line in table]
    return [Path(f[1]) for f in fields if len(f) > 2 and f[2] == fs_type]


class Cgroup(Closeable):
    """An open cgroup v2 directory: id, procs, control files, children."""

    def __init__(self, path: Path, fd: int) -> None:
        """Wrap an fd already checked to be a cgroup v2 directory; use open()/create()."""
        super().__init__()
        self._path = path
        self._fd: int | None = fd

    # -- construction -------------------------------------------------------
    @staticmethod
    def check_fd(fd: int, label: str | None = None) -> None:
        """Raise CgroupError unless ``fd`` is a directory on a cgroup v2 file system."""
        where = label or f"fd {fd}"
        magic = _fs_magic(fd)
        if magic == CGROUP_SUPER_MAGIC:
            raise CgroupError(errno.EINVAL, f"{where} is a cgroup v1 directory; give a cgroup v2 "
                              "one (a directory under a cgroup2 mount, see /proc/self/mountinfo)")
        if magic != CGROUP2_SUPER_MAGIC:
            raise CgroupError(errno.ENOTDIR, f"{where} is not a cgroup v2 directory; give a "
                              "directory under a cgroup2 mount (see /proc/self/mountinfo)")

    @classmethod
    def from_fd(cls, fd: int) -> "Cgroup":
        """A Cgroup for a raw cgroup v2 directory fd; it duplicates the fd (yours stays yours)."""
        if isinstance(fd, bool) or not isinstance(fd, int):
            raise TypeError(f"from_fd() takes an fd (int), not {type(fd).__name__}")
        try:
            own = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 0)
        except OSError as exc:
            raise error_from_errno(exc.errno or errno.EBADF, f"use fd {fd} as a cgroup") from None
        return cls._adopt(own, f"fd {fd}")

    @classmethod
    def from_id(cls, cgroup_id: int) -> "Cgroup":
        """Open the cgroup whose id is ``cgroup_id`` (as reported by events and link info).

        Uses a kernfs file handle (open_by_handle_at), which needs
        CAP_DAC_READ_SEARCH, i.e. root, like attaching does.
        """
        if isinstance(cgroup_id, bool) or not isinstance(cgroup_id, int):
            raise TypeError(f"from_id() takes a cgroup id (int), not {type(cgroup_id).__name__}")
        _checked_id(cgroup_id)
        cgroup2 = mounts("cgroup2")
        if not cgroup2:
            raise NotFoundError(errno.ENOENT, f"could not open cgroup id {cgroup_id}: no cgroup2 "
                                "file system is mounted; mount one (mount -t cgroup2 none DIR)")
        _keep, handle = _kernfs_handle(cgroup_id)  # _keep: the memory handle points into
        fd, code = -1, errno.ESTALE
        for mount in cgroup2:  # a mount of a subtree (a container's) opens only what is below it
            mount_fd = os.open(mount, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                fd = lib.open_by_handle_at(mount_fd, handle,
                                           os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                code = ffi.errno
            finally:
                os.close(mount_fd)
            if fd >= 0 or code != errno.ESTALE:
                break
        if fd < 0:
            if code == errno.ESTALE:
                raise NotFoundError(errno.ENOENT, f"there is no cgroup with id {cgroup_id} (it may "
                                    "have been removed); check the id") from None
            raise error_from_errno(code, f"open cgroup id {cgroup_id}",
                                   advice="opening a cgroup by id needs CAP_DAC_READ_SEARCH (root)"
                                   if code in (errno.EPERM, errno.EACCES) else None)
        return cls._adopt(fd, f"cgroup id {cgroup_id}")

    @classmethod
    def _adopt(cls, fd: int, label: str) -> "Cgroup":
        """Own ``fd`` if it is a cgroup v2 directory (closed otherwise)."""
        try:
            cls.check_fd(fd, label)
            path = Path(os.readlink(f"/proc/self/fd/{fd}"))
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd)

    @classmethod
    def of(cls, target: CgroupTarget) -> "Cgroup":
        """A new Cgroup of its own (the caller closes it) for a path, a Cgroup (its fd is
        duplicated: closing either leaves the other open) or a cgroup id."""
        if isinstance(target, Cgroup):
            with target._lock:
                return cls._adopt(os.dup(target._live()), repr(str(target._path)))
        if isinstance(target, int) and not isinstance(target, bool):
            return cls.from_id(target)
        if isinstance(target, (str, os.PathLike)):
            return cls.open(target)
        raise TypeError(_TARGET_TYPES.format(type(target).__name__))

    @staticmethod
    def id_of(target: CgroupTarget) -> int:
        """The cgroup id of a path, a Cgroup or an id (an id is taken as it is)."""
        if isinstance(target, int) and not isinstance(target, bool):
            return _checked_id(target)
        if isinstance(target, Cgroup):
            return target.id
        if isinstance(target, (str, os.PathLike)):
            with Cgroup.open(target) as opened:
                return opened.id
        raise TypeError(_TARGET_TYPES.format(type(target).__name__))

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> "Cgroup":
        """Open an existing cgroup v2 directory."""
        target = Path(os.fsdecode(path)).absolute()
        try:
            fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise PathNotFoundError(errno.ENOENT, f"cgroup {str(target)!r} does not exist; create it "
                                "with Cgroup.create() or check the path") from None
        except NotADirectoryError:
            raise CgroupError(errno.ENOTDIR, f"{str(target)!r} is not a directory; give a cgroup v2 "
                              "directory") from None
        except OSError as exc:
            raise _os_error(exc, f"open cgroup {str(target)!r}") from None
        try:
            cls.check_fd(fd, repr(str(target)))
        except BaseException:
            os.close(fd)
            raise
        return cls(target, fd)

    @classmethod
    def create(cls, path: str | os.PathLike[str], exist_ok: bool = False) -> "Cgroup":
        """Create a child cgroup (its parent must be cgroup v2) and open it."""
        target = Path(os.fsdecode(path)).absolute()
        cls.open(target.parent).close()  # parent must be v2: never mkdir into v1
        try:
            os.mkdir(target)
        except FileExistsError:
            if not exist_ok:
                raise CgroupError(errno.EEXIST, f"cgroup {str(target)!r} already exists; pass "
                                  "exist_ok=True to use it") from None
        except OSError as exc:
            raise _os_error(exc, f"create cgroup {str(target)!r}") from None
        return cls.open(target)

    # -- properties ---------------------------------------------------------
    def _live(self) -> int:
        fd = self._fd
        if fd is None:
            raise self._closed_error()
        return fd

    @property
    def closed(self) -> bool:
        return self._fd is None

    def _closed_message(self) -> str:
        return f"cgroup {str(self._path)!r} is closed; open it again"

    @property
    def path(self) -> Path:
        return self._path

    @property
    def fd(self) -> int:
        """The O_DIRECTORY fd, owned by this object."""
        with self._lock:
            return self._live()

    @property
    def id(self) -> int:
        """The kernel's cgroup id (the directory's inode number)."""
        with self._lock:
            return os.fstat(self._live()).st_ino

    @property
    def procs(self) -> list[int]:
        """PIDs of the processes in this cgroup (cgroup.procs)."""
        return [int(line) for line in self.read("cgroup.procs").split()]

    # -- control files ------------------------------------------------------
    @staticmethod
    def _control_name(name: str) -> str:
        if not name or "/" in name or name in (".", ".."):
            raise ValueError(f"{name!r} is not a control file name (e.g. 'memory.max')")
        return name

    def read(self, name: str) -> str:
        """Contents of control file ``name`` without the trailing newline."""
        name = self._control_name(name)
        with self._lock:
            dir_fd = self._live()
            try:
                fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
            except OSError as exc:
                raise _os_error(exc, f"read {name} of cgroup {str(self._path)!r}") from None
            with os.fdopen(fd, "r") as stream:
                return stream.read().rstrip("\n")

    def write(self, name: str, value: str | int) -> None:
        """Write ``value`` to control file ``name`` in one write() call."""
        name = self._control_name(name)
        data = str(value).encode()
        with self._lock:
            dir_fd = self._live()
            try:
                fd = os.open(name, os.O_WRONLY | os.O_CLOEXEC, dir_fd=dir_fd)
                try:
                    os.write(fd, data)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise _os_error(exc, f"write {value!r} to {name} of cgroup {str(self._path)!r}") from None

    def child(self, name: str, exist_ok: bool = False) -> "Cgroup":
        """Create (or with exist_ok, open) the child cgroup ``name``."""
        if not name or "/" in name or name in (".", ".."):
            raise ValueError(f"{name!r} is not a cgroup name")
        with self._lock:
            self._live()
        return Cgroup.create(self._path / name, exist_ok=exist_ok)

    # -- lifetime -----------------------------------------------------------
    def remove(self) -> None:
        """Delete the cgroup directory (it must have no processes and no children) and close."""
        with self._lock:
            self._live()
            try:
                os.rmdir(self._path)
            except OSError as exc:
                advice = {errno.EBUSY: "move its processes out and remove its children first"}
                raise _os_error(exc, f"remove cgroup {str(self._path)!r}",
                                advice=advice.get(exc.errno or 0)) from None
            self.close()

    def _release(self) -> None:
        """Close the fd; the cgroup itself stays."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __repr__(self) -> str:
        with self._lock:
            fd = self._fd
            if fd is None:
                return f"<Cgroup {str(self._path)!r} closed>"
            return f"<Cgroup {str(self._path)!r} id={os.fstat(fd).st_ino} open>"
