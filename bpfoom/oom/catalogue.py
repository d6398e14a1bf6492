"""The policy catalogue: which policies exist, where their objects are, and what they take.

Shipped policies are package data (``bpfoom/oom/policies/*.bpf.o``), found
through :mod:`importlib.resources`; the directories of
``$BPFOOM_POLICY_PATH`` are searched first, so a user's own policy objects
are listed, and loaded by name, the same way.  :func:`policies` describes
each one from its object alone (no source needed):

* the description and the tunables (doc, optional range) are what the source
  declared with ``policy_meta.h`` (:mod:`bpfoom.oom.meta`); a tunable's type
  and default are its global's BTF type and initial value.  ``.rodata`` ones
  (``const volatile``) can only be set at load, ``.data``/``.bss`` ones also
  while attached (:meth:`bpfoom.OomPolicy.set`);
* ``requires`` names the kernel features (see :func:`bpfoom.features`) the
  object needs: its struct_ops type and every kfunc it calls.
"""

from __future__ import annotations

import atexit
import contextlib
import difflib
import errno
import functools
import os
import threading
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..bpf.btf import Kind
from ..bpf.errors import InvalidValueError, NotFoundError, ObjectFileError
from ..bpf.globals import GlobalSection
from ..bpf.object import BpfObject
from ..bpf.struct_ops import StructOpsMap
from .features import KFUNCS
from .meta import DESCRIPTION, META_SECTION, TUNABLE_PREFIX, read_meta

__all__ = ["PolicyInfo", "TunableInfo", "policies", "policy_info", "policy_dirs", "get_include",
           "describe", "policy_map", "global_sections", "suggest", "POLICY_PATH_ENV", "KINDS"]

POLICY_PATH_ENV = "BPFOOM_POLICY_PATH"
KINDS = {"bpf_oom_ops": "oom", "bpf_psi_ops": "psi"}
_SUFFIX = ".bpf.o"

@dataclass(frozen=True)
class TunableInfo:
    """One tunable global: C type, default value, what it does, and when it can change."""

    name: str
    type_name: str
    default: Any
    doc: str
    section: str  # ".rodata": only at load; ".data"/".bss": also while attached
    minimum: int | None = None  # the inclusive range the policy declared, if any
    maximum: int | None = None

    @property
    def settable_after_load(self) -> bool:
        return self.section != ".rodata"

    def check(self, value: Any, owner: str) -> None:
        """InvalidValueError naming the range if ``value`` is outside it (types are the codec's)."""
        if self.minimum is None or isinstance(value, bool) or not isinstance(value, int):
            return
        if not self.minimum <= value <= self.maximum:
            raise InvalidValueError(errno.EINVAL, f"tunable {self.name!r} of {owner} takes "
                                    f"{self.minimum}..{self.maximum} (inclusive); {value} is "
                                    "outside that range")


@dataclass(frozen=True)
class PolicyInfo:
    """A policy object: name, path, kind ("oom" or "psi"), tunables, needed kernel features."""

    name: str
    path: Path
    kind: str
    description: str
    tunables: dict[str, TunableInfo] = field(default_factory=dict)
    requires: tuple[str, ...] = ()


def suggest(word: str, choices) -> str:
    """" (did you mean 'x'?)" for the closest choice, or ""."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# -- where policies are ------------------------------------------------------------

_files = contextlib.ExitStack()
atexit.register(_files.close)


@functools.cache
def _data_dir(name: str) -> Path:
    """A directory of this package's data as a file-system path (extracted if zipped)."""
    resource = resources.files(__package__) / name
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

def global_sections(obj: BpfObject) -> list[GlobalSection]:
    """The object's .rodata/.data/.bss sections that exist."""
    found = []
    for name in ("rodata", "data", "bss"):
        try:
            found.append(getattr(obj, name))
        except NotFoundError:
            pass
    return found


def policy_map(obj: BpfObject, path: Path) -> tuple[str, StructOpsMap]:
    """(kind, map) of the object's one OOM/PSI struct_ops map."""
    found = [(kind, ops) for ops in obj.struct_ops.values()
             if (kind := KINDS.get(ops.struct_name)) is not None]
    if len(found) != 1:
        raise ObjectFileError(errno.EINVAL, f"{path} has {len(found)} bpf_oom_ops/bpf_psi_ops "
                              "struct_ops maps; a policy object needs exactly one")
    return found[0]


def _tunable(name: str, declared: Any, sections: list[GlobalSection], path: Path) -> TunableInfo:
    """A declared tunable, typed by its global; ObjectFileError if the object contradicts itself."""
    section = next((sec for sec in sections if name in sec), None)
    if section is None:
        raise ObjectFileError(errno.EINVAL, f"{path} declares tunable {name!r} in {META_SECTION} "
                              "but has no such global; rebuild it")
    type_name = section._vars[name][1].label  # the BTF spelling, e.g. __u64[16]
    if isinstance(declared, str):
        return TunableInfo(name, type_name, section[name], declared, section.section)
    info = TunableInfo(name, type_name, section[name], declared["doc"], section.section,
                       declared["min"], declared["max"])
    if info.minimum > info.maximum:
        raise ObjectFileError(errno.EINVAL, f"{path}: tunable {name!r} has an empty range "
                              f"{info.minimum}..{info.maximum}")
    try:
        info.check(info.default, str(path))
    except InvalidValueError as err:
        raise ObjectFileError(errno.EINVAL, f"{path}: its default is out of range: {err}") from None
    return info


def describe(obj: BpfObject, path: Path, name: str | None = None) -> PolicyInfo:
    """What a policy object (open, not yet loaded) says about itself."""
    kind, ops = policy_map(obj, path)
    meta = read_meta(obj._btf, path)
    sections = global_sections(obj)
    tunables = {var[len(TUNABLE_PREFIX):]: _tunable(var[len(TUNABLE_PREFIX):], value, sections, path)
                for var, value in meta.items() if var.startswith(TUNABLE_PREFIX)}
    requires = [ops.struct_name, *(f"kfunc:{k}" for k in KFUNCS
                                   if obj._btf.find(k, Kind.FUNC) is not None)]
    name = name if name is not None else path.name.removesuffix(_SUFFIX)
    return PolicyInfo(name, path, kind, meta.get(DESCRIPTION, ""), tunables, tuple(requires))


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
