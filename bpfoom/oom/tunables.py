"""Tunables, and the one way an object file becomes a loaded struct_ops object.

:meth:`bpfoom.OomPolicy.load` / :meth:`bpfoom.PsiHandler.load` and the
command line's and daemon's loader (:func:`bpfoom.oom.loader.load`) all go
through :func:`load_object`: open, pick the struct_ops map, set the tunables
(the object's ``.rodata``/``.data``/``.bss`` globals, checked before anything
reaches the kernel), let the caller adjust the rest, load, and close the
object again if any step fails.
"""

from __future__ import annotations

import difflib
import errno
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..bpf.errors import InvalidValueError, NotFoundError, VariableNotFoundError
from ..bpf.object import BpfObject
from ..bpf.struct_ops import StructOpsMap

__all__ = ["suggest", "convert_text", "global_sections", "tunable_section", "set_tunable",
           "load_object"]

_SECTIONS = ("rodata", "data", "bss")


def suggest(word: str, choices: Iterable[str]) -> str:
    """' (did you mean X?)' for the closest of ``choices``, or ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


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


def global_sections(obj: BpfObject) -> list:
    """The object's .rodata/.data/.bss sections that exist, in that order."""
    found = []
    for name in _SECTIONS:
        try:
            found.append(getattr(obj, name))
        except NotFoundError:
            pass
    return found


def tunable_section(obj: BpfObject, label: str, name: str, known: Iterable[str] | None = None):
    """The global section holding tunable ``name``; VariableNotFoundError with the close match.

    ``known`` limits the tunables to those names (default: every global).
    """
    sections = global_sections(obj)
    names = [n for section in sections for n in section] if known is None else list(known)
    if name not in names:
        raise VariableNotFoundError(errno.ENOENT, f"{label} has no tunable {name!r}"
                                    f"{suggest(name, names)}; its tunables: "
                                    f"{', '.join(names) or 'none'}")
    return next(section for section in sections if name in section)


def set_tunable(obj: BpfObject, label: str, name: str, value: Any,
                known: Iterable[str] | None = None, text: bool = False) -> None:
    """Set one tunable of an opened object: its name, type and range are checked here.

    With ``text`` a str value is converted to the global's type, as ``--set``
    text is; InvalidValueError names the tunable and the type wanted.
    """
    section = tunable_section(obj, label, name, known)
    if text and isinstance(value, str):
        current = section[name]
        if not isinstance(current, str):
            try:
                value = convert_text(value, current)
            except ValueError as exc:
                raise InvalidValueError(errno.EINVAL, f"cannot set tunable {name!r} of "
                                        f"{label}: {exc}; give a {type(current).__name__}"
                                        ) from None
    section[name] = value


def _set_tunables(obj: BpfObject, label: str, tunables: dict[str, Any],
                  known: Iterable[str] | None, text: bool) -> None:
    for name, value in tunables.items():
        set_tunable(obj, label, name, value, known, text)


def load_object(path: Path, label: str, pick: Callable[[BpfObject], StructOpsMap],
                tunables: dict[str, Any], *, known: Iterable[str] | None = None,
                text: bool = False,
                prepare: Callable[[BpfObject, StructOpsMap], None] | None = None
                ) -> tuple[BpfObject, StructOpsMap]:
    """Open ``path``, pick its struct_ops map, set ``tunables``, ``prepare``, load.

    ``known`` limits the tunables to those names (a shipped policy's
    documented ones; default: every global); with ``text`` a str value is
    converted to the global's type (command line, configuration file).  An
    unknown name raises VariableNotFoundError with the close match.
    """
    obj = BpfObject.open(path)
    try:
        ops = pick(obj)
        _set_tunables(obj, label, tunables, known, text)
        if prepare is not None:
            prepare(obj, ops)
        obj.load()
        return obj, ops
    except BaseException:
        obj.close()
        raise
