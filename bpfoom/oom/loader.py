"""From text to an attachable policy: what the command line and the daemon share.

Both start from a *source*, a shipped policy name (``largest_leaf``) or the
path of any ``.bpf.o`` with a link-based struct_ops map, and from tunables
given as text (``--set KEY=VALUE``) or as TOML values.  OOM and PSI policies
go through :class:`bpfoom.OomPolicy` / :class:`bpfoom.PsiHandler`; any other
struct_ops object (a ``tcp_congestion_ops`` for instance) is loaded through
the object layer, its tunables being its ``.rodata``/``.data``/``.bss``
globals.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

from ..bpf.errors import BpfError, InvalidValueError, NotFoundError, StateError, VariableNotFoundError
from ..bpf.link import Link
from ..bpf.struct_ops import StructOpsMap
from ..bpf.object import BpfObject
from .catalogue import KINDS, policies, suggest

__all__ = ["LoadedPolicy", "load", "parse_assignment", "suggest"]

_SECTIONS = ("rodata", "data", "bss")


def parse_assignment(text: str) -> tuple[str, str]:
    """Split ``KEY=VALUE``; ValueError says what the form is."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"{text!r} is not KEY=VALUE (e.g. --set threshold_mb=64)")
    return key.strip(), value


def convert_text(text: str, like: Any) -> Any:
    """``text`` as a value of the same kind as ``like`` (the variable's current value)."""
    if isinstance(like, bool):
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{text!r} is not a boolean (use true or false)")
    if isinstance(like, int):
        return int(text.strip(), 0)
    if isinstance(like, float):
        return float(text)
    return text


def _is_path(source: str) -> bool:
    return source.endswith(".o") or os.sep in source


def _shipped() -> dict[str, Any]:
    """Catalogued policy name -> PolicyInfo."""
    return {info.name: info for info in policies()}


def _inspect(path: Path) -> tuple[dict[str, str], dict[str, Any]]:
    """(link-based struct_ops map -> struct name, global -> initial value), without loading."""
    with BpfObject.open(path) as obj:
        kinds = {name: m.struct_name for name, m in obj.struct_ops.items() if m.is_link}
        return kinds, _globals(obj)


def _globals(obj: BpfObject) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for section in _SECTIONS:
        globals_ = _section(obj, section)
        for key in globals_ or ():
            values.setdefault(key, globals_[key])
    return values


class LoadedPolicy:
    """A loaded policy or struct_ops object and the one struct_ops map it attaches."""

    def __init__(self, source: str, kind: str, obj: BpfObject, ops: StructOpsMap,
                 policy: Any = None) -> None:
        self.source = source
        self.kind = kind  # "oom", "psi", or the struct name of another struct_ops
        self.object = obj
        self.struct_ops = ops
        self.policy = policy  # the OomPolicy / PsiHandler, None for other struct_ops

    @property
    def name(self) -> str:
        """The name the kernel registers (the struct_ops ``name`` field when there is one)."""
        if self.policy is not None:
            return self.policy.name
        fields = self.struct_ops.fields
        return str(fields["name"]) if "name" in fields else self.struct_ops.name

    def attach(self, cgroup: str | os.PathLike | None = None,
               pin: str | os.PathLike | None = None) -> Link:
        """Attach (and pin); on a failed pin nothing stays attached."""
        if self.policy is not None:
            return self.policy.attach(cgroup=cgroup, pin=pin)
        link = self.struct_ops.attach(cgroup)
        if pin is not None:
            try:
                link.pin(pin)
            except BaseException:
                link.close()
                raise
        return link

    def set(self, key: str, value: Any) -> None:
        """Change a tunable of the loaded object (``.data``/``.bss`` only; .rodata is frozen)."""
        if self.policy is not None:
            self.policy.set(key, value)
            return
        for section in ("data", "bss"):
            globals_ = _section(self.object, section)
            if globals_ is not None and key in globals_:
                globals_[key] = value
                return
        raise StateError(errno.EROFS, f"tunable {key!r} cannot change after load; reload the "
                         "policy to change it")

    def mutable(self, key: str) -> bool:
        """Whether ``set(key)`` can change the tunable in place (it lives in .data/.bss)."""
        return any(key in (_section(self.object, s) or ()) for s in ("data", "bss"))

    def current(self, key: str) -> Any:
        """A global's value as the kernel sees it now."""
        return _globals(self.object).get(key)

    def close(self) -> None:
        """Close the object (and policy); links already attached stay with their owners."""
        if self.policy is not None:
            self.policy.close()
        self.object.close()


def _section(obj: BpfObject, name: str):
    try:
        return getattr(obj, name)
    except NotFoundError:
        return None


def _tunable_values(tunables: dict[str, Any], current: dict[str, Any], where: str) -> dict[str, Any]:
    """Text values converted like the current values; unknown names suggest the close one."""
    out = {}
    for key, value in tunables.items():
        if key not in current:
            known = sorted(current)
            raise VariableNotFoundError(
                errno.ENOENT, f"{where} has no tunable {key!r}{suggest(key, known)}; "
                f"it has: {', '.join(known) or 'none'}")
        if isinstance(value, str) and not isinstance(current[key], str):
            try:
                value = convert_text(value, current[key])
            except ValueError as exc:
                raise InvalidValueError(errno.EINVAL, f"cannot set tunable {key!r} of {where}: "
                                        f"{exc}; give a {type(current[key]).__name__}") from None
        out[key] = value
    return out


def _load_object(source: str, path: Path, map_name: str | None, tunables: dict[str, Any],
                 register_as: str | None) -> LoadedPolicy:
    obj = BpfObject.open(path)
    try:
        links = [n for n, m in obj.struct_ops.items() if m.is_link]
        if map_name is None:
            if len(links) != 1:
                raise NotFoundError(errno.ENOENT, f"{source!r} has {len(links)} link-based struct_ops "
                                    f"maps ({', '.join(links) or 'none'}); choose one with --map "
                                    "(map = ... in a config)")
            map_name = links[0]
        elif map_name not in links:
            raise NotFoundError(errno.ENOENT, f"{source!r} has no link-based struct_ops map "
                                f"{map_name!r}{suggest(map_name, links)}; it has: "
                                f"{', '.join(links) or 'none'}")
        ops = obj.struct_ops[map_name]
        homes: dict[str, Any] = {}
        for section in _SECTIONS:
            for key in _section(obj, section) or ():
                homes.setdefault(key, _section(obj, section))
        for key, value in _tunable_values(tunables, _globals(obj), repr(source)).items():
            homes[key][key] = value
        if register_as is not None:
            ops.fields["name"] = register_as
        obj.load()
        return LoadedPolicy(source, ops.struct_name, obj, ops)
    except BaseException:
        obj.close()
        raise


def is_known_source(source: str, where: str = "") -> None:
    """NotFoundError (with the close match) unless ``source`` is a shipped policy or a file."""
    shipped = _shipped()
    prefix = f"{where}: " if where else ""
    if not _is_path(source):
        if source not in shipped:
            raise NotFoundError(errno.ENOENT, f"{prefix}unknown policy {source!r}"
                                f"{suggest(source, list(shipped))}; run `bpfoom policies` for the "
                                "shipped ones, or give the path of a .bpf.o file")
    elif not Path(source).is_file():
        raise NotFoundError(errno.ENOENT, f"{prefix}BPF object {source!r} does not exist; check "
                            "the path (or run `bpfoom policies` for the shipped policy names)")


def load(source: str, tunables: dict[str, Any] | None = None, *, map_name: str | None = None,
         register_as: str | None = None) -> LoadedPolicy:
    """Load ``source`` (a shipped policy name or a .bpf.o path) with ``tunables``.

    Text values are converted to the tunable's type; ``register_as`` renames
    the struct_ops (its ``name`` field) before load.
    """
    tunables = dict(tunables or {})
    is_known_source(source)
    shipped = _shipped()
    if not _is_path(source):
        info = shipped[source]
        return _load_policy(source, info.kind, info.path, tunables, info, register_as)
    path = Path(source)
    kinds, initial = _inspect(path)
    policy_kinds = {KINDS[k] for k in kinds.values() if k in KINDS}
    if len(policy_kinds) == 1:
        typed = _tunable_values(tunables, initial, repr(source))
        return _load_policy(source, policy_kinds.pop(), path, typed, None, register_as)
    return _load_object(source, path, map_name, tunables, register_as)


def _load_policy(source: str, kind: str, path: Path, tunables: dict[str, Any], info: Any,
                 register_as: str | None) -> LoadedPolicy:
    from . import policy as policy_api

    if info is not None:
        typed = {name: t.default for name, t in info.tunables.items()}
        tunables = _tunable_values(tunables, typed, f"policy {source!r}")
    cls = policy_api.OomPolicy if kind == "oom" else policy_api.PsiHandler
    if register_as is not None:
        raise BpfError(errno.EINVAL, f"policy {source!r} cannot be renamed; load one copy per "
                       "target instead of --name")
    loaded = cls.load(str(path) if info is None else source, **tunables)
    ops = next(m for m in loaded.object.struct_ops.values() if m.is_link)
    return LoadedPolicy(source, kind, loaded.object, ops, loaded)
