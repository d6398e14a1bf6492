"""BPF iterators (``SEC("iter/...")``): attach a program as an iterator, run walks.

An iterator link says *what* to walk (for a cgroup iterator: the start
cgroup and the order); each :meth:`IterLink.read` opens a new iterator fd on
it (one walk, the kernel running the program once per element) and returns
everything the program wrote with ``bpf_seq_write``/``bpf_seq_printf``.

Also :func:`mmap_array`: a read-only view of a ``BPF_F_MMAPABLE`` array map,
the way to get bulk results out of a walk without a syscall per element.

Lifetime: an :class:`IterLink` owns its link (``close()`` detaches, as for
every :class:`Link`); the program's object must stay open while it is used.
"""

from __future__ import annotations

import errno
import mmap
import os
from typing import TYPE_CHECKING

from ._ffi import lib
from .cgroup import CgroupTarget
from .errors import InvalidValueError, check, error_from_errno
from .link import Link
from .map import Map

if TYPE_CHECKING:
    from .object import Program

__all__ = ["CGROUP_ORDERS", "IterLink", "attach_cgroup_iter", "attach_iter", "mmap_array"]

# kernel/bpf/cgroup_iter.c's walk orders, by the names its fdinfo uses.
CGROUP_ORDERS = {
    "self_only": "BPF_CGROUP_ITER_SELF_ONLY",
    "descendants_pre": "BPF_CGROUP_ITER_DESCENDANTS_PRE",
    "descendants_post": "BPF_CGROUP_ITER_DESCENDANTS_POST",
    "ancestors_up": "BPF_CGROUP_ITER_ANCESTORS_UP",
}
_READ_SIZE = 64 << 10  # larger than the kernel's 8-page seq buffer: one read per chunk


class IterLink(Link):
    """An iterator link: :meth:`read` runs one walk and returns its output."""

    def read(self) -> bytes:
        """Run one walk (a new iterator fd) and return all it wrote.

        A cgroup walk whose output outgrows the kernel's buffer (8 pages)
        fails with EOPNOTSUPP: write bulk data to a map instead.
        """
        with self._lock:
            fd = check(lib.bpf_iter_create(self.fd), f"start a walk of the iterator ({self._label})")
        chunks: list[bytes] = []
        try:
            while True:
                try:
                    chunk = os.read(fd, _READ_SIZE)
                except OSError as exc:
                    advice = ("the walk wrote more than the kernel's iterator buffer holds; "
                              "write bulk output to a map" if exc.errno == errno.EOPNOTSUPP else None)
                    raise error_from_errno(exc.errno or errno.EIO,
                                           f"read the iterator ({self._label})",
                                           advice=advice) from None
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)
        finally:
            os.close(fd)


def attach_cgroup_iter(program: Program, cgroup: CgroupTarget,
                       order: str = "descendants_pre") -> IterLink:
    """Attach a loaded ``SEC("iter/cgroup")`` (or ``iter.s/cgroup``) program to walk from ``cgroup``.

    ``cgroup`` is a path, a :class:`Cgroup` or a cgroup id (an ``int`` is
    always an id, as everywhere in bpfoom; wrap a raw fd with
    :meth:`Cgroup.from_fd`); ``order`` is one of :data:`CGROUP_ORDERS`.  The
    kernel takes its own reference on the cgroup: it may be closed afterwards.
    The same as ``program.attach_iter(cgroup=cgroup, order=order)``.
    """
    return program.attach_iter(cgroup=cgroup, order=order)


def attach_iter(program: Program) -> IterLink:
    """Attach a loaded iterator program that takes no parameters (``SEC("iter/task")``,
    ``SEC("iter/bpf_map")``, ...); cgroup iterators go through :func:`attach_cgroup_iter`."""
    return program.attach_iter()


def mmap_array(array: Map) -> mmap.mmap:
    """A read-only shared mapping of a loaded ``BPF_F_MMAPABLE`` array map's values.

    Element ``i`` starts at ``i * stride``, the stride being the value size
    rounded up to 8.  The mapping stays valid after the object closes (it
    holds the map); close it when done.
    """
    with array.owner.lock:  # the fd stays open until the mapping is made
        fd = array.fd
        if array.type != "array" or not array.flags & lib.BPF_F_MMAPABLE:
            raise InvalidValueError(errno.EINVAL, f"map {array.name!r} is not an mmapable array; "
                                    "declare it BPF_MAP_TYPE_ARRAY with map_flags BPF_F_MMAPABLE")
        stride = (array.value_size + 7) & ~7
        size = stride * array.max_entries
        try:
            return mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ)
        except OSError as exc:
            check(-(exc.errno or errno.EIO), f"map the values of map {array.name!r}")
            raise
