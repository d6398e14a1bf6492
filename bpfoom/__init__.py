"""bpfoom: load BPF out-of-memory policies (struct_ops) through libbpf.

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

from . import _log
from .cgroup import Cgroup
from .errors import (BpfError, BusyError, CgroupError, ClosedError, InvalidValueError,
                     KeyNotFoundError, MapNotFoundError, NotFoundError, NotSupportedError,
                     ObjectFileError, PermissionDeniedError, ProgramNotFoundError, StateError,
                     VariableNotFoundError, VerifierError)
from .features import Feature, Features, features
from .globals import GlobalSection
from .link import Link, LinkInfo, links
from .map import Map, MapInfo, StructOpsFields, StructOpsMap
from .object import BpfObject, NoStructOpsError, Program
from .ringbuf import RingBuffer

try:
    __version__ = _metadata.version("bpfoom")
except _metadata.PackageNotFoundError:  # a source tree without metadata
    __version__ = "0+unknown"

_log.install()

__all__ = [
    "BpfObject", "Program", "Map", "MapInfo", "StructOpsMap", "StructOpsFields",
    "GlobalSection", "Link", "LinkInfo", "links", "Cgroup", "RingBuffer",
    "Feature", "Features", "features",
    "BpfError", "PermissionDeniedError", "NotSupportedError", "BusyError", "ObjectFileError",
    "NotFoundError", "MapNotFoundError", "ProgramNotFoundError", "VariableNotFoundError",
    "KeyNotFoundError", "NoStructOpsError", "ClosedError", "VerifierError",
    "InvalidValueError", "CgroupError", "StateError", "__version__",
]
