"""bpfoom: load BPF out-of-memory policies (struct_ops) through libbpf.

Where this differs from or adds to the issue-3 API contract:

* A failed ``BpfObject.load()`` closes the object (libbpf has already closed
  its fds); ``state`` is then "closed" and the exception carries the log.
* ``obj.struct_ops[name]`` on an object with no struct_ops map at all raises
  ``NoStructOpsError`` (both ``ObjectFileError`` and ``MapNotFoundError``).
* Lookups by name raise ``MapNotFoundError`` / ``ProgramNotFoundError`` /
  ``VariableNotFoundError``, a missing map key ``KeyNotFoundError``: all are
  ``NotFoundError`` and ``KeyError``, never ``FileNotFoundError``; a missing
  file, pin or cgroup path is ``PathNotFoundError`` (``NotFoundError`` and
  ``FileNotFoundError``).
* ``StateError`` (a ``RuntimeError``) carries EBADFD when the call falls on
  the wrong side of ``load()``, EINVAL when it never fits the object.
* ``StructOpsMap.programs`` lists only the slots that hold a program.
* ``attach()`` needs a link-based map (``SEC(".struct_ops.link")``); a
  legacy ``SEC(".struct_ops")`` map raises ``StateError``.
* ``Cgroup.create(existing)`` raises ``CgroupError`` (EEXIST) unless
  ``exist_ok``; ``Cgroup.child(name)`` creates the child.
* An ``int`` cgroup argument is always a cgroup id (``attach(cgroup=)`` took
  an fd): ``Cgroup.from_fd(fd)`` wraps a raw fd, ``Cgroup.from_id(id)`` opens
  by id.
* ``close()`` from any thread wakes a ``RingBuffer.poll()`` (ClosedError) or
  an ``events()`` loop (it ends) blocked in another; ``fileno()`` on ring
  buffers and event streams is for selectors and asyncio; ``SourceSet`` waits
  on many of them at once (one epoll wait).
* ``Map`` is not a ``collections.abc.Mapping`` (so maps stay hashable and
  ``==`` stays identity); ``keys()``/``values()``/``items()`` return lists.
  ``lookup_batch()``/``update_batch()`` read or write many elements per
  syscall (hash and array maps; ``BatchNotSupportedError`` elsewhere, where
  ``items()`` and assignment do the same one element at a time).
* ``Map.from_pinned(path)`` opens a pinned map, owning its own fd
  (``close()``, a context manager); ``RingBuffer`` reads such a map too, and
  ``PinnedEvents`` reads the decisions ``bpfoom attach`` pinned through them.
* ``Program.attach()`` attaches a tracing program (fentry, fexit, tp_btf, ...)
  where its section says and returns an owned ``Link`` (same lifetime rules
  as struct_ops links); ``Map.max_entries`` is settable before load (a ring
  buffer's size must be a power-of-two multiple of the page size).
* A value of the wrong Python type for its BTF type raises ``InvalidTypeError``
  (a ``TypeError``), one that does not fit ``InvalidValueError``; a full map
  ``MapFullError`` (E2BIG); ``links()`` lists every link (``type=`` filters);
  ``RingBuffer.poll(timeout)`` takes seconds (None: forever) like every other
  timeout; ``attach_cgroup_iter`` takes a path, a Cgroup or a cgroup id.
* Beyond issue 3 (issue 26): ``Map.update/lookup/push`` take ``MapFlag``
  (``KeyExistsError`` for EEXIST), ``lookup_and_delete()``, ``delete_batch()``,
  ``reuse()`` and ``BpfObject.open(pin_root_path=)``; ``RingBuffer(...,
  record="struct")`` yields ``Record``s (``RecordType``); ``probe_*`` functions;
  ``Program.attach_tracepoint/raw_tracepoint/kprobe/kretprobe/cgroup/iter``.
* ``KillWatcher`` reports every OOM victim the kernel marks and every OOM
  that ended without one (``KillEvent``, ``OomNoKillEvent``), and lost
  records as ``OverrunEvent``; see bpfoom/oom/kill_watch.py.

The object layer (issue 3)::

    with bpfoom.BpfObject.open("policy.bpf.o") as obj:
        obj.rodata["limit_mb"] = 64
        ops = obj.struct_ops["my_ops"]
        ops.fields["name"] = "my_policy"
        obj.load()
        with ops.attach() as link:      # closing an unpinned link detaches it
            ...

Errors are BpfError subclasses (also OSError and the matching builtin).
Thread safety: every object serializes its operations on its own lock, so
one object may be shared between threads; a closed object raises
ClosedError instead of touching freed memory.  libbpf's messages go to the
logger "bpfoom.libbpf".
"""

from __future__ import annotations

from importlib import metadata as _metadata

from .bpf.logging import install_libbpf_logging
from .bpf.btf import Btf, Kind as BtfKind, vmlinux_btf
from .bpf.cgroup import Cgroup
from .bpf.errors import (BatchNotSupportedError, BpfError, BusyError, CgroupError, ClosedError,
                     InvalidTypeError, InvalidValueError, KeyExistsError, KeyNotFoundError, MapFullError, MapNotFoundError, NotFoundError, NotSupportedError,
                     ObjectFileError, PathNotFoundError, PermissionDeniedError,
                     ProgramNotFoundError, StateError,
                     VariableNotFoundError, VerifierError)
from .oom.features import Feature, Features, features, running_oom_abi
from .oom.abi import ABIS as OOM_ABIS, OomAbi, detect_oom_abi
from .bpf.struct_ops_target import CgroupMechanism, LinkCreateArgs
from .bpf.globals import GlobalSection
from .bpf.lifecycle import Closeable
from .bpf.iterator import IterLink, attach_cgroup_iter, mmap_array
from .bpf.link import Link, LinkInfo, links
from .bpf.map import Map, MapFlag, MapInfo
from .bpf.struct_ops import StructOpsFields, StructOpsMap
from .oom.attachments import Attachment, attached
from .oom.events import DecisionEvent
from .oom.kill_events import KillEvent, OomNoKillEvent, OverrunEvent
from .oom.kill_watch import KillWatcher
from .oom.memcg_stats import MemcgStats, MemcgStatsReader, Pressure, memcg_stats
from .oom.catalogue import PolicyInfo, get_include, policies
from .oom.tunables import TunableInfo, parse_size
from .oom.pinned_events import PinnedEvents
from .oom.policy import OomPolicy, PsiHandler
from .oom import targets
from .bpf.object import BpfObject, NoStructOpsError, Program
from .bpf.ringbuf import RingBuffer
from .bpf.records import Record, RecordType
from .bpf.probes import probe_helper, probe_kfunc, probe_map_type, probe_prog_type
from .bpf.aio import aevents
from .bpf.waiter import SourceSet

try:
    __version__ = _metadata.version("bpfoom")
except _metadata.PackageNotFoundError:  # a source tree without metadata
    __version__ = "0+unknown"

install_libbpf_logging()

__all__ = [
    "BpfObject", "Program", "Map", "MapFlag", "MapInfo", "Btf", "BtfKind", "vmlinux_btf", "StructOpsMap", "StructOpsFields",
    "GlobalSection", "Link", "LinkInfo", "links", "Cgroup", "RingBuffer", "Record", "RecordType", "Closeable",
    "IterLink", "attach_cgroup_iter", "mmap_array",
    "probe_prog_type", "probe_map_type", "probe_helper", "probe_kfunc",
    "Feature", "Features", "features", "running_oom_abi", "OomAbi", "OOM_ABIS", "detect_oom_abi",
    "CgroupMechanism", "LinkCreateArgs",
    "OomPolicy", "PsiHandler", "PolicyInfo", "TunableInfo", "parse_size", "policies", "get_include",
    "DecisionEvent", "PinnedEvents",
    "KillWatcher", "KillEvent", "OomNoKillEvent", "OverrunEvent",
    "Attachment", "attached", "targets", "aevents", "SourceSet",
    "MemcgStats", "MemcgStatsReader", "Pressure", "memcg_stats",
    "BpfError", "PermissionDeniedError", "NotSupportedError", "BatchNotSupportedError",
    "BusyError", "ObjectFileError",
    "NotFoundError", "PathNotFoundError", "MapNotFoundError", "ProgramNotFoundError", "VariableNotFoundError",
    "KeyNotFoundError", "KeyExistsError", "NoStructOpsError", "ClosedError", "VerifierError",
    "InvalidValueError", "InvalidTypeError", "MapFullError", "CgroupError", "StateError", "__version__",
]
