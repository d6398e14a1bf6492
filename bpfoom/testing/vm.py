"""Run one command as root inside a QEMU guest booted on bpfoom's kernel.

No released kernel has the BPF OOM interface, so tests that need it run in a
guest booted with virtme-ng on our patched kernel, sharing this machine's root
filesystem (copy-on-write, except the directories given read-write).  The
result is the command's own exit status and output, plus the guest's kernel
log, scanned for the splats that mean a kernel bug (WARNING, BUG, Oops, KASAN,
lockdep).  A whole pytest session runs as one command: one boot.

    python3 -m bpfoom.testing.vm [--kernel BZIMAGE | --flavour lockdep|kasan | --debug] -- CMD ARGS...

The kernel is third_party/linux/build.py's, of the flavour asked for (built
first when its cache has none for the current patches): normal by default,
lockdep (--debug) or kasan, each with its own checkers turned on.

Standard library only: the future pytest plugin imports this before anything
heavy, and it must work on a host where bpfoom's extension is not built.
"""
from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, Sequence, TextIO

REPO = Path(__file__).resolve().parents[2]  # bpfoom/testing/vm.py -> the checkout
BUILD_SCRIPT = REPO / "third_party" / "linux" / "build.py"
DEFAULT_TIMEOUT_S = 1800.0
PROBE_TIMEOUT_S = 120.0
LOG_BUFFER = "4M"  # 32x the default; the kernel adds ~3.5x this in metadata

# Kernel log lines that mean a kernel bug, not a test outcome.
PROBLEM_PATTERNS = [
    r"WARNING:",
    r"BUG:",
    r"Oops",
    r"KASAN",
    r"UBSAN:",
    r"general protection fault",
    r"Kernel panic",
    r"possible circular locking dependency",
    r"possible recursive locking",
    r"inconsistent lock state",
    r"suspicious RCU usage",
    r"INFO: lockdep",
    r"lockdep is turned off",
    r"DEBUG_LOCKS_WARN_ON",
    r"blocked for more than \d+ seconds",
    r"rcu: INFO: .* detected stalls",
]
_PROBLEM = re.compile("|".join(f"(?:{p})" for p in PROBLEM_PATTERNS))


class VmError(RuntimeError):
    """The guest did not run the command to its end; output and kernel log say why."""

    def __init__(self, message: str, output: str = "", kernel_log: str = "",
                 started: bool = True) -> None:
        super().__init__(message)
        self.output = output
        self.kernel_log = kernel_log
        self.started = started  # False: the guest's script never ran (nothing was done)


class VmInterrupted(BaseException):
    """The harness got SIGTERM or SIGHUP while a guest ran; the guest is gone (like KeyboardInterrupt)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}; the VM was stopped")
        self.signum = signum


@dataclass
class VmRun:
    """What one command did inside the guest."""

    returncode: int
    output: str  # the command's stdout and stderr, interleaved as written
    kernel_log: str  # the guest's dmesg, boot to the command's end
    kernel_log_problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.kernel_log_problems


def kernel_log_problems(kernel_log: str) -> list[str]:
    """The lines of a kernel log that show a kernel bug (warning, oops, KASAN, lockdep)."""
    return [line for line in kernel_log.splitlines() if _PROBLEM.search(line)]


def _cache_dir() -> Path:
    root = os.environ.get("BPFOOM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "bpfoom"
    )
    path = Path(root) / "vm"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _load_from_checkout(name: str):
    """A module of third_party/linux (the kernel build lives in the source checkout)."""
    path = BUILD_SCRIPT.parent / f"{name}.py"
    if not path.exists():
        raise VmError(f"{path} is missing (not a source checkout?); pass kernel= / --kernel "
                      "with a bzImage and install virtme-ng (vng) yourself")
    spec = importlib.util.spec_from_file_location(f"bpfoom_linux_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the class is built.
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return sys.modules[spec.name]


def default_kernel(debug: bool = False, flavour: str | None = None) -> Path:
    """bzImage of the current patched kernel of `flavour` (normal; debug=True: lockdep),
    building it first if needed (with progress)."""
    build = _load_from_checkout("build")
    try:
        return build.build(debug=debug, flavour=flavour).bzimage
    except build.BuildError as err:
        raise VmError(f"the kernel build failed: {err}") from err


def _vng() -> Path:
    return _load_from_checkout("tool_venv").virtme_ng_bin("vng")


def _host_key() -> str:
    """What the KVM decision depends on: the host kernel and whether the CPU shows VT."""
    flags = re.search(r"^flags\s*:(.*)$", Path("/proc/cpuinfo").read_text(), re.M)
    virt = sorted(set((flags.group(1) if flags else "").split()) & {"vmx", "svm"})
    return f"{platform.release()} {','.join(virt) or 'no-vt'}"


def accelerator(kernel: Path) -> str:
    """'kvm' if KVM boots a guest here, else 'tcg'; decided once per host and cached.

    Nested KVM can exist (/dev/kvm) yet fail on real guests with emulation
    errors, so without VT flags we go straight to TCG, and with them we trust
    KVM only after a probe boot ran a command.  BPFOOM_VM_ACCEL=kvm|tcg overrides.
    """
    forced = os.environ.get("BPFOOM_VM_ACCEL")
    if forced in ("kvm", "tcg"):
        return forced
    cache = _cache_dir() / "accelerator.json"
    decisions = json.loads(cache.read_text()) if cache.exists() else {}
    key = _host_key()
    if key in decisions:
        return decisions[key]
    choice = "tcg"
    if "no-vt" not in key and os.access("/dev/kvm", os.R_OK | os.W_OK):
        try:
            probe = _boot(["true"], kernel=kernel, accel="kvm", memory="512M", cpus=1,
                          timeout=PROBE_TIMEOUT_S, cwd=None, env=None, rwdirs=(), live=None)
            choice = "kvm" if probe.returncode == 0 else "tcg"
        except VmError:
            choice = "tcg"
    decisions[key] = choice
    cache.write_text(json.dumps(decisions, indent=1) + "\n")
    print(f"bpfoom.testing.vm: using {choice} for guests on this host (cached in {cache})",
          file=sys.stderr)
    return choice


def _guest_script(command: str, results: Path, cwd: Path, env: Mapping[str, str]) -> str:
    """Shell run by the guest's init: prepare cgroup2 and bpffs, run, record status and log.

    Everything goes through files in `results` (shared read-write with the
    host) rather than virtme-ng's virtio-serial script ports: those need udev in
    the guest to get their /dev/virtio-ports names, and hosts like this one have
    none, so virtme-ng would send the output to the kernel console instead.

    The command sees the host's PATH, `env`, and BPFOOM_IN_VM=1 (so a test
    suite can tell it runs in the guest).
    """
    variables = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
                 **env, "BPFOOM_IN_VM": "1"}
    exports = "".join(f"export {name}={shlex.quote(value)}\n" for name, value in variables.items())
    r = shlex.quote(str(results))
    return f"""\
stdbuf -oL dmesg -w > {r}/kernel.live 2>&1 &
watcher=$!
if [ "$(stat -f -c %T /sys/fs/cgroup 2>/dev/null)" != cgroup2fs ]; then
    mount -t cgroup2 cgroup2 /sys/fs/cgroup
fi
echo +memory > /sys/fs/cgroup/cgroup.subtree_control
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
cd {shlex.quote(str(cwd))}
{exports}( {command}
) < /dev/null > {r}/output 2>&1
echo $? > {r}/status.tmp
dmesg > {r}/kernel.log
kill $watcher
mv {r}/status.tmp {r}/status
sync
"""


def _follow(path: Path, sink: TextIO, done: threading.Event) -> None:
    """Copy what the guest appends to `path` to `sink` until `done`, then the rest."""
    while not path.exists() and not done.wait(0.2):
        pass
    if not path.exists():
        return
    with open(path, errors="replace") as stream:
        while True:
            finished = done.is_set()
            chunk = stream.read()
            if chunk:
                sink.write(chunk)
                sink.flush()
            elif finished:
                return
            else:
                done.wait(0.2)


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


@contextmanager
def _stop_signals_raise() -> Iterator[None]:
    """SIGTERM/SIGHUP raise VmInterrupted while a guest runs, so its QEMU is killed on the way out.

    Their default action would end this process at once, leaving QEMU in its
    own session running.  Handlers can only be set from the main thread;
    elsewhere the caller's own handling stays.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, _frame) -> None:
        raise VmInterrupted(signum)

    previous = {signum: signal.signal(signum, interrupt) for signum in _STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    """A preexec_fn: the child gets SIGKILL when the harness dies, even by SIGKILL.

    prctl(PR_SET_PDEATHSIG) survives exec; it covers what no handler can (see
    _in_own_pid_namespace for QEMU itself).  The function is looked up here,
    before the fork: the child only calls it.
    """
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    return lambda: prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _in_own_pid_namespace(args: list[str]) -> list[str]:
    """`args` run as the init of a new PID namespace when we may make one (root).

    vng starts QEMU through virtme-run, a grandchild that no signal to vng
    reaches; when a namespace's init dies the kernel kills everything in it.
    With _die_with_parent() on unshare and --kill-child for vng, even a
    SIGKILLed harness takes QEMU with it.
    """
    unshare = shutil.which("unshare")
    if os.geteuid() != 0 or unshare is None:
        return args
    return [unshare, "--pid", "--fork", "--kill-child=SIGKILL", "--", *args]


def _stop(proc: subprocess.Popen) -> None:
    """Kill vng and QEMU (the process group vng leads) if they still run, and reap vng."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def _mib(memory: str) -> int:
    """QEMU's size ("2G", "512M") in MiB."""
    units = {"M": 1, "G": 1024}
    number, unit = memory[:-1], memory[-1:].upper()
    if unit not in units or not number.isdigit():
        raise VmError(f"memory size {memory!r}: give MiB or GiB, like 2G or 1536M")
    return int(number) * units[unit]


def numa_args(memory: str, cpus: int, nodes: int) -> list[str]:
    """vng options for `nodes` NUMA nodes sharing `memory` and `cpus` evenly (0: none)."""
    if nodes <= 1:
        return []
    if cpus % nodes or _mib(memory) % nodes:
        raise VmError(f"--numa {nodes}: {cpus} CPUs and {memory} must split evenly across the nodes")
    per_cpus, per_mib = cpus // nodes, _mib(memory) // nodes
    return [arg for node in range(nodes) for arg in (
        "--numa", f"{per_mib}M,cpus={node * per_cpus}-{(node + 1) * per_cpus - 1}")]


def _boot(command: Sequence[str] | str, *, kernel: Path, accel: str, memory: str, cpus: int,
          timeout: float, cwd: Path | None, env: Mapping[str, str] | None,
          rwdirs: Sequence[Path], live: TextIO | None, numa: int = 0) -> VmRun:
    shell = command if isinstance(command, str) else shlex.join(command)
    cwd = Path(cwd or os.getcwd()).resolve()
    with tempfile.TemporaryDirectory(prefix="bpfoom-vm-", dir="/tmp") as scratch:
        results = Path(scratch)
        # Not all of /tmp: over 9p, files used after unlink (pytest's capture
        # files, TemporaryFile) fail with ENOENT.  The guest's own /tmp is
        # virtme-ng's copy-on-write overlay: writable, private to the guest.
        writable = {REPO, cwd, results, *map(Path, rwdirs)}
        script = results / "guest.sh"
        script.write_text(_guest_script(shell, results, cwd, env or {}))
        args = [str(_vng()), "--run", str(kernel), "--user", "root",
                "--memory", memory, "--cpus", str(cpus), "--cwd", str(cwd)]
        args += numa_args(memory, cpus, numa)
        args += [f"--rwdir={path}" for path in sorted(writable) if path.is_dir()]
        # A ring buffer big enough that the final dmesg holds a whole test session.
        args += ["--append", f"log_buf_len={LOG_BUFFER}"]
        if accel == "tcg":
            args.append("--disable-kvm")
        args += ["--exec", f"sh {script}"]
        # vng runs its sibling programs (virtme-run) from PATH.
        tools = dict(os.environ, PATH=f"{Path(args[0]).parent}:{os.environ.get('PATH', '')}")
        args = _in_own_pid_namespace(args)
        done = threading.Event()
        follower = None
        if live is not None:
            follower = threading.Thread(target=_follow, args=(results / "output", live, done),
                                        daemon=True)
            follower.start()
        # Its own session, so a terminal's Ctrl-C reaches only this harness, which then
        # stops the guest: on every way out of this block QEMU dies with the harness.
        with _stop_signals_raise():
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, start_new_session=True, env=tools,
                                    preexec_fn=_die_with_parent())
            try:
                qemu_output, _ = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                _stop(proc)
                qemu_output, _ = proc.communicate()
            finally:
                _stop(proc)
                done.set()
        if follower is not None:
            follower.join(timeout=10)
        output_file = results / "output"
        text = output_file.read_text(errors="replace") if output_file.exists() else ""
        log_file = results / "kernel.log"
        if not log_file.exists():
            log_file = results / "kernel.live"
        kernel_log = log_file.read_text(errors="replace") if log_file.exists() else ""
        status = results / "status"
        if not status.exists():
            why = (f"timed out after {timeout:.0f} s" if proc.returncode == -9
                   else f"the VM exited ({proc.returncode}) before the command finished")
            problems = kernel_log_problems(kernel_log)
            vng_says = qemu_output.decode(errors="replace").strip()[-1500:]
            started = (results / "kernel.live").exists() or output_file.exists()
            raise VmError(
                f"{why}: kernel {kernel}, accelerator {accel}."
                + (f" Kernel log problems: {problems[:5]}" if problems else "")
                + (f"\nvng/QEMU said:\n{vng_says}" if vng_says else "")
                + "\nIf the guest panicked, boot a debug kernel (--debug for lockdep, "
                  "--flavour kasan) for more detail.",
                text, kernel_log, started=started or proc.returncode == -9)
        return VmRun(int(status.read_text()), text, kernel_log, kernel_log_problems(kernel_log))


def run(command: Sequence[str] | str, *, kernel: Path | str | None = None, debug: bool = False,
        flavour: str | None = None, memory: str = "2G", cpus: int = 2,
        timeout: float = DEFAULT_TIMEOUT_S, cwd: Path | str | None = None,
        env: Mapping[str, str] | None = None,
        rwdirs: Sequence[Path | str] = (), live: TextIO | None = None, numa: int = 0) -> VmRun:
    """Boot `kernel` (default: the current build of `flavour`, see default_kernel()), run
    `command` as root, return what it did.

    A list is run as argv, a string through sh.  The guest sees this machine's
    files copy-on-write (its /tmp too: writable, but private to the guest); the
    repository, `cwd` and `rwdirs` are shared read-write.  `live` receives the
    output as it comes.  `numa`: that many NUMA nodes (memory and CPUs split
    evenly), for the tests that need a mempolicy OOM.
    """
    bzimage = Path(kernel) if kernel else default_kernel(debug, flavour)
    if not bzimage.is_file():
        raise VmError(f"kernel image {bzimage} does not exist; build it with "
                      "python3 third_party/linux/build.py")
    if shutil.which("qemu-system-x86_64") is None:
        raise VmError("qemu-system-x86_64 is missing; install Debian's qemu-system-x86")
    boot = functools.partial(_boot, command, kernel=bzimage, accel=accelerator(bzimage),
                             memory=memory, cpus=cpus, timeout=timeout,
                             cwd=Path(cwd) if cwd else None, env=env,
                             rwdirs=[Path(p) for p in rwdirs], live=live, numa=numa)
    try:
        return boot()
    except VmError as err:
        # Seen in two fresh-clone test runs on this host: vng exits 255, silent, before the guest
        # runs anything.  Nothing was done, so one more boot is safe; a second failure is real.
        if err.started:
            raise
        print(f"bpfoom.testing.vm: the guest never started ({err}); booting once more",
              file=sys.stderr)
    return boot()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m bpfoom.testing.vm",
        description="Run a command as root in a guest booted on bpfoom's kernel; exit with its "
                    "status, or 1 if the kernel log shows a warning, BUG, Oops, KASAN or lockdep.")
    kernels = parser.add_mutually_exclusive_group()
    kernels.add_argument("--kernel", type=Path, help="bzImage (default: current build)")
    kernels.add_argument("--flavour", help="the current build of this flavour of "
                         "third_party/linux/build.py: normal (default), lockdep or kasan")
    kernels.add_argument("--debug", action="store_true", help="same as --flavour lockdep")
    parser.add_argument("--memory", default="2G")
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--numa", type=int, default=0, metavar="NODES",
                        help="that many NUMA nodes, memory and CPUs split evenly (default: none)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds")
    parser.add_argument("--kernel-log", type=Path, help="also write the guest's dmesg here")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command after --")
    try:
        result = run(command, kernel=args.kernel, debug=args.debug, flavour=args.flavour,
                     memory=args.memory, cpus=args.cpus, timeout=args.timeout, live=sys.stdout,
                     numa=args.numa)
    except (VmInterrupted, KeyboardInterrupt) as stopped:
        signum = getattr(stopped, "signum", signal.SIGINT)
        print(f"bpfoom.testing.vm: stopped by {signal.Signals(signum).name}; the VM is gone",
              file=sys.stderr)
        return 128 + signum
    except VmError as err:
        if args.kernel_log and err.kernel_log:
            args.kernel_log.write_text(err.kernel_log)
        tail = "\n".join(err.kernel_log.splitlines()[-40:])
        print(f"bpfoom.testing.vm: {err}\nlast kernel log lines:\n{tail}", file=sys.stderr)
        return 125
    if args.kernel_log:
        args.kernel_log.write_text(result.kernel_log)
    if result.kernel_log_problems:
        print("bpfoom.testing.vm: the guest's kernel log shows problems:", file=sys.stderr)
        for line in result.kernel_log_problems:
            print(f"  {line}", file=sys.stderr)
        return result.returncode or 1
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
