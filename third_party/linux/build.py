"""Build bpfoom's patched Linux 7.2 and the vmlinux.h of its BTF.

One command does it all: fetch Debian's newest `linux-source-7.2`, apply
patches/series, configure (virtme-ng's guest config + config/*.config), build
bzImage and generate vmlinux.h.  Results are cached under
~/.cache/bpfoom/linux/out/<key>, the key hashing the source version, the
patches, the config fragments and the flavour, so an unchanged tree costs
seconds.  Patching goes through git so that a rebuild only recompiles what a
changed patch touches; ccache covers the rest.

Flavours (each with its own object tree, outputs and out/current-<flavour>):
  normal   the guest kernel the tests and the demo use
  lockdep  + config/lockdep.config: lockdep, atomic-sleep, list, work-object
           and RCU-list checks, hung-task and soft-lockup panics, sched_ext
  kasan    + config/kasan.config: generic KASAN (outline) and kmemleak

    python3 third_party/linux/build.py [--flavour lockdep|kasan] [--source-version 7.2.13-1] [--patches DIR]

Importable: ``build(flavour="normal") -> KernelBuild`` (``debug=True`` is the
lockdep flavour).
"""
from __future__ import annotations

import argparse
import collections
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
import debian  # noqa: E402
from tool_venv import ToolError, virtme_ng_bin  # noqa: E402

PACKAGE = "linux-source-7.2"
PATCHES_DIR = HERE / "patches"
CONFIG_DIR = HERE / "config"
# Bump when the recipe below changes in a way that changes the outputs.
RECIPE = "3"
FLAVOURS = ("normal", "lockdep", "kasan")
# A kfunc that 7.2 has: if BTF lacks it, pahole did not encode kfuncs.
KNOWN_KFUNC = "bpf_get_root_mem_cgroup"
PROGRESS_EVERY_S = 20.0
GIT = ["git", "-c", "user.name=bpfoom", "-c", "user.email=bpfoom@localhost",
       "-c", "core.autocrlf=false", "-c", "gc.auto=0", "-c", "core.quotepath=off"]


class BuildError(RuntimeError):
    """The kernel could not be built; the message says what to do."""


@dataclass(frozen=True)
class KernelBuild:
    """A finished build; every path is inside its out/<key> directory."""

    bzimage: Path
    vmlinux: Path
    vmlinux_h: Path
    config: Path
    version: str  # Debian source version used, e.g. 7.2.13-1
    release: str  # what `uname -r` prints in the guest
    key: str
    flavour: str

    @property
    def debug(self) -> bool:
        return self.flavour != "normal"


def say(message: str) -> None:
    print(f"kernel: {message}", file=sys.stderr, flush=True)


def linux_cache() -> Path:
    path = debian.cache_root() / "linux"
    path.mkdir(parents=True, exist_ok=True)
    return path


def patch_series(patches_dir: Path = PATCHES_DIR) -> list[Path]:
    """The patches listed in `series`, in order (none if there is no series)."""
    series = patches_dir / "series"
    if not series.exists():
        return []
    patches = []
    for line in series.read_text().splitlines():
        name = line.split("#", 1)[0].strip()
        if not name:
            continue
        path = patches_dir / name
        if not path.is_file():
            raise BuildError(f"{series} lists {name}, but {path} does not exist; fix the series")
        patches.append(path)
    return patches


def _flavour(flavour: str) -> str:
    if flavour not in FLAVOURS:
        raise BuildError(f"unknown kernel flavour {flavour!r}; pick one of {', '.join(FLAVOURS)}")
    return flavour


def config_fragments(flavour: str) -> list[Path]:
    fragments = [CONFIG_DIR / "bpfoom.config"]
    if _flavour(flavour) != "normal":
        fragments.append(CONFIG_DIR / f"{flavour}.config")
    return fragments


def cache_key(version: str, patches: list[Path], fragments: list[Path], flavour: str) -> str:
    digest = hashlib.sha256(f"recipe {RECIPE}\nsource {PACKAGE} {version}\n".encode())
    for path in patches + fragments:
        digest.update(f"{path.parent.name}/{path.name}\n".encode())
        digest.update(path.read_bytes())
    digest.update(f"{flavour}\n".encode())
    return ("" if flavour == "normal" else f"{flavour}-") + digest.hexdigest()[:16]


def _choose_version(pinned: str | None) -> str:
    if pinned:
        return pinned
    try:
        return debian.newest_version(PACKAGE)
    except debian.FetchError as err:
        cached = sorted((linux_cache() / "src").glob("*/.git/bpfoom-pristine"))
        if not cached:
            raise BuildError(f"cannot find the newest {PACKAGE}: {err}") from err
        version = cached[-1].parent.parent.name
        say(f"Debian unreachable ({err}); using the cached source {version}")
        return version


def _run(args: list[str], cwd: Path | None = None, env: dict | None = None) -> str:
    proc = subprocess.run(args, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(
            f"`{' '.join(args[:6])}` failed (exit {proc.returncode}) in {cwd}:\n"
            f"{(proc.stdout + proc.stderr).strip()[-2000:]}"
        )
    return proc.stdout


def ensure_source(version: str) -> tuple[Path, str]:
    """The pristine source tree of `version` as a git repo, and its pristine commit."""
    src = linux_cache() / "src" / version
    marker = src / ".git" / "bpfoom-pristine"
    if marker.exists():
        return src, marker.read_text().strip()
    staging = src.with_name(version + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(src, ignore_errors=True)
    staging.mkdir(parents=True)
    deb = debian.download_binary(PACKAGE, version)
    say(f"extracting {deb.name} (dpkg-deb -x, nothing installed)")
    _run(["dpkg-deb", "-x", str(deb), str(staging / "deb")])
    tarballs = sorted((staging / "deb" / "usr" / "src").glob("linux-source-*.tar.*"))
    if not tarballs:
        raise BuildError(f"{deb} holds no usr/src/linux-source-*.tar.*; is it a linux-source package?")
    _run(["tar", "-xf", str(tarballs[0]), "-C", str(staging)])
    shutil.rmtree(staging / "deb")
    (tree,) = [p for p in staging.iterdir() if p.is_dir()]
    say("recording the pristine tree in git (once per source version, about a minute)")
    _run(GIT + ["init", "-q"], cwd=tree)
    _run(GIT + ["add", "-A", "-f"], cwd=tree)
    _run(GIT + ["commit", "-q", "-m", f"{PACKAGE} {version}"], cwd=tree)
    commit = _run(GIT + ["rev-parse", "HEAD"], cwd=tree).strip()
    (tree / ".git" / "bpfoom-pristine").write_text(commit + "\n")
    tree.rename(src)
    shutil.rmtree(staging)
    return src, commit


def apply_patches(src: Path, pristine: str, patches: list[Path], version: str) -> None:
    """Make the work tree pristine + patches, rewriting only files whose content changes.

    The patched tree is built in a scratch index and committed; `git checkout`
    then moves the work tree there, leaving untouched files (and their mtimes)
    alone, so make recompiles only what the patches changed since last time.
    """
    env = dict(os.environ, GIT_INDEX_FILE=str(src / ".git" / "bpfoom-scratch-index"))
    _run(GIT + ["read-tree", pristine], cwd=src, env=env)
    for number, patch in enumerate(patches, 1):
        proc = subprocess.run(GIT + ["apply", "--cached", "--whitespace=nowarn", str(patch)],
                              cwd=src, env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise BuildError(
                f"patch {number} of the series, {patch.name}, does not apply to {PACKAGE} "
                f"{version}:\n{proc.stderr.strip()[-1500:]}\nRefresh it against that source "
                f"(tree with the earlier patches applied: {src}), or pin an older source "
                "with --source-version if Debian still has it."
            )
    tree = _run(GIT + ["write-tree"], cwd=src, env=env).strip()
    commit = pristine
    if patches:
        commit = _run(GIT + ["commit-tree", tree, "-p", pristine, "-m", "bpfoom patches"],
                      cwd=src).strip()
    _run(GIT + ["checkout", "-q", "-f", "--detach", commit], cwd=src)
    _run(GIT + ["clean", "-q", "-ffdx"], cwd=src)


def _make_args(src: Path, obj: Path) -> list[str]:
    # LOCALVERSION= (set, empty): no "+" suffix for our git-managed tree.
    return ["make", "-C", str(src), f"O={obj}", "CC=ccache gcc", "LOCALVERSION=",
            "KBUILD_BUILD_USER=bpfoom", "KBUILD_BUILD_HOST=bpfoom"]


def _build_env() -> dict:
    ccache = debian.cache_root() / "ccache"
    return dict(os.environ, CCACHE_DIR=str(ccache), CCACHE_MAXSIZE="25G", LC_ALL="C")


def configure(src: Path, obj: Path, fragments: list[Path]) -> None:
    """x86_64_defconfig + virtme-ng's guest snippet + our fragments, then olddefconfig."""
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in fragments)).hexdigest()
    stamp = obj / ".bpfoom-config"
    if stamp.exists() and stamp.read_text() == digest and (obj / ".config").exists():
        return
    say("configuring (virtme-ng guest config + " + ", ".join(p.name for p in fragments) + ")")
    obj.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)
    try:
        configkernel = virtme_ng_bin("virtme-configkernel")
    except ToolError as err:
        raise BuildError(str(err)) from err
    custom = [arg for path in fragments for arg in ("--custom", str(path))]
    snippet = _run([str(configkernel), "--dry-run", "--defconfig", *custom], cwd=src)
    env = _build_env()
    _run(_make_args(src, obj) + ["x86_64_defconfig"], env=env)
    with open(obj / ".config", "a") as config:
        config.write("\n# virtme-ng guest config and bpfoom's fragments\n" + snippet)
    _run(_make_args(src, obj) + ["olddefconfig"], env=env)
    _check_config(obj / ".config", fragments)
    stamp.write_text(digest)


def _check_config(config: Path, fragments: list[Path]) -> None:
    """Fail if an option our fragments turn on did not survive olddefconfig."""
    final = config.read_text()
    missing = []
    for fragment in fragments:
        for line in fragment.read_text().splitlines():
            match = re.match(r"(CONFIG_\w+)=(y|m)$", line)
            if match and f"\n{line}\n" not in final:
                missing.append(f"{match.group(1)} (wanted in {fragment.name})")
    if missing:
        raise BuildError(
            "kconfig dropped options we need (their dependencies are off): "
            + ", ".join(missing) + f". See {config} and fix config/*.config."
        )


def make_with_progress(src: Path, obj: Path, target: str) -> None:
    """Run make, showing a line every PROGRESS_EVERY_S seconds and every error/warning."""
    jobs = os.cpu_count() or 2
    counter = obj / ".bpfoom-steps"
    expected = int(counter.read_text()) if counter.exists() else 0
    args = _make_args(src, obj) + [f"-j{jobs}", target]
    started = last_report = time.monotonic()
    steps = 0
    tail: collections.deque[str] = collections.deque(maxlen=60)
    proc = subprocess.Popen(args, env=_build_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace")
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip("\n")
        tail.append(line)
        step = re.match(r"\s+([A-Z][A-Z0-9_]*)\s+(\S+)", line)
        if step:
            steps += 1
        elif re.search(r"\b(error|warning)\b|\*\*\*", line, re.I):
            print(f"  {line}", file=sys.stderr, flush=True)
        now = time.monotonic()
        if now - last_report >= PROGRESS_EVERY_S:
            last_report = now
            share = f"/~{expected}" if expected else ""
            latest = step.group(2) if step else ""
            say(f"[{_clock(now - started)}] {target}: {steps}{share} steps, at {latest}")
    if proc.wait() != 0:
        shown = "\n".join(f"  {line}" for line in tail)
        raise BuildError(f"make {target} failed (exit {proc.returncode}); last lines:\n{shown}")
    if steps > expected:
        counter.write_text(str(steps))
    say(f"[{_clock(time.monotonic() - started)}] {target} done ({steps} steps)")


def _clock(seconds: float) -> str:
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


def write_vmlinux_h(vmlinux: Path, target: Path) -> None:
    """vmlinux.h from the kernel's BTF; also proves the BTF carries the kfuncs."""
    raw = _run(["bpftool", "btf", "dump", "file", str(vmlinux)])
    if f"FUNC '{KNOWN_KFUNC}'" not in raw:
        raise BuildError(
            f"the BTF of {vmlinux} has no FUNC {KNOWN_KFUNC}: pahole "
            f"({_run(['pahole', '--version']).strip()}) did not encode kfuncs. "
            "Install a newer dwarves (pahole) and rebuild."
        )
    with open(target, "w") as header:
        subprocess.run(["bpftool", "btf", "dump", "file", str(vmlinux), "format", "c"],
                       stdout=header, stdin=subprocess.DEVNULL, check=True)


def _publish(out: Path, obj: Path, version: str, patches: list[Path]) -> None:
    """Copy the results into out/<key> atomically (a killed run leaves no half output)."""
    staging = out.with_name(out.name + f".partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    shutil.copy2(obj / "arch" / "x86" / "boot" / "bzImage", staging / "bzImage")
    shutil.copy2(obj / "vmlinux", staging / "vmlinux")
    shutil.copy2(obj / ".config", staging / "config")
    write_vmlinux_h(staging / "vmlinux", staging / "vmlinux.h")
    release = (obj / "include" / "config" / "kernel.release").read_text().strip()
    (staging / "RELEASE").write_text(release + "\n")
    (staging / "SOURCE_VERSION").write_text(f"{PACKAGE} {version}\n")
    (staging / "PATCHES").write_text("".join(
        f"{debian.sha256(p)}  {p.name}\n" for p in patches))
    os.replace(staging, out)


def _current_name(flavour: str) -> str:
    return "current" if flavour == "normal" else f"current-{flavour}"


def _obj_name(version: str, flavour: str) -> str:
    return version if flavour == "normal" else f"{version}-{flavour}"


def _point_current(out: Path, flavour: str) -> None:
    link = out.parent / _current_name(flavour)
    temporary = link.with_name(link.name + f".new-{os.getpid()}")
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(out.name)
    os.replace(temporary, link)


def _result(out: Path, version: str, key: str, flavour: str) -> KernelBuild:
    return KernelBuild(
        bzimage=out / "bzImage", vmlinux=out / "vmlinux", vmlinux_h=out / "vmlinux.h",
        config=out / "config", version=version,
        release=(out / "RELEASE").read_text().strip(), key=key, flavour=flavour,
    )


def _prune(cache: Path, keep_version: str) -> None:
    """Drop outputs beyond the newest few and trees of other source versions."""
    outs = sorted((p for p in (cache / "out").iterdir() if p.is_dir() and not p.is_symlink()),
                  key=lambda p: p.stat().st_mtime, reverse=True)
    current = {os.path.realpath(cache / "out" / _current_name(f)) for f in FLAVOURS}
    for stale in outs[8:]:
        if str(stale) not in current:
            shutil.rmtree(stale, ignore_errors=True)
    for kind in ("src", "obj"):
        for tree in (cache / kind).glob("*"):
            if tree.name not in {_obj_name(keep_version, f) for f in FLAVOURS}:
                say(f"removing {tree} (older source version)")
                shutil.rmtree(tree, ignore_errors=True)


class _Lock:
    """One build at a time per cache: helpers in other trees share it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> "_Lock":
        self.file = open(self.path, "a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for another kernel build to finish (lock {self.path})")
            fcntl.flock(self.file, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()


def build(debug: bool = False, *, flavour: str | None = None,
          source_version: str | None = None, patches_dir: Path = PATCHES_DIR,
          force: bool = False) -> KernelBuild:
    """Build (or reuse) the kernel of `flavour` (debug=True: lockdep) for the current patches."""
    flavour = _flavour(flavour or ("lockdep" if debug else "normal"))
    version = _choose_version(source_version)
    cache = linux_cache()
    (cache / "out").mkdir(exist_ok=True)
    key = cache_key(version, patch_series(patches_dir), config_fragments(flavour), flavour)
    if (cache / "out" / key).is_dir() and not force:
        _point_current(cache / "out" / key, flavour)
        return _result(cache / "out" / key, version, key, flavour)
    with _Lock(cache / "lock"):
        # Read the inputs again: they may have changed while we waited.
        patches = patch_series(patches_dir)
        fragments = config_fragments(flavour)
        key = cache_key(version, patches, fragments, flavour)
        out = cache / "out" / key
        if out.is_dir() and not force:
            _point_current(out, flavour)
            return _result(out, version, key, flavour)
        started = time.monotonic()
        say(f"building {PACKAGE} {version} with {len(patches)} patch(es)"
            f"{'' if flavour == 'normal' else f' ({flavour} flavour)'} -> {out}")
        for partial in (cache / "src").glob("*.partial"):
            shutil.rmtree(partial, ignore_errors=True)
        for partial in (cache / "out").glob("*.partial-*"):
            shutil.rmtree(partial, ignore_errors=True)
        src, pristine = ensure_source(version)
        apply_patches(src, pristine, patches, version)
        obj = cache / "obj" / _obj_name(version, flavour)
        configure(src, obj, fragments)
        make_with_progress(src, obj, "bzImage")
        shutil.rmtree(out, ignore_errors=True)
        _publish(out, obj, version, patches)
        _point_current(out, flavour)
        _prune(cache, version)
        say(f"built in {_clock(time.monotonic() - started)}")
    return _result(out, version, key, flavour)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flavour", choices=FLAVOURS, default=None,
                        help="normal (default), lockdep or kasan (separate trees and outputs)")
    parser.add_argument("--debug", action="store_true", help="same as --flavour lockdep")
    parser.add_argument("--source-version", help=f"{PACKAGE} version (default: newest in Debian)")
    parser.add_argument("--patches", type=Path, default=PATCHES_DIR,
                        help="directory with `series` and the patches (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="rebuild even if cached")
    args = parser.parse_args(argv)
    try:
        result = build(args.debug, flavour=args.flavour, source_version=args.source_version,
                       patches_dir=args.patches.resolve(), force=args.force)
    except (BuildError, debian.FetchError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"source:    {PACKAGE} {result.version}")
    print(f"release:   {result.release}")
    print(f"flavour:   {result.flavour}")
    print(f"key:       {result.key}")
    print(f"bzImage:   {result.bzimage}")
    print(f"vmlinux.h: {result.vmlinux_h}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
