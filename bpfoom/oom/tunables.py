"""Tunables, and the one way an object file becomes a loaded struct_ops object.

A tunable is a global of the object (``.rodata``/``.data``/``.bss``).  A
policy built with ``policy_meta.h`` *declares* its tunables in its own
object (:mod:`bpfoom.oom.meta`): a doc and optionally an inclusive range; the
type and default are the global's own.  :func:`declared_tunables` turns that
into :class:`TunableInfo`, for the catalogue (``bpfoom policies``) and for
every write: a value outside a declared range raises InvalidValueError naming
the range, at load and while attached alike, whether the object was loaded by
name or by path.

:meth:`bpfoom.OomPolicy.load` / :meth:`bpfoom.PsiHandler.load` and the
command line's and daemon's loader (:func:`bpfoom.oom.loader.load`) all go
through :func:`load_object`: open, pick the struct_ops map, set the tunables
(checked before anything reaches the kernel), let the caller adjust the
rest, load, and close the object again if any step fails.  The
:class:`Tunables` it returns is how the loaded object's tunables are read and
written afterwards.
"""

from __future__ import annotations

import difflib
import errno
import re
from decimal import Decimal
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..bpf.errors import InvalidValueError, NotFoundError, ObjectFileError, VariableNotFoundError
from ..bpf.globals import GlobalSection
from ..bpf.object import BpfObject
from ..bpf.struct_ops import StructOpsMap
from .meta import META_SECTION, Declaration, Meta, read_meta

__all__ = ["TunableInfo", "Tunables", "suggest", "convert_text", "parse_size", "global_sections",
           "declared_tunables", "load_object"]

_SECTIONS = ("rodata", "data", "bss")


@dataclass(frozen=True)
class TunableInfo:
    """One declared tunable: C type, default value, what it does, when it can change, its range."""

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
        if self.minimum is None or self.maximum is None or isinstance(value, bool) \
                or not isinstance(value, int):
            return
        if not self.minimum <= value <= self.maximum:
            raise InvalidValueError(errno.EINVAL, f"tunable {self.name!r} of {owner} takes "
                                    f"{self.minimum}..{self.maximum} (inclusive); {value} is "
                                    "outside that range")


def suggest(word: str, choices: Iterable[str]) -> str:
    """' (did you mean X?)' for the closest of ``choices``, or ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT])(?:i?B)?", re.IGNORECASE)


def parse_size(text: str) -> int:
    """An integer as operators write sizes: ``4096``, ``0x1000``, ``16M``, ``1.5GiB``, ``64k``.

    K, M, G and T (with or without ``iB``/``B``) are powers of 1024, as in
    systemd's MemoryMax=; a fraction is rounded down to whole bytes.
    """
    stripped = text.strip()
    try:
        return int(stripped, 0)
    except ValueError:
        pass
    found = _SIZE.fullmatch(stripped)
    if found is None:
        raise ValueError(f"{text!r} is not a number or size: give an integer (4096, 0x1000) or a "
                         "size with K, M, G or T (16M, 1.5GiB; powers of 1024)")
    return int(Decimal(found[1]) * 1024 ** ("KMGT".index(found[2].upper()) + 1))


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
        return parse_size(text)
    if isinstance(like, float):
        return float(text)
    return text


def _expected(like: Any) -> str:
    """What to give for a variable whose value is ``like``, in words (not a Python type name)."""
    if isinstance(like, bool):
        return "true or false"
    if isinstance(like, int):
        return "an integer (4096, 0x1000, 16M)"
    if isinstance(like, float):
        return "a number (0.5)"
    return "text"


def global_sections(obj: BpfObject) -> list[GlobalSection]:
    """The object's .rodata/.data/.bss sections that exist, in that order."""
    found: list[GlobalSection] = []
    for name in _SECTIONS:
        try:
            found.append(getattr(obj, name))
        except NotFoundError:
            pass
    return found


def _tunable(name: str, declared: Declaration, sections: list[GlobalSection],
             path: Path) -> TunableInfo:
    """A declared tunable, typed by its global; ObjectFileError if the object contradicts itself."""
    section = next((sec for sec in sections if name in sec), None)
    if section is None:
        raise ObjectFileError(errno.EINVAL, f"{path} declares tunable {name!r} in {META_SECTION} "
                              "but has no such global; rebuild it")
    type_name = section.type_name(name)
    info = TunableInfo(name, type_name, section[name], declared.doc, section.section,
                       declared.minimum, declared.maximum)
    if info.minimum is not None and info.maximum is not None:
        if info.minimum > info.maximum:
            raise ObjectFileError(errno.EINVAL, f"{path}: tunable {name!r} has an empty range "
                                  f"{info.minimum}..{info.maximum}")
        try:
            info.check(info.default, str(path))
        except InvalidValueError as err:
            raise ObjectFileError(errno.EINVAL, f"{path}: its default is out of range: {err}"
                                  ) from None
    return info


def declared_tunables(obj: BpfObject, path: Path, meta: Meta | None = None
                      ) -> dict[str, TunableInfo]:
    """The tunables the object at ``path`` (open, not yet loaded) declares ({} for none).

    ``meta`` is its :func:`~bpfoom.oom.meta.read_meta`, read here if not given.
    """
    meta = read_meta(obj.btf, path) if meta is None else meta
    sections = global_sections(obj)
    return {name: _tunable(name, declared, sections, path)
            for name, declared in meta.tunables.items()}


class Tunables:
    """The tunables of one object, as :func:`load_object` set them up.

    ``declared`` are what the object declares (their ranges hold for every
    write); with ``only_declared`` (a catalogued policy, loaded by name) they
    are the only names taken, otherwise every global is a tunable.
    """

    def __init__(self, obj: BpfObject, label: str, declared: dict[str, TunableInfo], *,
                 only_declared: bool) -> None:
        self.object = obj
        self.label = label
        self.declared = declared
        self._only_declared = only_declared

    def names(self) -> list[str]:
        if self._only_declared:
            return list(self.declared)
        return [name for section in global_sections(self.object) for name in section]

    def section(self, name: str) -> GlobalSection:
        """The global section holding tunable ``name``; VariableNotFoundError with a close match."""
        names = self.names()
        if name not in names:
            raise VariableNotFoundError(errno.ENOENT, f"{self.label} has no tunable {name!r}"
                                        f"{suggest(name, names)}; its tunables: "
                                        f"{', '.join(names) or 'none'}")
        return next(sec for sec in global_sections(self.object) if name in sec)

    def write(self, name: str, value: Any, *, text: bool = False) -> GlobalSection:
        """Set tunable ``name`` (``text``: a str converted to the global's type) within its range.

        Returns the section written (the caller decides beforehand whether a
        .rodata write is allowed; the object layer refuses one after load).
        """
        section = self.section(name)
        if text and isinstance(value, str):
            current = section[name]
            if not isinstance(current, str):
                try:
                    value = convert_text(value, current)
                except ValueError as exc:
                    advice = "" if isinstance(current, int) else f"; give {_expected(current)}"
                    raise InvalidValueError(errno.EINVAL, f"cannot set tunable {name!r} of "
                                            f"{self.label}: {exc}{advice}") from None
        if isinstance(value, bool) and not isinstance(section[name], bool):
            raise InvalidValueError(errno.EINVAL, f"cannot set tunable {name!r} of {self.label}: "
                                    f"{str(value).lower()}: true or false is not a number; give "
                                    f"{_expected(section[name])}")
        if name in self.declared:
            self.declared[name].check(value, self.label)
        section[name] = value
        return section


def load_object(path: Path, label: str, pick: Callable[[BpfObject], StructOpsMap],
                tunables: dict[str, Any], *, only_declared: bool = False, text: bool = False,
                prepare: Callable[[BpfObject, StructOpsMap], None] | None = None
                ) -> tuple[BpfObject, StructOpsMap, Tunables]:
    """Open ``path``, pick its struct_ops map, set ``tunables``, ``prepare``, load.

    With ``only_declared`` (a catalogued policy) only the tunables the object
    declares are taken (default: every global); with ``text`` a str value is
    converted to the global's type (command line, configuration file).  An
    unknown name raises VariableNotFoundError with the close match, a value
    outside a declared range InvalidValueError naming the range.
    """
    obj = BpfObject.open(path)
    try:
        ops = pick(obj)
        known = Tunables(obj, label, declared_tunables(obj, path), only_declared=only_declared)
        for name, value in tunables.items():
            known.write(name, value, text=text)
        if prepare is not None:
            prepare(obj, ops)
        obj.load()
        return obj, ops, known
    except BaseException:
        obj.close()
        raise
