"""The policy catalogue: which policies exist, where their objects are, and what they take.

Shipped policies are package data (``bpfoom/oom/policies/*.bpf.o``), found
through :mod:`importlib.resources`; the directories of
``$BPFOOM_POLICY_PATH`` are searched first, so a user's own policy objects
are listed, and loaded by name, the same way.  :func:`policies` describes
each one from its object alone (no source needed, so it works from a wheel):

* the description and the tunables (doc, optional range) are what the source
  declared with ``policy_meta.h`` (:mod:`bpfoom.oom.meta`); a tunable's type
  and default are its global's BTF type and initial value
  (:func:`bpfoom.oom.tunables.declared_tunables`).  ``.rodata`` ones
  (``const volatile``) can only be set at load, ``.data``/``.bss`` ones also
  while attached (:meth:`bpfoom.OomPolicy.set`);
* ``requires`` names the kernel features (see :func:`bpfoom.features`) the
  object needs: its struct_ops type and every kfunc it calls.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import functools
import os
import threading
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..bpf.btf import Kind
from ..bpf.errors import NotFoundError, ObjectFileError
from ..bpf.object import BpfObject
from ..bpf.struct_ops import StructOpsMap
from .features import KFUNCS, POLICY_KINDS
from .meta import read_meta
from .tunables import TunableInfo, declared_tunables, suggest

__all__ = ["PolicyInfo", "policies", "policy_info", "policy_dirs", "get_include", "describe",
           "policy_map", "POLICY_PATH_ENV"]

POLICY_PATH_ENV = "BPFOOM_POLICY_PATH"
_SUFFIX = ".bpf.o"


@dataclass(frozen=True)
class PolicyInfo:
    """A policy object: name, path, kind ("oom" or "psi"), tunables, needed kernel features."""

    name: str
    path: Path
    kind: str
    description: str
    tunables: dict[str, TunableInfo] = field(default_factory=dict)
    requires: tuple[str, ...] = ()


# -- where policies are ------------------------------------------------------------

_files = contextlib.ExitStack()
atexit.register(_files.close)


@functools.cache
def _data_dir(name: str) -> Path:
    """A directory of this package's data as a file-system path (extracted if zipped)."""
    resource = resources.files(__package__ or __name__) / name
    if isinstance(resource, Path):
        return resource
    return _files.enter_context(resources.as_file(resource))


def get_include() -> str:
    """The directory of the headers for writing policies (``clang -I``), like numpy's.

    It holds ``policy_meta.h`` (description, tunables, ranges), ``policy_event.h``
    (decision events), the other ``policy_*.h`` helpers, ``bpfoom_kernel.h``
    (the kernel types) and libbpf's ``<bpf/bpf_helpers.h>`` and friends (copied
    from the libbpf bpfoom was built with).
    """
    return str(_data_dir("include"))


def policy_dirs() -> list[Path]:
    """Where policies are looked up, in order: $BPFOOM_POLICY_PATH, then the shipped ones."""
    dirs = [Path(p) for p in os.environ.get(POLICY_PATH_ENV, "").split(os.pathsep) if p]
    return [*dirs, _data_dir("policies")]


def _objects() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for directory in policy_dirs():
        for path in sorted(directory.glob(f"*{_SUFFIX}")):
            found.setdefault(path.name[: -len(_SUFFIX)], path)
    return found


# -- what an object says about itself -----------------------------------------------

def policy_map(obj: BpfObject, path: Path) -> tuple[str, StructOpsMap]:
    """(kind, map) of the object's one OOM/PSI struct_ops map."""
    found = [(kind, ops) for ops in obj.struct_ops.values()
             if (kind := POLICY_KINDS.get(ops.struct_name)) is not None]
    if len(found) != 1:
        raise ObjectFileError(errno.EINVAL, f"{path} has {len(found)} bpf_oom_ops/bpf_psi_ops "
                              "struct_ops maps; a policy object needs exactly one")
    return found[0]


def describe(obj: BpfObject, path: Path, name: str | None = None) -> PolicyInfo:
    """What a policy object (open, not yet loaded) says about itself."""
    kind, ops = policy_map(obj, path)
    meta = read_meta(obj.btf, path)
    requires = [ops.struct_name, *(f"kfunc:{k}" for k in KFUNCS
                                   if obj.btf.find(k, Kind.FUNC) is not None)]
    name = name if name is not None else path.name.removesuffix(_SUFFIX)
    return PolicyInfo(name, path, kind, meta.description, declared_tunables(obj, path, meta),
                      tuple(requires))


def _describe(name: str, path: Path) -> PolicyInfo:
    with BpfObject.open(path) as obj:
        return describe(obj, path, name)


_cache: dict[tuple[str, float], PolicyInfo] = {}
_cache_lock = threading.Lock()


def _info_for(name: str, path: Path) -> PolicyInfo:
    key = (str(path), path.stat().st_mtime)
    with _cache_lock:
        if key not in _cache:
            _cache[key] = _describe(name, path)
        return _cache[key]


def policies() -> list[PolicyInfo]:
    """Every policy (first found per name along :func:`policy_dirs`), by name."""
    return [_info_for(name, path) for name, path in sorted(_objects().items())]


def policy_info(name: str) -> PolicyInfo:
    """The policy called ``name``; NotFoundError naming the close match otherwise."""
    objects = _objects()
    if name not in objects:
        raise NotFoundError(errno.ENOENT, f"no policy is called {name!r}"
                            f"{suggest(name, objects)}; known: {', '.join(sorted(objects)) or 'none'}"
                            f" (searched {', '.join(map(str, policy_dirs()))}; "
                            f"${POLICY_PATH_ENV} adds directories); or give a .bpf.o path")
    return _info_for(name, objects[name])
