"""Cgroup: a cgroup v2 directory held open by an O_DIRECTORY fd.

Only cgroup v2 is accepted: a struct_ops link stores the id of a v2 cgroup,
and a v1 hierarchy (or a plain directory) would silently mean something
else.  The check is the file system magic of the directory (fstatfs), the
id is the directory's inode number, which is the kernel's cgroup id.

Thread safety: every method takes the object's lock; using a Cgroup after
close() raises ClosedError.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import threading
from pathlib import Path

from .errors import CgroupError, ClosedError, NotFoundError, error_from_errno

__all__ = ["Cgroup"]

CGROUP2_SUPER_MAGIC = 0x63677270
CGROUP_SUPER_MAGIC = 0x27E0EB  # cgroup v1

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.fstatfs.argtypes = [ctypes.c_int, ctypes.c_void_p]


def _fs_magic(fd: int) -> int:
    """f_type of the file system holding ``fd`` (first field of struct statfs)."""
    buf = ctypes.create_string_buffer(256)  # > sizeof(struct statfs) on every ABI
    if _libc.fstatfs(fd, buf) != 0:
        code = ctypes.get_errno()
        raise error_from_errno(code, "inspect the cgroup fd")
    return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF


class Cgroup:
    """An open cgroup v2 directory: id, procs, control files, children."""

    def __init__(self, path: Path, fd: int) -> None:
        """Wrap an fd already checked to be a cgroup v2 directory; use open()/create()."""
        self._lock = threading.RLock()
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
    def open(cls, path: str | os.PathLike) -> "Cgroup":
        """Open an existing cgroup v2 directory."""
        target = Path(os.fsdecode(path)).absolute()
        try:
            fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFoundError(errno.ENOENT, f"cgroup {str(target)!r} does not exist; create it "
                                "with Cgroup.create() or check the path") from None
        except NotADirectoryError:
            raise CgroupError(errno.ENOTDIR, f"{str(target)!r} is not a directory; give a cgroup v2 "
                              "directory") from None
        except OSError as exc:
            raise error_from_errno(exc.errno or errno.EIO, f"open cgroup {str(target)!r}") from None
        try:
            cls.check_fd(fd, repr(str(target)))
        except BaseException:
            os.close(fd)
            raise
        return cls(target, fd)

    @classmethod
    def create(cls, path: str | os.PathLike, exist_ok: bool = False) -> "Cgroup":
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
            raise error_from_errno(exc.errno or errno.EIO, f"create cgroup {str(target)!r}") from None
        return cls.open(target)

    # -- properties ---------------------------------------------------------
    def _live(self) -> int:
        fd = self._fd
        if fd is None:
            raise ClosedError(errno.EBADF, f"cgroup {str(self._path)!r} is closed; open it again")
        return fd

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
                raise error_from_errno(exc.errno or errno.EIO,
                                       f"read {name} of cgroup {str(self._path)!r}") from None
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
                raise error_from_errno(exc.errno or errno.EIO,
                                       f"write {value!r} to {name} of cgroup {str(self._path)!r}") from None

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
                raise error_from_errno(exc.errno or errno.EIO, f"remove cgroup {str(self._path)!r}",
                                       advice=advice.get(exc.errno)) from None
            self.close()

    def close(self) -> None:
        """Close the fd; the cgroup itself stays.  Idempotent."""
        with self._lock:
            fd, self._fd = self._fd, None
            if fd is not None:
                os.close(fd)

    def __enter__(self) -> "Cgroup":
        with self._lock:
            self._live()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def __repr__(self) -> str:
        return f"<Cgroup {str(self._path)!r}{' closed' if self._fd is None else ''}>"
