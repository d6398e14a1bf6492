"""The policy catalogue: which policies exist, where their objects are, and what they take.

Shipped policies are package data (``bpfoom/oom/policies/*.bpf.o``), found
through :mod:`importlib.resources`; the directories of
``$BPFOOM_POLICY_PATH`` are searched first, so a user's own policy objects
are listed, and loaded by name, the same way.  :func:`policies` describes
each one:

* the description is the first paragraph of the source's top comment after
  ``<name>:``;
* tunables are the globals preceded by a ``/* tunable: <doc> */`` comment:
  ``.rodata`` ones (``const volatile``) can only be set at load, ``.data``
  ones also while attached (:meth:`bpfoom.OomPolicy.set`);
* ``requires`` names the kernel features (see :func:`bpfoom.features`) the
  object needs: its struct_ops type and every kfunc it calls.
"""

from __future__ import annotations

import atexit
import contextlib
import difflib
import errno
import os
import re
import threading
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..bpf.btf import Kind
from ..bpf.errors import NotFoundError, ObjectFileError
from ..bpf.globals import GlobalSection
from ..bpf.object import BpfObject
from ..bpf.struct_ops import StructOpsMap
from .features import KFUNCS

__all__ = ["PolicyInfo", "TunableInfo", "policies", "policy_info", "policy_dirs",
           "policy_map", "global_sections", "suggest", "POLICY_PATH_ENV", "KINDS"]

POLICY_PATH_ENV = "BPFOOM_POLICY_PATH"
KINDS = {"bpf_oom_ops": "oom", "bpf_psi_ops": "psi"}
_SUFFIX = ".bpf.o"

_TUNABLE = re.compile(
    r"/\*\s*tunable:\s*(?P<doc>.*?)\s*\*/\s*"
    r"(?:const\s+volatile\s+)?[A-Za-z_][\w ]*?\s+(?P<name>[A-Za-z_]\w*)"
    r"\s*(?:\[[^\]]*\])?\s*(?:=[^;]*)?;", re.S)


@dataclass(frozen=True)
class TunableInfo:
    """One tunable global: C type, default value, what it does, and when it can change."""

    name: str
    type_name: str
    default: Any
    doc: str
    section: str  # ".rodata": only at load; ".data"/".bss": also while attached

    @property
    def settable_after_load(self) -> bool:
        return self.section != ".rodata"


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


def _shipped_dir() -> Path:
    """The package's policies directory as a file-system path (extracted if zipped)."""
    resource = resources.files(__package__) / "policies"
    if isinstance(resource, Path):
        return resource
    return _files.enter_context(resources.as_file(resource))


def policy_dirs() -> list[Path]:
    """Where policies are looked up, in order: $BPFOOM_POLICY_PATH, then the shipped ones."""
    dirs = [Path(p) for p in os.environ.get(POLICY_PATH_ENV, "").split(os.pathsep) if p]
    return [*dirs, _shipped_dir()]


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


def _description(source: str, name: str) -> str:
    """The paragraph after ``<name>:`` in the top comment (empty if absent)."""
    match = re.search(rf"/\*.*?\*\s*{re.escape(name)}:\s*(.*?)(?:\n\s*\*\s*\n|\*/)", source, re.S)
    if not match:
        return ""
    return " ".join(part.strip(" *") for part in match.group(1).splitlines()).strip()


def _describe(name: str, path: Path) -> PolicyInfo:
    """Read a policy's metadata from its object (types, defaults) and source (docs)."""
    source_path = path.with_name(f"{name}.bpf.c")
    source = source_path.read_text() if source_path.exists() else ""
    with BpfObject.open(path) as obj:
        kind, ops = policy_map(obj, path)
        sections = {sec.section: sec for sec in global_sections(obj)}
        tunables = {}
        for match in _TUNABLE.finditer(source):
            var = match.group("name")
            section = next((s for s in sections.values() if var in s), None)
            if section is None:
                raise ObjectFileError(errno.EINVAL, f"{source_path} documents tunable {var!r} but "
                                      f"{path} has no such global; rebuild it (tools/build_bpf.py)")
            type_name = section._vars[var][1].label  # the BTF spelling, e.g. __u64[16]
            tunables[var] = TunableInfo(var, type_name, section[var],
                                        " ".join(match.group("doc").split()), section.section)
        requires = [ops.struct_name, *(f"kfunc:{k}" for k in KFUNCS
                                       if obj._btf.find(k, Kind.FUNC) is not None)]
    return PolicyInfo(name, path, kind, _description(source, name), tunables, tuple(requires))


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
