"""Testing OOM behaviour: throw-away memory cgroups, memory hogs, the pytest plugin, the VM.

Public (tests may import these, as bpfoom's own tests do)::

    from bpfoom.testing import MemoryHog, memory_hogs, cgroup_tree, memory_events, memory_stat, vm, distro

* :class:`CgroupTree` / :func:`cgroup_tree`: memory cgroups under one root,
  each with its own memcg and swap off, killed and removed afterwards;
  :func:`memory_events` / :func:`memory_stat` / :func:`cgroup_stat` read a cgroup's
  counters as a dict.
* :class:`MemoryHog` / :func:`memory_hogs`: processes that join a cgroup and
  allocate (after :meth:`MemoryHog.release` when gated), and report how they died.
* :mod:`~bpfoom.testing.vm`: bpfoom's VM (our kernel): ``python -m bpfoom.testing.vm -- CMD``.
* :mod:`~bpfoom.testing.distro`: Debian bookworm with systemd as PID 1 on our kernel, its
  services installed: ``python -m bpfoom.testing.distro -- CMD``.
* The pytest plugin (the ``cgroup``, ``memory_hog`` and ``oom_policy`` fixtures
  and the ``bpfoom_vm`` marker) is the top-level module ``bpfoom_pytest_plugin``,
  loaded by pytest through the entry point; it imports bpfoom only when used.
"""

from .cgroups import (CgroupTree, cgroup2_root, cgroup_stat, cgroup_tree, memory_events,
                      memory_stat, remove_cgroup_tree)
from .hog import DEATH_TIMEOUT_S, MemoryHog, memory_hogs

# "vm" and "distro" are submodules: `from bpfoom.testing import vm` imports it (not done here,
# so that `python -m bpfoom.testing.vm` does not find it imported already).
__all__ = ["CgroupTree", "cgroup_tree", "cgroup2_root", "remove_cgroup_tree", "memory_events",
           "memory_stat", "cgroup_stat", "MemoryHog", "memory_hogs", "DEATH_TIMEOUT_S", "vm",
           "distro"]
