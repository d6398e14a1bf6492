"""BpfObject (one opened BPF ELF object) and Program (a view of one program).

An object goes ``"open"`` -> ``"loaded"`` -> ``"closed"``.  Everything that
can only change before load (rodata, struct_ops fields, autoload) refuses
afterwards with :class:`StateError`.  A failed :meth:`BpfObject.load` frees
the object at once (libbpf has already closed every fd it made), so nothing
is left behind and the object reports ``"closed"``: open it again to retry.

Thread safety: each object has one re-entrant lock; every operation on the
object or on one of its views (maps, programs, globals, struct_ops fields)
takes it, so concurrent use serializes and a view used after ``close()``
raises :class:`ClosedError` instead of touching freed memory.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Generic, TypeVar

from . import _log
from ._ffi import CData, ffi, lib
from .btf import Btf, Kind
from .lifecycle import Closeable
from .errors import (ENOTSUPP, BpfError, ClosedError, NotSupportedError, ObjectFileError, PathNotFoundError,
                     ProgramNotFoundError, MapNotFoundError, StateError, VerifierError,
                     check, check_ptr, error_from_errno)
from .features import struct_ops_type
from .attach import ExplicitAttach
from .globals import GlobalSection
from .link import Link, adopt_link
from .map import Map
from .struct_ops import StructOpsMap

__all__ = ["BpfObject", "Program", "NoStructOpsError", "ObjectCore"]

# With log_level 0 libbpf loads without a log and, on failure, retries at
# level 1 into the program's buffer: the verifier's reason lands there.
_FAILURE_LOG_SIZE = 1 << 20
_REQUESTED_LOG_SIZE = 16 << 20
# Log buffers are large and mostly unused: skip zeroing them.
_alloc_uncleared = ffi.new_allocator(should_clear_after_alloc=False)


class _FailureLogs:
    """Spare failure-log buffers, reused by later loads.

    Every load() gives each program a 1 MiB buffer that the kernel writes
    only if the program is rejected.  Allocating and freeing them per load
    (an mmap, a page fault, a munmap each) was a measurable part of an
    attach cycle's CPU time; keeping a few costs only address space, as the
    untouched pages are never backed.
    """

    KEEP = 16

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spare: list[CData] = []

    def take(self) -> CData:
        with self._lock:
            if self._spare:
                return self._spare.pop()
        return _alloc_uncleared("char[]", _FAILURE_LOG_SIZE)

    def give_back(self, buffers: Iterable[CData]) -> None:
        with self._lock:
            room = self.KEEP - len(self._spare)
            self._spare.extend(list(buffers)[:max(room, 0)])


_failure_logs = _FailureLogs()
_BPF_OBJECT_ADVICE = "give a BPF ELF object built with clang -target bpf -g (it needs BTF)"


class NoStructOpsError(ObjectFileError, MapNotFoundError):
    """The object has no struct_ops map at all (both a bad object and a missing name)."""


V = TypeVar("V")


class _Views(Mapping[str, V], Generic[V]):
    """Name -> view mapping that checks the object is open on every access."""

    def __init__(self, core: ObjectCore, views: dict[str, V],
                 missing: Callable[[str], BpfError]) -> None:
        self._core, self._views, self._missing = core, views, missing

    def __getitem__(self, name: str) -> V:
        self._core.check_open()
        try:
            return self._views[name]
        except KeyError:
            raise self._missing(name) from None

    def __contains__(self, name: object) -> bool:
        self._core.check_open()
        return name in self._views

    def __iter__(self) -> Iterator[str]:
        self._core.check_open()
        return iter(list(self._views))

    def __len__(self) -> int:
        self._core.check_open()
        return len(self._views)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {list(self._views)!r}>"


class ObjectCore:
    """What a BpfObject shares with its views: the C object, its lock, state and BTF.

    Maps, programs, globals and struct_ops fields hold this rather than the
    object's private fields (and, through :attr:`obj`, keep the object
    alive).  It is the :class:`~bpfoom.bpf.map.MapOwner` of the object's
    maps.  Made by BpfObject; views take its lock around every C access.
    """

    def __init__(self, obj: BpfObject, lock: threading.RLock, ptr: CData, label: str) -> None:
        self.obj = obj
        self.lock = lock
        self.ptr: CData | None = ptr  # libbpf's struct bpf_object; None once closed
        self.label = label  # the path or name it was opened from, as messages show it
        self.state = "open"
        self.closed_because = ""
        self.btf: Btf | None = None
        self.rings: weakref.WeakSet[Closeable] = weakref.WeakSet()  # closed with the object
        self.program_ptrs: dict[str, CData] = {}  # libbpf's struct bpf_program, by name
        self.map_ptrs: dict[str, CData] = {}  # libbpf's struct bpf_map, by name
        self.logs: dict[str, str] = {}  # verifier logs recorded at load, by program

    def closed_error(self) -> ClosedError:
        """The ClosedError of a use after close()."""
        return ClosedError(errno.EBADF, f"BPF object {self.label!r} is closed"
                           f"{self.closed_because}; open it again")

    def live(self) -> CData:
        """The C object; ClosedError after close.  Lock held."""
        ptr = self.ptr
        if ptr is None:
            raise self.closed_error()
        return ptr

    def check_open(self) -> None:
        """ClosedError after close; lock held to keep the answer true."""
        self.live()

    def require_loaded(self, what: str) -> CData:
        """The C object, if loaded; StateError before load().  Lock held."""
        ptr = self.live()
        if self.state != "loaded":
            raise StateError(errno.EBADFD, f"cannot {what} before load(); call load() first")
        return ptr

    def require_unloaded(self, what: str) -> CData:
        """The C object, if not loaded yet; StateError after load().  Lock held."""
        ptr = self.live()
        if self.state != "open":
            raise StateError(errno.EBADFD, f"cannot {what} after load(); set it before load() "
                             "(open the object again to change it)")
        return ptr


class BpfObject(Closeable):
    """One BPF ELF object, opened through libbpf; use :meth:`open`.

    A context manager; :meth:`close` is idempotent and frees the libbpf
    object.  Maps, programs and globals are views that keep this object
    alive; links made from its struct_ops maps are kernel objects that
    outlive it.
    """

    def __init__(self, ptr: CData, keepalive: tuple[object, ...], label: str) -> None:
        """Wrap an opened ``struct bpf_object *``; callers use :meth:`open`."""
        super().__init__()
        self._core = core = ObjectCore(self, self._lock, ptr, label)
        self._keepalive = keepalive
        btf_ptr = lib.bpf_object__btf(ptr)
        core.btf = Btf(btf_ptr) if btf_ptr != ffi.NULL else None
        self._programs: dict[str, Program] = {}
        self._maps: dict[str, Map] = {}
        self._sections: dict[str, GlobalSection] = {}
        try:
            prog = lib.bpf_object__next_program(ptr, ffi.NULL)
            while prog != ffi.NULL:
                view = Program(core, prog)
                self._programs[view.name] = view
                core.program_ptrs[view.name] = prog
                prog = lib.bpf_object__next_program(ptr, prog)
            m = lib.bpf_object__next_map(ptr, ffi.NULL)
            while m != ffi.NULL:
                name = ffi.string(lib.bpf_map__name(m)).decode()
                is_struct_ops = lib.bpf_map__type(m) == lib.BPF_MAP_TYPE_STRUCT_OPS
                self._maps[name] = (StructOpsMap if is_struct_ops else Map)(core, m, name)
                core.map_ptrs[name] = m
                m = lib.bpf_object__next_map(ptr, m)
        except BaseException:
            self._close_c(" (its open failed)")  # at once, not at garbage collection
            raise

    # -- construction --------------------------------------------------------
    @classmethod
    def open(cls, source: str | os.PathLike[str] | bytes, *, name: str | None = None,
             btf_custom_path: str | os.PathLike[str] | None = None,
             kconfig: str | None = None,
             pin_root_path: str | os.PathLike[str] | None = None) -> "BpfObject":
        """Open a BPF object from a path or from the bytes of an ELF file.

        ``name`` overrides the object name (prefix of internal map names),
        ``btf_custom_path`` gives kernel BTF for CO-RE when the kernel has
        none, ``kconfig`` adds ``CONFIG_X=y`` lines for ``__kconfig`` externs,
        ``pin_root_path`` is the bpffs directory where maps declared with
        ``__uint(pinning, LIBBPF_PIN_BY_NAME)`` are pinned by name at load,
        or reused if a compatible map is pinned there already (default
        /sys/fs/bpf).  Map.reuse() picks the map to reuse explicitly.
        """
        keep: list[object] = []
        opts = ffi.new("struct bpf_object_open_opts *")
        opts.sz = ffi.sizeof("struct bpf_object_open_opts")
        for field, value in (("object_name", name), ("kconfig", kconfig),
                             ("btf_custom_path", btf_custom_path),
                             ("pin_root_path", pin_root_path)):
            if value is not None:
                text = ffi.new("char[]", os.fsencode(value))
                keep.append(text)
                setattr(opts, field, text)
        keep.append(opts)

        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
            label = name or "<bytes>"
            if not data:
                raise ObjectFileError(errno.EINVAL, "could not open BPF object from bytes: "
                                      f"the buffer is empty; {_BPF_OBJECT_ADVICE}")
            buffer = ffi.from_buffer(data)
            keep += [data, buffer]  # libbpf reads the buffer until load
            action = "open BPF object from bytes"
            with _log.capture() as warnings:
                ptr = lib.bpf_object__open_mem(buffer, len(data), opts)
        elif isinstance(source, (str, os.PathLike)):
            path = os.fsdecode(source)
            label = path
            action = f"open BPF object {path!r}"
            try:
                is_dir = stat.S_ISDIR(os.stat(path).st_mode)  # one stat where two were
            except OSError:  # as os.path.exists() answers: missing
                is_dir = None
            if is_dir is None:
                raise PathNotFoundError(errno.ENOENT, f"could not {action}: no such file; check the path")
            if is_dir:
                raise ObjectFileError(errno.EISDIR, f"could not {action}: it is a directory; "
                                      f"{_BPF_OBJECT_ADVICE}")
            with _log.capture() as warnings:
                ptr = lib.bpf_object__open_file(os.fsencode(path), opts)
        else:
            raise TypeError(f"BpfObject.open() takes a path or bytes, not {type(source).__name__}")

        check_ptr(ptr, action, fallback_cls=ObjectFileError, fallback_advice=_BPF_OBJECT_ADVICE,
                  detail=_log.cause(warnings))
        try:
            obj = cls(ptr, tuple(keep), label)  # closes ptr itself if it fails
        except UnicodeDecodeError as exc:  # names come from the ELF file: input, not ours
            raise ObjectFileError(errno.EINVAL, f"could not {action}: a program or map name in "
                                  f"it is not UTF-8 ({exc.reason}); rebuild the object") from None
        if obj._core.btf is None:
            obj.close()
            raise ObjectFileError(errno.EINVAL, f"could not {action}: it has no BTF; "
                                  "build it with clang -target bpf -g")
        return obj

    # -- state ---------------------------------------------------------------
    @property
    def btf(self) -> Btf:
        """The object's BTF (every open object has one), valid until close(): types, codecs."""
        with self._lock:
            btf = self._core.btf
            self._core.check_open()
            assert btf is not None  # open() refuses an object without BTF
            return btf

    @property
    def state(self) -> str:
        """"open", "loaded" or "closed"."""
        return self._core.state

    @property
    def name(self) -> str:
        """The object name libbpf uses (file name without extension by default)."""
        with self._lock:
            name: bytes = ffi.string(lib.bpf_object__name(self._core.live()))
            return name.decode()

    @property
    def closed(self) -> bool:
        return self._core.ptr is None

    def _closed_message(self) -> str:
        return str(self._core.closed_error())

    # -- load / close ----------------------------------------------------------
    def load(self, log_level: int | None = None) -> None:
        """Create the maps and load the programs into the kernel.

        ``log_level`` (1, 2, optionally | 4 for stats) records the verifier
        log of every program in :attr:`Program.log`; without it a log is only
        kept for a program the verifier rejects.  On failure the object is
        closed and :class:`VerifierError` (with ``.log``) or another
        BpfError is raised.
        """
        if log_level is not None and (not isinstance(log_level, int) or not 0 <= log_level <= 7):
            raise ValueError("log_level must be an int from 0 to 7 (1 = verbose, 2 = very verbose, 4 = stats)")
        level = log_level or 0
        core = self._core
        with self._lock:
            ptr = core.live()
            if core.state == "loaded":
                raise StateError(errno.EBADFD, f"BPF object {core.label!r} is already loaded; "
                                 "load() runs once: open it again to load another copy")
            for view in self._maps.values():  # libbpf copies these values by their BTF: no crash
                problem = isinstance(view, StructOpsMap) and view.layout_problem()
                if problem:
                    self._close_c(" (its load() failed)")  # as after any failed load
                    raise ObjectFileError(errno.EINVAL, f"could not load BPF object "
                                          f"{core.label!r}: struct_ops map {view.name!r}: "
                                          f"{problem}; the object's BTF is malformed, rebuild it")
            buffers: dict[str, CData] = {}
            for name, prog in core.program_ptrs.items():
                if not lib.bpf_program__autoload(prog):
                    continue
                size = _REQUESTED_LOG_SIZE if level else _FAILURE_LOG_SIZE
                buf = _alloc_uncleared("char[]", size) if level else _failure_logs.take()
                buf[0] = b"\0"
                check(lib.bpf_program__set_log_buf(prog, buf, size), "set a log buffer")
                if level:  # 0 is libbpf's default: one C call less per program and load
                    check(lib.bpf_program__set_log_level(prog, level), "set the log level")
                buffers[name] = buf
            with _log.capture() as warnings:
                rc: int = lib.bpf_object__load(ptr)
            code: int = ffi.errno
            logs: dict[str, str] = {name: ffi.string(buf).decode("utf-8", "replace")
                    for name, buf in buffers.items() if buf[0] != b"\0"}
            if not level:
                # libbpf writes a program's log buffer only inside bpf_object__load() (and
                # refuses a new one once loaded), so the pointers it keeps are never used again.
                _failure_logs.give_back(buffers.values())
            if rc == 0:
                core.state = "loaded"
                core.logs.update(logs)
                return
            struct_names = [m.struct_name for m in self._maps.values() if isinstance(m, StructOpsMap)]
            self._close_c(" (its load() failed)")
        raise self._load_error(-rc if rc < 0 else code, logs, warnings, struct_names)

    def _load_error(self, code: int, logs: dict[str, str], warnings: list[str],
                    struct_names: list[str]) -> BpfError:
        action = f"load BPF object {self._core.label!r}"
        if logs:
            # libbpf loads programs in order and stops at the first rejection,
            # so the rejected one is the last with a log.
            name, text = list(logs.items())[-1]
            lines = [line for line in text.splitlines()
                     if line.strip() and not line.startswith(("processed ", "verification time"))]
            tail = " / ".join(lines[-3:])
            return VerifierError(code, f"could not {action}: the kernel verifier rejected "
                                 f"program {name!r}: {tail}; the whole log is in .log",
                                 log=text)
        # libbpf's own codes for a malformed object or BTF (ELF, format, version, byte order,
        # relocation): the input is at fault, not the kernel.
        unreadable = code in range(4000, 4006) and code != 4004
        err = error_from_errno(code, action, detail=_log.cause(warnings),
                               fallback_cls=ObjectFileError if unreadable else BpfError)
        if isinstance(err, NotSupportedError):
            for struct_name in struct_names:
                if struct_ops_type(struct_name).supported is False:
                    return NotSupportedError(err.errno, f"{err.strerror}; this kernel has no "
                                             f"struct {struct_name}", feature=struct_name)
        return err

    def _release(self) -> None:
        """Free the libbpf object (maps, programs); links made from it stay."""
        self._close_c("")

    def _close_c(self, because: str) -> None:
        core = self._core
        ptr, core.ptr = core.ptr, None
        if ptr is None:
            return
        core.state = "closed"
        core.closed_because = because
        for ring in list(core.rings):
            ring.close()  # wakes its pollers; never waits for them
        if core.btf is not None:
            core.btf.release()
        lib.bpf_object__close(ptr)
        self._keepalive = ()

    def __repr__(self) -> str:
        """Label, state and parts; Python data only, so safe on a closed object."""
        core = self._core
        if core.state == "closed":
            return f"<BpfObject {core.label!r} closed{core.closed_because}>"
        return (f"<BpfObject {core.label!r} {core.state} maps={list(self._maps)!r} "
                f"programs={list(self._programs)!r}>")

    # -- parts -------------------------------------------------------------------
    @property
    def maps(self) -> Mapping[str, Map]:
        """Every map of the object by name (struct_ops and internal ones included)."""
        self._check_open()
        return _Views(self._core, self._maps, self._no_map)

    @property
    def struct_ops(self) -> Mapping[str, StructOpsMap]:
        """The struct_ops maps by name."""
        self._check_open()
        only = {n: m for n, m in self._maps.items() if isinstance(m, StructOpsMap)}
        return _Views(self._core, only, self._no_struct_ops)

    @property
    def programs(self) -> Mapping[str, "Program"]:
        """Every program of the object by (function) name."""
        self._check_open()
        return _Views(self._core, self._programs, self._no_program)

    def _no_map(self, name: str) -> MapNotFoundError:
        return MapNotFoundError(errno.ENOENT, f"BPF object {self._core.label!r} has no map {name!r}; "
                                f"it has: {', '.join(self._maps) or 'none'}")

    def _no_struct_ops(self, name: str) -> MapNotFoundError:
        names = [n for n, m in self._maps.items() if isinstance(m, StructOpsMap)]
        if not names:
            return NoStructOpsError(errno.ENOENT, f"BPF object {self._core.label!r} has no struct_ops map "
                                    f"(asked for {name!r}); declare one in SEC(\".struct_ops.link\")")
        return MapNotFoundError(errno.ENOENT, f"BPF object {self._core.label!r} has no struct_ops map "
                                f"{name!r}; it has: {', '.join(names)}")

    def _no_program(self, name: str) -> ProgramNotFoundError:
        return ProgramNotFoundError(errno.ENOENT, f"BPF object {self._core.label!r} has no program "
                                    f"{name!r}; it has: {', '.join(self._programs) or 'none'}")

    @property
    def rodata(self) -> GlobalSection:
        """``const volatile`` globals; writable only before load()."""
        return self._section(".rodata")

    @property
    def data(self) -> GlobalSection:
        """Initialised globals; writable before and after load()."""
        return self._section(".data")

    @property
    def bss(self) -> GlobalSection:
        """Zero-initialised globals; writable before and after load()."""
        return self._section(".bss")

    def _section(self, section: str) -> GlobalSection:
        with self._lock:
            self._core.check_open()
            found = self._sections.get(section)
            if found is not None:
                return found
            for m in self._core.map_ptrs.values():
                type_id = lib.bpf_map__btf_value_type_id(m)
                if not lib.bpf_map__is_internal(m) or not type_id:
                    continue
                t = self.btf.type(type_id)
                if t.kind == Kind.DATASEC and t.name == section:
                    found = self._sections[section] = GlobalSection(self._core, m, t)
                    return found
        raise MapNotFoundError(errno.ENOENT, f"BPF object {self._core.label!r} has no {section} section: "
                            "it declares no such globals")


class Program(ExplicitAttach):
    """A view of one program of a BpfObject; frees nothing, keeps the object alive.

    Attach it where its section says (:meth:`attach`) or to a target named at
    run time (:meth:`attach_tracepoint`, :meth:`attach_kprobe`, ... in
    :class:`ExplicitAttach`)."""

    def __init__(self, core: ObjectCore, ptr: CData) -> None:
        """A view of program ``ptr`` of ``core``'s object; BpfObject makes these."""
        self._core, self._ptr = core, ptr
        self.name = ffi.string(lib.bpf_program__name(ptr)).decode()
        self.section = ffi.string(lib.bpf_program__section_name(ptr)).decode()
        self._id: int | None = None

    @property
    def type(self) -> str:
        """Program type as libbpf spells it ("struct_ops", "socket_filter", ...)."""
        with self._core.lock:
            self._core.check_open()
            raw = lib.libbpf_bpf_prog_type_str(lib.bpf_program__type(self._ptr))
            return ffi.string(raw).decode() if raw != ffi.NULL else "unknown"

    @property
    def autoload(self) -> bool:
        """Whether load() loads this program; settable before load()."""
        with self._core.lock:
            self._core.check_open()
            return bool(lib.bpf_program__autoload(self._ptr))

    @autoload.setter
    def autoload(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise TypeError("autoload must be True or False")
        with self._core.lock:
            self._core.require_unloaded(f"change autoload of program {self.name!r}")
            check(lib.bpf_program__set_autoload(self._ptr, value), f"set autoload of {self.name!r}")

    @property
    def fd(self) -> int:
        """The program's fd (owned by the object); after load() only."""
        with self._core.lock:
            self._core.require_loaded(f"get the fd of program {self.name!r}")
            fd: int = lib.bpf_program__fd(self._ptr)
            if fd < 0:
                raise StateError(errno.EBADFD, f"program {self.name!r} was not loaded "
                                 "(autoload off); set autoload before load()")
            return fd

    @property
    def id(self) -> int:
        """The kernel's id of the loaded program (asked once: it never changes)."""
        with self._core.lock:
            fd = self.fd
            if self._id is None:
                info = ffi.new("struct bpf_prog_info *")
                size = ffi.new("__u32 *", ffi.sizeof("struct bpf_prog_info"))
                check(lib.bpf_prog_get_info_by_fd(fd, info, size), f"query program {self.name!r}")
                self._id = int(info.id)
            return self._id

    def test_run(self, ctx: bytes | None = None) -> int:
        """Run the loaded program once in the kernel (BPF_PROG_TEST_RUN); its return value.

        For programs nothing else triggers on demand, e.g. ``SEC("syscall")``,
        which reads ``ctx`` (bytes the kernel copies in) as its argument.
        Program types the kernel cannot run this way raise NotSupportedError;
        others may refuse a ctx they do not take (EINVAL).
        """
        if ctx is not None and not isinstance(ctx, (bytes, bytearray)):
            raise TypeError(f"ctx must be bytes, not {type(ctx).__name__}")
        with self._core.lock:
            fd = self.fd
            opts = ffi.new("struct bpf_test_run_opts *")
            opts.sz = ffi.sizeof("struct bpf_test_run_opts")
            if ctx:
                data = ffi.from_buffer(bytes(ctx))
                opts.ctx_in, opts.ctx_size_in = data, len(ctx)
            rc = lib.bpf_prog_test_run_opts(fd, opts)
            unsupported = -rc in (ENOTSUPP, errno.EOPNOTSUPP)
            check(rc, f"run program {self.name!r} ({self.section}) with BPF_PROG_TEST_RUN",
                  advice=("the kernel cannot run this program type on demand; SEC(\"syscall\") "
                          "programs (and a few others) can be") if unsupported else None)
            retval: int = opts.retval
            return retval

    @property
    def log(self) -> str | None:
        """The verifier log recorded at load (see BpfObject.load's log_level), else None."""
        return self._core.logs.get(self.name)

    def attach(self) -> "Link":
        """Attach a loaded program where its section says (fentry/, fexit/, tp_btf/, ...).

        Returns an owned :class:`Link`: closing it detaches the program unless
        it was pinned (the same rules as struct_ops links).  A struct_ops
        program is attached through its map (``StructOpsMap.attach()``).
        """
        with self._core.lock:
            self._core.require_loaded(f"attach program {self.name!r}")
            if lib.bpf_program__type(self._ptr) == lib.BPF_PROG_TYPE_STRUCT_OPS:
                raise StateError(errno.EINVAL, f"program {self.name!r} is a struct_ops program; "
                                 "attach its struct_ops map instead (obj.struct_ops[...].attach())")
            if lib.bpf_program__fd(self._ptr) < 0:
                raise StateError(errno.EBADFD, f"cannot attach program {self.name!r}: it was not "
                                 "loaded (autoload off); set autoload before load()")
            action = f"attach program {self.name!r} ({self.section})"
            with _log.capture() as warnings:
                ptr = lib.bpf_program__attach(self._ptr)
            code = ffi.errno
            advice = ("libbpf cannot attach this section type on its own; name the target in "
                      "the section, e.g. SEC(\"fentry/<function>\")"
                      if code == errno.EOPNOTSUPP else None)
            check_ptr(ptr, action, advice=advice, detail=_log.cause(warnings))
            return adopt_link(Link, ptr, f"{self.section} {self.name}")

    def __repr__(self) -> str:
        """Name, section, state and the kernel's id once loaded; no C memory after close."""
        with self._core.lock:
            state = self._core.state
            detail = ""
            if state == "loaded":
                try:
                    detail = f" id={self.id}"
                except OSError:  # not loaded (autoload off); a repr never raises
                    detail = " (not loaded: autoload off)"
        return f"<Program {self.name!r} section={self.section!r} {state}{detail}>"
