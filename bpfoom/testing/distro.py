"""Run one command inside a real Debian bookworm booted with systemd on bpfoom's kernel.

vm.py boots our kernel on this machine's own files, with a shell as init:
enough for kernel tests, but there is no systemd, no journal, no units and
none of the services and OOM daemons people actually run.  This boots a
Debian bookworm root filesystem built from Debian's packages with
mmdebstrap (systemd as PID 1, journald, redis-server, PostgreSQL 15,
earlyoom, nohang, systemd-oomd, stress-ng), installed but not started: a
caller starts what it needs.

    python3 -m bpfoom.testing.distro [--memory 2G] [--cpus 2] -- CMD ARGS...
    python3 -m bpfoom.testing.distro --build     # only build (or find) the image

The root filesystem is built once per recipe (RECIPE below; any change makes
a new one) and cached as a directory under ~/.cache/bpfoom/distro
(`$BPFOOM_CACHE` moves it).  Our kernel has no ext4 (or any disk filesystem),
so the guest's root is that directory over 9p, seen through an overlay whose
upper layer is a fresh scratch directory: every run starts from the same clean
system and leaves the cached one untouched.  The overlay is mounted in a mount
namespace of its own that dies with QEMU, so nothing stays mounted.  CMD runs as root from a unit ordered after
multi-user.target, with the checkout, the command's directory and the Python
that the checkout's .venv uses shared at their own paths (9p), so
`.venv/bin/python -m bpfoom ...` works inside as outside.  Its output, exit
status, the kernel log and the journal come back.

Standard library only, like vm.py.
"""
from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence, TextIO

from bpfoom.testing import vm

SUITE = "bookworm"
MIRRORS = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)
PACKAGES = (
    # PID 1 and what a normal systemd system has
    "systemd", "systemd-sysv", "systemd-oomd", "dbus", "udev", "procps", "psmisc",
    "util-linux", "iproute2", "kmod",
    # logins get their user manager (user@UID) as on a desktop: the arena's session scope
    "libpam-systemd",
    # the services the arena protects, and their clients
    "redis-server", "redis-tools", "postgresql", "postgresql-contrib",
    # the OOM tools bpfoom is compared with, and the load generator
    "earlyoom", "nohang", "stress-ng",
    # bpfoom at run time: a Python 3.11 and the libraries its extension and the
    # shared .venv's interpreter load
    "python3", "libelf1", "zlib1g", "libffi8", "libssl3", "libsqlite3-0", "libbz2-1.0",
    "liblzma5", "libreadline8", "libncursesw6", "libuuid1",
)
# Installed, not started at boot: the arena starts what a scenario needs.
NOT_AT_BOOT = ("redis-server.service", "postgresql.service", "earlyoom.service",
               "nohang.service", "nohang-desktop.service", "systemd-oomd.service",
               "systemd-oomd.socket")
JOB_TAG = "bpfoomjob"
JOB_UNIT = """\
[Unit]
Description=The command bpfoom.testing.distro boots this system for
After=multi-user.target
ConditionKernelCommandLine=bpfoom.job

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/bpfoom-job
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=infinity

[Install]
WantedBy=multi-user.target
"""
JOB_SCRIPT = f"""\
#!/bin/sh
# Mount the host's job directory and run the script bpfoom.testing.distro left there.
mkdir -p /run/bpfoom-job
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 {JOB_TAG} /run/bpfoom-job
sh /run/bpfoom-job/guest.sh
systemctl poweroff --no-block
"""
# Run inside the new root (mmdebstrap's customize hook: $1 is the root).
CUSTOMIZE = [
    "echo bpfoom-distro > \"$1/etc/hostname\"",
    "chroot \"$1\" passwd -d root",
    "rm -f \"$1/etc/machine-id\" && chroot \"$1\" systemd-machine-id-setup",
    ": > \"$1/etc/fstab\"",
    f"printf %s {shlex.quote(JOB_UNIT)} > \"$1/etc/systemd/system/bpfoom-job.service\"",
    f"printf %s {shlex.quote(JOB_SCRIPT)} > \"$1/usr/local/sbin/bpfoom-job\"",
    "chmod 755 \"$1/usr/local/sbin/bpfoom-job\"",
    "chroot \"$1\" systemctl enable bpfoom-job.service",
    "chroot \"$1\" systemctl set-default multi-user.target",
    "for unit in " + " ".join(NOT_AT_BOOT) + "; do "
    "chroot \"$1\" systemctl disable \"$unit\" 2>/dev/null || true; done",
    # No logins on a guest nobody types into; they cost boot time under TCG.
    "chroot \"$1\" systemctl mask serial-getty@ttyS0.service getty@tty1.service",
]
RECIPE = {"version": 2, "suite": SUITE, "mirrors": MIRRORS, "packages": PACKAGES,
          "customize": CUSTOMIZE}
ROOT_TAG = "bpfoomroot"
NINEP = "trans=virtio,version=9p2000.L,msize=512000"



class DistroError(vm.VmError):
    """The distro image could not be built, or the guest did not run the command to its end."""


@dataclass(frozen=True)
class DistroImage:
    """A built root filesystem: a directory, booted read-only under a per-run overlay."""

    path: Path
    key: str
    build_seconds: float | None  # None when it came from the cache


def recipe_key() -> str:
    """The cache key: what the image is made of."""
    return hashlib.sha256(json.dumps(RECIPE, sort_keys=True).encode()).hexdigest()[:16]


def _cache() -> Path:
    path = vm._cache_dir().parent / "distro"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _say(message: str) -> None:
    print(f"bpfoom.testing.distro: {message}", file=sys.stderr, flush=True)


def image(build: bool = True) -> DistroImage:
    """The root filesystem for the current recipe, built first if the cache has none (minutes)."""
    cache = _cache()
    key = recipe_key()
    final = cache / f"bookworm-{key}"
    if final.is_dir():
        return DistroImage(final, key, None)
    if not build:
        raise DistroError(f"no distro image for recipe {key}; build it with "
                          "python3 -m bpfoom.testing.distro --build")
    with open(cache / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building it
        if final.is_dir():
            return DistroImage(final, key, None)
        return _build(final, key)


def _build(final: Path, key: str) -> DistroImage:
    mmdebstrap = shutil.which("mmdebstrap")
    if mmdebstrap is None:
        raise DistroError("building the distro image needs mmdebstrap: run ./scripts/bootstrap "
                          "(or apt-get install mmdebstrap)")
    if os.geteuid() != 0:
        raise DistroError("building the distro image needs root (mmdebstrap --mode=root)")
    started = time.monotonic()
    work = final.parent / f"{final.name}.partial"
    shutil.rmtree(work, ignore_errors=True)
    args = [mmdebstrap, "--mode=root", "--variant=apt", "--format=directory",
            "--include=" + ",".join(PACKAGES)]
    args += [f"--customize-hook={hook}" for hook in CUSTOMIZE]
    args += [SUITE, str(work), *MIRRORS]
    _say(f"building the Debian {SUITE} image {key} with mmdebstrap (minutes; cached after)")
    try:
        subprocess.run(args, check=True, stdin=subprocess.DEVNULL, stdout=sys.stderr)
    except subprocess.CalledProcessError as err:
        raise DistroError(f"building the distro image failed ({err}); the log above says "
                          f"why; {work} is left for inspection") from err
    work.rename(final)
    seconds = time.monotonic() - started
    _say(f"image {final} built in {seconds:.0f} s")
    return DistroImage(final, key, seconds)


def _shares(cwd: Path, rwdirs: Sequence[Path]) -> list[tuple[Path, bool]]:
    """(host path, read-only) shared at the same path in the guest, parents first."""
    shares = {vm.REPO.resolve(): False, cwd: False}
    for path in rwdirs:
        shares[path.resolve()] = False
    # The interpreter the .venv was made from (pyenv's, say): read-only.
    venv_python = vm.REPO / ".venv" / "bin" / "python"
    if venv_python.exists():
        base = Path(os.path.realpath(venv_python)).parents[1]
        if not str(base).startswith("/usr"):
            shares.setdefault(base, True)
    ordered = sorted((p for p in shares if p.is_dir()), key=lambda p: len(p.parts))
    kept: list[Path] = []
    for path in ordered:
        if not any(path.is_relative_to(parent) for parent in kept):
            kept.append(path)
    return [(path, shares[path]) for path in kept]


def _guest_script(command: str, shares: list[tuple[Path, bool]], cwd: Path,
                  env: Mapping[str, str]) -> str:
    """Shell run by the job unit: mount the shares, run, record status, kernel log and journal."""
    mounts = "".join(
        f"mkdir -p {shlex.quote(str(path))}\n"
        f"mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000{',ro' if ro else ''} "
        f"share{i} {shlex.quote(str(path))}\n"
        for i, (path, ro) in enumerate(shares))
    variables = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                 "HOME": "/root", **env, "BPFOOM_IN_VM": "1", "BPFOOM_IN_DISTRO": "1"}
    exports = "".join(f"export {name}={shlex.quote(value)}\n" for name, value in variables.items())
    return f"""\
r=/run/bpfoom-job
{mounts}if [ ! -e /proc/self/ns/user ]; then
    # A kernel without user namespaces (ours: CONFIG_USER_NS is off): systemd 252 fails a
    # unit with PrivateUsers=yes (Debian's redis-server.service) instead of ignoring it.
    mkdir -p /run/systemd/system/service.d
    printf '[Service]\nPrivateUsers=no\n' > /run/systemd/system/service.d/bpfoom-no-userns.conf
    systemctl daemon-reload
fi
systemctl is-system-running > $r/system-state 2>&1
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
cd {shlex.quote(str(cwd))}
{exports}( {command}
) < /dev/null > $r/output 2>&1
echo $? > $r/status.tmp
dmesg > $r/kernel.log
journalctl -b --no-pager -o short-monotonic > $r/journal 2>&1
mv $r/status.tmp $r/status
sync
systemctl poweroff -ff  # the root is a throw-away overlay: nothing to stop cleanly
"""


@dataclass
class DistroRun(vm.VmRun):
    """What one command did inside the booted distribution."""

    journal: str = ""  # journalctl -b of the boot, up to the command's end
    boot_seconds: float = 0.0  # QEMU start to the command's start


def run(command: Sequence[str] | str, *, kernel: Path | str | None = None,
        memory: str = "2G", cpus: int = 2, timeout: float = vm.DEFAULT_TIMEOUT_S,
        cwd: Path | str | None = None, env: Mapping[str, str] | None = None,
        rwdirs: Sequence[Path | str] = (), live: TextIO | None = None,
        initrd: Path | str | None = None) -> DistroRun:
    """Boot the distro image on `kernel` (default: the current normal build), run `command`
    as root once systemd reached multi-user.target, power off, return what it did.

    `initrd` is for kernels whose 9p and virtio are modules (a distribution's): it must
    mount the 9p root (tag bpfoomroot) and switch to /lib/systemd/systemd."""
    root = image()
    bzimage = Path(kernel) if kernel else vm.default_kernel()
    if not bzimage.is_file():
        raise DistroError(f"kernel image {bzimage} does not exist; build it with "
                          "python3 third_party/linux/build.py")
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        raise DistroError("qemu-system-x86_64 is missing; install Debian's qemu-system-x86")
    accel = vm.accelerator(bzimage)
    shell = command if isinstance(command, str) else shlex.join(command)
    workdir = Path(cwd or os.getcwd()).resolve()
    shares = _shares(workdir, [Path(p) for p in rwdirs])
    with tempfile.TemporaryDirectory(prefix="bpfoom-distro-", dir="/tmp") as scratch:
        results, layers = Path(scratch) / "job", Path(scratch) / "layers"
        results.mkdir()
        (results / "guest.sh").write_text(_guest_script(shell, shares, workdir, env or {}))
        append = (f"root={ROOT_TAG} rootfstype=9p rootflags={NINEP} rw console=ttyS0 "
                  f"panic=-1 psi=1 bpfoom.job=1 log_buf_len={vm.LOG_BUFFER} systemd.show_status=error")
        merged, upper, work = (layers / "root", layers / "upper", layers / "work")
        for path in (merged, upper, work):
            path.mkdir(parents=True)
        qemu_args = [qemu, "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
                     "-m", memory, "-smp", str(cpus), "-kernel", str(bzimage), "-append", append,
                     "-serial", f"file:{results / 'console'}", "-nic", "none"]
        if initrd:
            qemu_args += ["-initrd", str(initrd)]
        qemu_args += (["-accel", "kvm", "-cpu", "host"] if accel == "kvm"
                      else ["-accel", "tcg", "-cpu", "max"])
        qemu_args += ["-virtfs", f"local,path={merged},mount_tag={ROOT_TAG},security_model=none",
                      "-virtfs", f"local,path={results},mount_tag={JOB_TAG},security_model=none"]
        for i, (path, ro) in enumerate(shares):
            qemu_args += ["-virtfs", f"local,path={path},mount_tag=share{i},security_model=none"
                          + (",readonly=on" if ro else "")]
        # The overlay lives in a mount namespace that ends with QEMU: nothing stays mounted.
        overlay = (f"lowerdir={root.path},upperdir={upper},workdir={work}")
        args = ["unshare", "--mount", "--propagation", "private", "--pid", "--fork",
                "--kill-child=SIGKILL", "--", "sh", "-c",
                f"mount -t overlay overlay -o {shlex.quote(overlay)} {shlex.quote(str(merged))} "
                "&& exec \"$@\"", "sh", *qemu_args]
        done = threading.Event()
        follower = None
        if live is not None:
            follower = threading.Thread(target=vm._follow, args=(results / "output", live, done),
                                        daemon=True)
            follower.start()
        started = time.time()
        with vm._stop_signals_raise():
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    preexec_fn=vm._die_with_parent())  # unshare: kills QEMU
            try:
                qemu_output, _ = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                qemu_output, _ = proc.communicate()
            finally:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
                done.set()
        if follower is not None:
            follower.join(timeout=10)

        def read(name: str) -> str:
            path = results / name
            return path.read_text(errors="replace") if path.exists() else ""

        console, output = read("console"), read("output")
        kernel_log = read("kernel.log") or console
        status = results / "status"
        if not status.exists():
            why = (f"timed out after {timeout:.0f} s" if proc.returncode == -9
                   else f"QEMU exited ({proc.returncode}) before the command finished")
            tail = "\n".join(console.splitlines()[-30:])
            said = qemu_output.decode(errors="replace").strip()[-1500:]
            raise DistroError(f"{why}: kernel {bzimage}, root {root.path}, accelerator {accel}."
                              + (f"\nQEMU said:\n{said}" if said else "")
                              + f"\nlast console lines:\n{tail}", output, kernel_log,
                              started=bool(console))
        boot = max(0.0, (results / "system-state").stat().st_mtime - started)
        return DistroRun(int(status.read_text()), output, kernel_log,
                         vm.kernel_log_problems(kernel_log), journal=read("journal"),
                         boot_seconds=boot)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m bpfoom.testing.distro",
        description="Run a command as root in Debian bookworm booted with systemd on bpfoom's "
                    "kernel; exit with its status, or 1 if the kernel log shows a kernel bug.")
    parser.add_argument("--build", action="store_true",
                        help="only build the image (if the cache has none) and print its path")
    parser.add_argument("--kernel", type=Path, help="bzImage (default: current build)")
    parser.add_argument("--initrd", type=Path, help="for a kernel with 9p/virtio as modules")
    parser.add_argument("--memory", default="2G")
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=vm.DEFAULT_TIMEOUT_S, help="seconds")
    parser.add_argument("--journal", type=Path, help="also write the guest's journal here")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    try:
        if args.build:
            built = image()
            print(built.path)
            return 0
        if not command:
            parser.error("give the command after --")
        result = run(command, kernel=args.kernel, memory=args.memory, cpus=args.cpus,
                     timeout=args.timeout, live=sys.stdout, initrd=args.initrd)
    except (vm.VmInterrupted, KeyboardInterrupt) as stopped:
        signum = getattr(stopped, "signum", signal.SIGINT)
        _say(f"stopped by {signal.Signals(signum).name}; the VM is gone")
        return 128 + signum
    except vm.VmError as err:
        _say(str(err))
        return 125
    if args.journal:
        args.journal.write_text(result.journal)
    _say(f"booted to the command in {result.boot_seconds:.1f} s")
    if result.kernel_log_problems:
        _say("the guest's kernel log shows problems:")
        for line in result.kernel_log_problems:
            print(f"  {line}", file=sys.stderr)
        return result.returncode or 1
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
