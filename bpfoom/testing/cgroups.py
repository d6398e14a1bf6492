"""Throw-away memory cgroups for tests: made with their own memcg, killed and removed after.

Used by the pytest plugin's ``cgroup`` fixture and by bpfoom's own guest
tests; the tree is created only on a cgroup v2 mount (never in a v1
hierarchy) and removed whole, processes included, even after a failure.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..bpf.cgroup import Cgroup, mounts
from ..bpf.lifecycle import Closeable

__all__ = ["CgroupTree", "cgroup_tree", "cgroup2_root", "cgroup_stat", "memory_events",
           "memory_stat", "remove_cgroup_tree"]


def cgroup2_root() -> Path | None:
    """The writable cgroup2 mount to create test cgroups in (``/sys/fs/cgroup`` first)."""
    for candidate in sorted(mounts("cgroup2"), key=lambda path: path != Path("/sys/fs/cgroup")):
        if os.access(candidate, os.W_OK):
            return candidate
    return None


def remove_cgroup_tree(path: Path, timeout: float = 10.0) -> None:
    """Kill every process in the subtree, then remove it bottom-up."""
    if not path.is_dir():
        return
    for child in [entry for entry in path.iterdir() if entry.is_dir()]:
        remove_cgroup_tree(child, timeout)
    for name, value in (("cgroup.freeze", "0"), ("cgroup.kill", "1")):
        try:  # each on its own: a kernel without cgroup.freeze still has cgroup.kill
            (path / name).write_text(value)
        except OSError:
            pass
    deadline = time.monotonic() + timeout
    while True:
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:  # EBUSY until the killed tasks are gone
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def memory_events(cg: Cgroup) -> dict[str, int]:
    """memory.events as a dict (oom, oom_kill, ...)."""
    return _flat_keyed(cg, "memory.events")


def memory_stat(cg: Cgroup) -> dict[str, int]:
    """memory.stat as a dict of bytes and counts (anon, file, slab_unreclaimable, ...)."""
    return _flat_keyed(cg, "memory.stat")


def cgroup_stat(cg: Cgroup) -> dict[str, int]:
    """cgroup.stat as a dict (nr_descendants, nr_dying_descendants, ...)."""
    return _flat_keyed(cg, "cgroup.stat")


def _flat_keyed(cg: Cgroup, name: str) -> dict[str, int]:
    """A cgroup file of ``key value`` lines, the values integers."""
    return {key: int(value) for key, value in
            (line.split() for line in cg.read(name).splitlines())}


class CgroupTree(Closeable):
    """Cgroups under one root directory: ``make("a/b", memory_max="64M")``; ``close()``
    kills their processes and removes them all.

    Every cgroup made gets the memory controller from its parent (its own
    memcg, where the mount has the controller) and swap off, so a memory
    limit means what it says.
    """

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root
        self._opened: list[Cgroup] = []
        self._removed = False

    def make(self, relative: str = "", *, memory_max: str | None = None,
             oom_group: bool = False, memory_for_children: bool = False) -> Cgroup:
        """Create (or open) ``root/relative`` and each cgroup on the way; returns it opened.

        ``memory_for_children``: enable the memory controller for its children too
        (children made by ``Cgroup.child`` get their own memcg; it can then hold no
        processes itself).
        """
        with self._lock:
            self._check_open()
        chain = [self.root]
        for part in Path(relative).parts:
            chain.append(chain[-1] / part)
        for parent, path in zip([None, *chain[:-1]], chain):
            if parent is not None:
                _give_memory_to_children(parent)
            if not path.exists():
                with Cgroup.create(path, exist_ok=True):
                    pass
                swap = path / "memory.swap.max"
                if swap.exists():
                    swap.write_text("0")
        cg = Cgroup.open(chain[-1])
        self._opened.append(cg)
        if memory_max is not None:
            cg.write("memory.max", memory_max)
        if oom_group:
            cg.write("memory.oom.group", "1")
        if memory_for_children:
            _give_memory_to_children(cg.path)
        return cg

    @property
    def closed(self) -> bool:
        return self._removed

    def _closed_message(self) -> str:
        return f"the cgroup tree at {str(self.root)!r} is removed; make a new CgroupTree"

    def _release(self) -> None:
        """Kill the processes and remove the cgroups."""
        self._removed = True
        for cg in self._opened:
            cg.close()
        self._opened.clear()
        remove_cgroup_tree(self.root)


def _give_memory_to_children(path: Path) -> None:
    """+memory in ``path``'s subtree_control, where its mount has the controller."""
    if "memory" in (path / "cgroup.controllers").read_text().split():
        (path / "cgroup.subtree_control").write_text("+memory")


@contextmanager
def cgroup_tree(root: Path) -> Iterator[CgroupTree]:
    """A :class:`CgroupTree` at ``root``, removed on exit even if the body failed."""
    tree = CgroupTree(root)
    try:
        yield tree
    finally:
        tree.close()
