"""From text to an attachable policy: what the command line and the daemon share.

Both start from a *source*, a catalogued policy name (``largest_leaf``: a
shipped one or one in ``$BPFOOM_POLICY_PATH``) or the path of any ``.bpf.o``
with a link-based struct_ops map, and from tunables given as text (``--set
KEY=VALUE``) or as TOML values.  OOM and PSI policies come back with their
:class:`bpfoom.OomPolicy` / :class:`bpfoom.PsiHandler`; any other struct_ops
object (a ``tcp_congestion_ops`` for instance) is loaded through the object
layer, its tunables being its ``.rodata``/``.data``/``.bss`` globals.  Both
kinds are loaded by :func:`bpfoom.oom.tunables.load_object`, which also
holds every value to the range its object declares.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from collections.abc import Callable
from typing import Any

from ..bpf.lifecycle import Closeable
from ..bpf.errors import BpfError, NotFoundError, StateError
from ..bpf.globals import GlobalSection
from ..bpf.link import Link
from ..bpf.object import BpfObject
from ..bpf.struct_ops import StructOpsMap
from .catalogue import PolicyInfo, policies, policy_map
from .events import events_map
from .features import POLICY_KINDS, features
from .policy import GRANULARITY_MAP, HANDLERS, OomPolicy, PsiHandler
from .tunables import Tunables, convert_text, declared_tunables, global_sections, load_object, suggest

__all__ = ["LoadedPolicy", "load", "parse_assignment", "suggest", "convert_text",
           "is_known_source", "check_source"]


def parse_assignment(text: str) -> tuple[str, str]:
    """Split ``KEY=VALUE``; ValueError says what the form is."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"{text!r} is not KEY=VALUE (e.g. --set threshold_mb=64)")
    return key.strip(), value


def _is_path(source: str) -> bool:
    return source.endswith(".o") or os.sep in source


def _shipped() -> dict[str, PolicyInfo]:
    """Catalogued policy name -> PolicyInfo (the shipped ones and $BPFOOM_POLICY_PATH's)."""
    return {info.name: info for info in policies()}


def _globals(obj: BpfObject) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for section in global_sections(obj):
        for key in section:
            values.setdefault(key, section[key])
    return values


def _mutable_sections(obj: BpfObject) -> list[GlobalSection]:
    return [section for section in global_sections(obj) if section.section != ".rodata"]


class LoadedPolicy(Closeable):
    """A loaded policy or struct_ops object and the one struct_ops map it attaches."""

    def __init__(self, source: str, kind: str, obj: BpfObject, ops: StructOpsMap,
                 policy: OomPolicy | PsiHandler | None = None) -> None:
        super().__init__()
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

    def attach(self, cgroup: str | os.PathLike[str] | None = None,
               pin: str | os.PathLike[str] | None = None) -> Link:
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
        for section in _mutable_sections(self.object):
            if key in section:
                section[key] = value
                return
        raise StateError(errno.EBADFD, f"tunable {key!r} cannot change after load; reload the "
                         "policy to change it")

    def mutable(self, key: str) -> bool:
        """Whether ``set(key)`` can change the tunable in place (it lives in .data/.bss)."""
        return any(key in section for section in _mutable_sections(self.object))

    def current(self, key: str) -> Any:
        """A global's value as the kernel sees it now."""
        return _globals(self.object).get(key)

    def release(self, link: Link) -> None:
        """Stop owning ``link`` (see :meth:`OomPolicy.release`): it now runs another object."""
        if self.policy is not None:
            self.policy.release(link)

    @property
    def closed(self) -> bool:
        return self.object.closed

    def _closed_message(self) -> str:
        return f"the policy loaded from {self.source!r} is closed; load it again"

    def _release(self) -> None:
        """Close the object (and policy); links already attached stay with their owners."""
        if self.policy is not None:
            self.policy.close()
        self.object.close()

    def _collected(self) -> None:
        """Nothing: the policy, its links and the object have their own backstops."""


def _link_map(obj: BpfObject, source: str, map_name: str | None) -> StructOpsMap:
    """The link-based struct_ops map ``map_name``, or the only one."""
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
    return obj.struct_ops[map_name]


def is_known_source(source: str, where: str = "") -> None:
    """NotFoundError (with the close match) unless ``source`` is a catalogued policy or a file."""
    shipped = _shipped()
    prefix = f"{where}: " if where else ""
    if not _is_path(source):
        if source not in shipped:
            raise NotFoundError(errno.ENOENT, f"{prefix}unknown policy {source!r}"
                                f"{suggest(source, list(shipped))}; run `bpfoom policies` for the "
                                "known ones ($BPFOOM_POLICY_PATH adds directories), or give "
                                "the path of a .bpf.o file")
    elif not Path(source).is_file():
        raise NotFoundError(errno.ENOENT, f"{prefix}BPF object {source!r} does not exist; check "
                            "the path (or run `bpfoom policies` for the shipped policy names)")


def _pick(source: str, info: PolicyInfo | None, path: Path, map_name: str | None
          ) -> Callable[[BpfObject], StructOpsMap]:
    """How ``load`` and ``check_source`` choose the struct_ops map of an opened object."""
    def pick(obj: BpfObject) -> StructOpsMap:
        if info is not None or (map_name is None and any(
                m.struct_name in POLICY_KINDS for m in obj.struct_ops.values())):
            return policy_map(obj, path)[1]
        return _link_map(obj, source, map_name)
    return pick


def _check_rename(source: str, ops: StructOpsMap, register_as: str | None) -> None:
    if register_as is not None and ops.struct_name in POLICY_KINDS:
        raise BpfError(errno.EINVAL, f"policy {source!r} cannot be renamed; load one copy "
                       "per target instead of --name")


def check_source(source: str, tunables: dict[str, Any] | None = None, *,
                 map_name: str | None = None, register_as: str | None = None,
                 granularity: bool = False) -> list[BpfError]:
    """Every problem ``load`` would meet before it asks the kernel; loads nothing.

    The object is opened (ELF and BTF parsed) and its struct_ops map chosen
    as ``load`` chooses it; each tunable is set on the opened object, which
    checks its name, its type (text is converted like ``--set``) and its
    range (declared by the object, policy_meta.h); ``granularity`` asks for a bpf_oom_ops policy with
    per-cgroup granularity (policy_granularity.h).  Returns the problems, an
    empty list when there are none.
    """
    try:
        is_known_source(source)
    except BpfError as exc:
        return [exc]
    info = None if _is_path(source) else _shipped()[source]
    path = info.path if info is not None else Path(source)
    label = f"policy {source!r}" if info is not None else repr(source)
    problems: list[BpfError] = []
    try:
        obj = BpfObject.open(path)
    except BpfError as exc:
        return [exc]
    with obj:
        try:
            ops = _pick(source, info, path, map_name)(obj)
        except BpfError as exc:
            return [exc]
        try:
            known = Tunables(obj, label, declared_tunables(obj, path),
                             only_declared=info is not None)
        except BpfError as exc:
            return [exc]
        for name, value in (tunables or {}).items():
            try:
                known.write(name, value, text=True)
            except (BpfError, ValueError, TypeError) as exc:
                problems.append(exc if isinstance(exc, BpfError)
                                else BpfError(errno.EINVAL, f"cannot set tunable {name!r} of "
                                              f"{label}: {exc}"))
        try:
            _check_rename(source, ops, register_as)
        except BpfError as exc:
            problems.append(exc)
        if granularity and (ops.struct_name != "bpf_oom_ops" or GRANULARITY_MAP not in obj.maps):
            problems.append(BpfError(errno.EINVAL, f"{label} takes no per-cgroup granularity (it "
                                     f"is not a bpf_oom_ops policy with a `{GRANULARITY_MAP}` map, "
                                     "see policy_granularity.h); remove [attach.granularity]"))
    return problems


def load(source: str, tunables: dict[str, Any] | None = None, *, map_name: str | None = None,
         register_as: str | None = None, ring_size: int | None = None) -> LoadedPolicy:
    """Load ``source`` (a catalogued policy name or a .bpf.o path) with ``tunables``.

    Text values are converted to the tunable's type and checked against the
    range the object declares (policy_meta.h); ``register_as`` renames
    the struct_ops (its ``name`` field) before load; ``ring_size`` sizes the
    decision ring buffer (policy_event.h's ``events``).  An object with an OOM
    policy or PSI handler (and no ``map_name`` choosing another map) comes
    back with its :class:`OomPolicy` / :class:`PsiHandler` in ``policy``.
    """
    is_known_source(source)
    info = None if _is_path(source) else _shipped()[source]
    path = info.path if info is not None else Path(source)

    pick = _pick(source, info, path, map_name)

    def prepare(obj: BpfObject, ops: StructOpsMap) -> None:
        if ring_size is not None:
            events_map(obj, repr(source)).max_entries = ring_size
        _check_rename(source, ops, register_as)
        if ops.struct_name in POLICY_KINDS:
            features().require(ops.struct_name)
        elif register_as is not None:
            ops.fields["name"] = register_as

    label = f"policy {source!r}" if info is not None else repr(source)
    obj, ops, known = load_object(path, label, pick, dict(tunables or {}), text=True,
                                  prepare=prepare, only_declared=info is not None)
    kind = POLICY_KINDS.get(ops.struct_name)
    if kind is None:
        return LoadedPolicy(source, ops.struct_name, obj, ops)
    return LoadedPolicy(source, kind, obj, ops, HANDLERS[kind](obj, ops, info, known))
