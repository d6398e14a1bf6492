"""The BpfError family and the one path from C return codes into it.

libbpf 1.x reports failure as a negative errno (``int`` results) or as NULL
with ``errno`` set (pointer results).  :func:`check` and :func:`check_ptr`
are the only places that turn those into exceptions, so every error a user
sees carries an errno, a sentence saying what to do, and the right subclass.
"""

from __future__ import annotations

import errno as _errno
import os
from typing import Any

__all__ = [
    "BpfError", "PermissionDeniedError", "NotSupportedError", "BatchNotSupportedError", "BusyError",
    "ObjectFileError", "NotFoundError", "PathNotFoundError", "MapNotFoundError",
    "ProgramNotFoundError", "VariableNotFoundError", "KeyNotFoundError", "KeyExistsError",
    "ClosedError", "VerifierError", "InvalidValueError", "InvalidTypeError", "MapFullError",
    "CgroupError",
    "StateError", "check", "check_ptr", "error_from_errno",
]

# The kernel-internal "not supported" code; user space has no name for it.
ENOTSUPP = 524

# libbpf's private error codes (libbpf.h, enum libbpf_errno).
_LIBBPF_ERRNO_NAMES = {
    4000: ("LIBBPF_ERRNO__LIBELF", "libelf could not read the file"),
    4001: ("LIBBPF_ERRNO__FORMAT", "the BPF object format is invalid"),
    4002: ("LIBBPF_ERRNO__KVERSION", "the object's 'version' section is wrong or missing"),
    4003: ("LIBBPF_ERRNO__ENDIAN", "the object was built for the other byte order"),
    4004: ("LIBBPF_ERRNO__INTERNAL", "libbpf hit an internal error"),
    4005: ("LIBBPF_ERRNO__RELOC", "a relocation failed"),
    4006: ("LIBBPF_ERRNO__LOAD", "program load failed for an unknown reason"),
    4007: ("LIBBPF_ERRNO__VERIFY", "the kernel verifier rejected a program"),
    4008: ("LIBBPF_ERRNO__PROG2BIG", "a program is too big"),
    4009: ("LIBBPF_ERRNO__KVER", "the kernel version is wrong"),
    4010: ("LIBBPF_ERRNO__PROGTYPE", "the kernel does not support a program type"),
}

_ADVICE = {
    _errno.EPERM: "run as root or grant CAP_BPF and CAP_PERFMON (and CAP_SYS_ADMIN for struct_ops)",
    _errno.EACCES: "run as root or grant CAP_BPF and CAP_PERFMON (and CAP_SYS_ADMIN for struct_ops)",
    _errno.ENOENT: "check that the path or name exists",
    _errno.EBUSY: "detach whatever already holds this target, or pick another one",
    _errno.EEXIST: "remove the existing pin (or pick another path) first",
    _errno.EOPNOTSUPP: "this kernel lacks the feature; check `bpfoom features`",
    ENOTSUPP: "this kernel lacks the feature; check `bpfoom features`",
    _errno.ENOSYS: "this kernel has no BPF syscall; use a kernel built with CONFIG_BPF_SYSCALL",
    _errno.EINVAL: "the kernel or libbpf rejected an argument; the libbpf log (logger 'bpfoom.libbpf') says which",
    _errno.ENOMEM: "free memory or raise RLIMIT_MEMLOCK",
    _errno.EBADF: "the file descriptor is closed or of the wrong kind",
    _errno.ENOTDIR: "give a cgroup v2 directory",
    _errno.E2BIG: "the value is larger than the kernel accepts",
    _errno.ENOEXEC: "give an ELF object built with clang -target bpf -g",
}


def errno_name(code: int) -> str:
    """Symbolic name of an errno, including the kernel and libbpf private ones."""
    if code == ENOTSUPP:
        return "ENOTSUPP"
    if code in _LIBBPF_ERRNO_NAMES:
        return _LIBBPF_ERRNO_NAMES[code][0]
    return _errno.errorcode.get(code, f"E{code}")


def errno_text(code: int) -> str:
    """Human description of an errno (os.strerror knows neither 524 nor 4000+)."""
    if code == ENOTSUPP:
        return "operation not supported by this kernel"
    if code in _LIBBPF_ERRNO_NAMES:
        return _LIBBPF_ERRNO_NAMES[code][1]
    return os.strerror(code)


class BpfError(OSError):
    """Base of every bpfoom error: errno, a sentence saying what to do, maybe a log.

    ``str()`` is ``"[Errno N ENAME] sentence"``; ``.log`` holds the verifier
    log of a failed load (``None`` otherwise).
    """

    # Always set (the constructor takes it), unlike OSError's; the annotation only narrows the
    # type, OSError's own slot still holds the value.
    errno: int  # pyright: ignore[reportIncompatibleVariableOverride]
    strerror: str  # pyright: ignore[reportIncompatibleVariableOverride]

    def __init__(self, code: int, sentence: str, *, log: str | None = None,
                 feature: str | None = None) -> None:
        super().__init__(code, sentence)
        self.log = log
        self.feature = feature

    def __str__(self) -> str:
        return f"[Errno {self.errno} {errno_name(self.errno)}] {self.strerror}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.errno, self.strerror, self.log, self.feature))


def _rebuild(cls: type[BpfError], code: int, sentence: str, log: str | None,
             feature: str | None) -> BpfError:
    """Unpickle helper: OSError's own reduce would lose .log and .feature."""
    return cls(code, sentence, log=log, feature=feature)


class PermissionDeniedError(BpfError, PermissionError):  # pyright: ignore[reportIncompatibleVariableOverride]  # errno narrowed in BpfError
    """EPERM/EACCES: the process lacks the capabilities for this operation."""


class NotSupportedError(BpfError):
    """The running kernel lacks a feature; ``.feature`` names it."""


class BatchNotSupportedError(NotSupportedError):
    """The kernel has no batch lookup/update for this map type (ENOTSUPP or EOPNOTSUPP).

    Not a missing kernel feature as such: the same kernel batches hash and
    array maps.  ``.feature`` names the command and map type; the message says
    which per-element call does the same job.
    """


class BusyError(BpfError):
    """EBUSY/EEXIST: the target already has an attachment, or the pin path is taken."""


class ObjectFileError(BpfError):
    """The file is not a usable BPF object (not ELF, truncated, no BTF, ...)."""


class NotFoundError(BpfError):
    """ENOENT: something named does not exist.

    Which builtin it also is depends on what was missing: a path is a
    :class:`PathNotFoundError` (``FileNotFoundError``), a name or key looked
    up in an object or map is a ``KeyError`` (so ``except FileNotFoundError``
    never swallows a missing map key); others (a kernel object by id) are
    neither.
    """


class PathNotFoundError(NotFoundError, FileNotFoundError):  # pyright: ignore[reportIncompatibleVariableOverride]  # errno narrowed in BpfError
    """A file, directory, pin or cgroup path does not exist."""


class MapNotFoundError(NotFoundError, KeyError):
    """The object has no map (or struct_ops map, or global section) of that name."""


class ProgramNotFoundError(NotFoundError, KeyError):
    """The object has no program of that name."""


class VariableNotFoundError(NotFoundError, KeyError):
    """No global variable or struct_ops field of that name."""


class KeyNotFoundError(NotFoundError, KeyError):
    """The map holds no element with that key."""


class KeyExistsError(BpfError):
    """EEXIST: the map already holds the key and the write said ``MapFlag.NOEXIST``.

    Not a ``KeyError`` (that means missing) nor a ``FileExistsError`` (no
    path is involved); catch it by name.
    """


class ClosedError(BpfError, ValueError):
    """EBADF: the object, link, cgroup or ring buffer was already closed (like a closed file)."""


class VerifierError(BpfError):
    """The kernel rejected a program; ``.log`` holds the whole verifier log."""


class InvalidValueError(BpfError, ValueError):
    """A value does not fit its BTF type; raised before the kernel sees it."""


class InvalidTypeError(BpfError, TypeError):
    """A value of the wrong Python type for its BTF type (a str for an int, ...); errno EINVAL.

    A value of the right type that does not fit (out of range, too long) is
    an :class:`InvalidValueError` instead, as ``int("x")`` and ``int([])``
    differ in Python.
    """


class MapFullError(BpfError):
    """E2BIG (ENOSPC for some map types): the map holds ``max_entries`` elements or the
    key is past an array's end; delete elements or give the map a larger ``max_entries``."""


class CgroupError(BpfError):
    """The path is not a cgroup v2 directory."""


class StateError(BpfError, RuntimeError):
    """The operation does not fit the object's state.

    errno EBADFD ("in bad state") when it comes before or after load()
    (rodata or a struct_ops field written after load, a map read before,
    a second load); EINVAL when it never fits this object (attaching a
    struct_ops program on its own, unpinning what is not pinned); EDEADLK and
    EBUSY where a ring buffer's own callback or a second reader is in the way.
    """


_CLASS_BY_ERRNO: dict[int, type[BpfError]] = {
    _errno.EPERM: PermissionDeniedError,
    _errno.EACCES: PermissionDeniedError,
    _errno.EOPNOTSUPP: NotSupportedError,
    ENOTSUPP: NotSupportedError,
    _errno.ENOSYS: NotSupportedError,
    _errno.EBUSY: BusyError,
    _errno.EEXIST: BusyError,
    _errno.ENOENT: NotFoundError,
}


def error_from_errno(code: int, action: str, *, advice: str | None = None,
                     cls: type[BpfError] | None = None, detail: str | None = None,
                     fallback_cls: type[BpfError] = BpfError,
                     fallback_advice: str | None = None, **extra: Any) -> BpfError:
    """Build the exception for ``errno`` ``code`` raised while doing ``action``.

    The class and advice come from the errno (EPERM -> PermissionDeniedError,
    ...); errnos without a specific meaning get ``fallback_cls`` and
    ``fallback_advice`` (e.g. ObjectFileError while opening).  ``cls`` and
    ``advice`` override both; ``detail`` quotes what libbpf logged.
    """
    code = abs(code)
    specific = _CLASS_BY_ERRNO.get(code)
    chosen = cls or specific or fallback_cls
    hint = advice or (fallback_advice if specific is None and fallback_advice else _ADVICE.get(code))
    sentence = f"could not {action}: {errno_text(code)}"
    if detail:
        sentence += f" (libbpf: {detail})"
    if hint:
        sentence += f"; {hint}"
    return chosen(code, sentence, **extra)


def check(rc: int, action: str, **how: Any) -> int:
    """Return ``rc`` if it is not negative, else raise the matching BpfError.

    libbpf 1.x returns ``-errno``; ``how`` is passed to :func:`error_from_errno`.
    """
    if rc < 0:
        raise error_from_errno(-rc, action, **how)
    return rc


def check_ptr(ptr: Any, action: str, **how: Any) -> Any:
    """Return ``ptr`` unless it is NULL; then raise from the ``errno`` libbpf set."""
    from ._ffi import ffi  # late: keeps errors importable without the extension

    if ptr == ffi.NULL:
        code = ffi.errno or _errno.EINVAL
        raise error_from_errno(code, action, **how)
    return ptr
