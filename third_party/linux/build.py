"""Build bpfoom's patched Linux (7.2 or 7.3) and the vmlinux.h of its BTF.

One command does it all: pick Debian's newest `linux-source-X.Y` for which
we carry a patch series, fetch it, apply that series, configure (virtme-ng's
guest config + config/*.config), build bzImage and generate vmlinux.h.
Results are cached under ~/.cache/bpfoom/linux/out/<key>, the key hashing the
source package and version, the patches, the config fragments and the
flavour, so an unchanged tree costs seconds.  Patching goes through git so
that a rebuild only recompiles what a changed patch touches; ccache covers
the rest.

Series: patches/ is the one for Linux 7.2 (its directory name is part of the
7.2 cache keys, so it stays there), patches-X.Y/ the one for X.Y.

Which source (see choose_source): --source-version, else $BPFOOM_LINUX_SOURCE,
else the newest linux-source-X.Y in Debian unstable that has a series here;
experimental only if unstable has none.  Either setting takes a full Debian
version (7.3~rc7-1~exp1) or a series (7.3: its newest in unstable, else
experimental).

Flavours (each with its own object tree, outputs and out/current-<flavour>):
  normal   the guest kernel the tests and the demo use
  lockdep  + config/lockdep.config: lockdep, atomic-sleep, list, work-object
           and RCU-list checks, hung-task and soft-lockup panics, sched_ext
  kasan    + config/kasan.config: generic KASAN (outline) and kmemleak

    python3 third_party/linux/build.py [--flavour lockdep|kasan] [--source-version 7.2.13-1|7.3] [--patches DIR]

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

PACKAGE_PREFIX = "linux-source-"
# The 7.2 series predates per-version directories; moving it would change
# every 7.2 cache key (they hash "patches/<name>").
PATCHES_DIR = HERE / "patches"
PATCHES_DIR_SERIES = "7.2"
SOURCE_ENV = "BPFOOM_LINUX_SOURCE"
CONFIG_DIR = HERE / "config"
# Bump when the recipe below changes in a way that changes the outputs.
RECIPE = "3"
FLAVOURS = ("normal", "lockdep", "kasan")
# A kfunc that 7.2 and 7.3 have: if BTF lacks it, pahole did not encode kfuncs.
KNOWN_KFUNC = "bpf_get_root_mem_cgroup"
PROGRESS_EVERY_S = 20.0
# Outputs kept besides the current ones: a few per flavour of each carried series.
KEEP_OUTPUTS = 12
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
    version: str  # Debian source version used, e.g. 7.2.13-1 (of package_for(version))
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
    digest = hashlib.sha256(f"recipe {RECIPE}\nsource {package_for(version)} {version}\n".encode())
    for path in patches + fragments:
        digest.update(f"{path.parent.name}/{path.name}\n".encode())
        digest.update(path.read_bytes())
    digest.update(f"{flavour}\n".encode())
    return ("" if flavour == "normal" else f"{flavour}-") + digest.hexdigest()[:16]


def series_of(version: str) -> str:
    """The Linux major.minor a Debian linux-source version belongs to: 7.3~rc7-1~exp1 -> 7.3."""
    match = re.match(r"(?:\d+:)?(\d+)\.(\d+)(?:$|[.~+-])", version)
    if not match:
        raise BuildError(f"{version!r} is not a linux-source version (like 7.2.13-1) "
                         "nor a series (like 7.3)")
    return f"{match.group(1)}.{match.group(2)}"


def package_for(version: str) -> str:
    return PACKAGE_PREFIX + series_of(version)


def _series_key(series: str) -> tuple[int, ...]:
    return tuple(int(part) for part in series.split("."))


def series_dirs() -> dict[str, Path]:
    """Every Linux series we carry patches for (oldest first) and its directory."""
    found = {PATCHES_DIR_SERIES: PATCHES_DIR}
    for path in HERE.glob("patches-*"):
        series = path.name[len("patches-"):]
        if re.fullmatch(r"\d+\.\d+", series) and (path / "series").is_file():
            found[series] = path
    return dict(sorted(found.items(), key=lambda item: _series_key(item[0])))


def _carried() -> str:
    return ", ".join(f"{series} ({path.relative_to(HERE.parent.parent)})"
                     for series, path in series_dirs().items())


def patches_dir_for(version: str) -> Path:
    """The series directory for `version`'s major.minor; fails naming what exists."""
    series = series_of(version)
    path = series_dirs().get(series)
    if path is None:
        named = package_for(version) + ("" if version == series else f" {version}")
        raise BuildError(
            f"{named}: bpfoom carries no patch series for Linux "
            f"{series}; it has series for {_carried()}. Pick a version of one of those "
            f"(--source-version or ${SOURCE_ENV}), or port the newest series to {series} "
            f"into {(HERE / f'patches-{series}').relative_to(HERE.parent.parent)}/."
        )
    return path


def _offered(suite: str) -> dict[str, str]:
    """{series: newest version} of the linux-source-X.Y packages `suite` has."""
    offered = {}
    for name in debian.package_names(PACKAGE_PREFIX, suite):
        match = re.fullmatch(re.escape(PACKAGE_PREFIX) + r"(\d+\.\d+)", name)
        if match:
            found = debian.versions(name, suite)
            if found:
                offered[match.group(1)] = debian.newest(found)
    return offered


def _describe(offered: dict[str, dict[str, str]]) -> str:
    parts = []
    for suite, packages in offered.items():
        listed = ", ".join(f"{PACKAGE_PREFIX}{series} {version}"
                           for series, version in sorted(packages.items(),
                                                         key=lambda i: _series_key(i[0])))
        parts.append(f"{suite} has {listed or 'no linux-source-X.Y'}")
    return "; ".join(parts)


def _choose_online(wanted: str | None) -> str:
    """The version `wanted` names (None: the default rule), asking Debian's indexes."""
    carried = series_dirs()
    if wanted is not None:
        series = series_of(wanted)
        if wanted != series:
            return wanted  # a full version: pinned, fetched from whichever suite has it
        patches_dir_for(series)  # fail early if we carry no series for it
        package = PACKAGE_PREFIX + series
        for suite in debian.SUITES:
            found = debian.versions(package, suite)
            if found:
                return debian.newest(found)
        raise BuildError(f"Debian has no {package} (in {' nor '.join(debian.SUITES)}); "
                         f"series carried here: {_carried()}")
    offered: dict[str, dict[str, str]] = {}
    for suite in debian.SUITES:
        offered[suite] = _offered(suite)
        usable = [series for series in offered[suite] if series in carried]
        if usable:
            best = max(usable, key=_series_key)
            newer = [s for s in offered[suite] if _series_key(s) > _series_key(best)]
            if newer:
                say(f"Debian {suite} also has {', '.join(PACKAGE_PREFIX + s for s in newer)}, "
                    f"for which no series is carried here; using {best}")
            return offered[suite][best]
    raise BuildError(
        f"no Debian linux-source-X.Y matches a series carried here: {_describe(offered)}; "
        f"bpfoom has series for {_carried()}. Port the series to one Debian has "
        f"(third_party/linux/patches-X.Y/), or place a linux-source .deb in "
        f"{debian.cache_root() / 'debs'} and name its version with --source-version."
    )


def _cached_sources() -> dict[str, str]:
    """{version: series} of the pristine source trees in the cache."""
    found = {}
    for marker in (linux_cache() / "src").glob("*/.git/bpfoom-pristine"):
        try:
            found[marker.parent.parent.name] = series_of(marker.parent.parent.name)
        except BuildError:
            continue
    return found


def choose_source(pinned: str | None = None) -> str:
    """The linux-source version to build.

    `pinned` (--source-version), else $BPFOOM_LINUX_SOURCE, else the newest
    linux-source-X.Y in Debian unstable with a series here, else the same in
    experimental.  Unstable first: it holds released kernels, experimental
    release candidates; when unstable moves to the next series (and drops the
    old one) the build follows as soon as that series is carried here.  A full
    version is used as given (no network if its .deb or tree is cached); a
    series (7.3) means its newest version, from unstable, else experimental.
    Offline, the newest cached tree that fits, releases before candidates.
    """
    wanted = pinned or os.environ.get(SOURCE_ENV) or None
    if wanted is not None and wanted != series_of(wanted):
        return wanted
    try:
        return _choose_online(wanted)
    except debian.FetchError as err:
        carried = series_dirs()
        cached = [version for version, series in _cached_sources().items()
                  if series in carried and wanted in (None, series)]
        if not cached:
            raise BuildError(f"cannot find the newest linux-source to build: {err}") from err
        releases = [v for v in cached if "~" not in v.split("-", 1)[0]]
        version = debian.newest(releases or cached)
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
    deb = debian.download_binary(package_for(version), version)
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
    _run(GIT + ["commit", "-q", "-m", f"{package_for(version)} {version}"], cwd=tree)
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
                f"patch {number} of the series, {patch.name}, does not apply to "
                f"{package_for(version)} {version}:\n{proc.stderr.strip()[-1500:]}\nRefresh it against that source "
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
    (staging / "SOURCE_VERSION").write_text(f"{package_for(version)} {version}\n")
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


def _tree_version(name: str) -> str:
    for flavour in FLAVOURS[1:]:
        if name.endswith(f"-{flavour}"):
            return name[: -len(flavour) - 1]
    return name


def _prune(cache: Path, keep_version: str) -> None:
    """Drop outputs beyond the newest few, and trees of older versions of the same series
    (and of series no longer carried): one source tree per carried series stays."""
    outs = sorted((p for p in (cache / "out").iterdir() if p.is_dir() and not p.is_symlink()),
                  key=lambda p: p.stat().st_mtime, reverse=True)
    current = {os.path.realpath(cache / "out" / _current_name(f)) for f in FLAVOURS}
    for stale in outs[KEEP_OUTPUTS:]:
        if str(stale) not in current:
            shutil.rmtree(stale, ignore_errors=True)
    carried = series_dirs()
    for kind in ("src", "obj"):
        for tree in (cache / kind).glob("*"):
            version = _tree_version(tree.name)
            try:
                series = series_of(version)
            except BuildError:
                continue  # not ours
            if version == keep_version or (series != series_of(keep_version)
                                           and series in carried):
                continue
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
          source_version: str | None = None, patches_dir: Path | None = None,
          force: bool = False) -> KernelBuild:
    """Build (or reuse) the kernel of `flavour` (debug=True: lockdep) for the current patches.

    `source_version`: see choose_source; `patches_dir`: a series to use instead
    of the one carried for that version's major.minor.
    """
    flavour = _flavour(flavour or ("lockdep" if debug else "normal"))
    version = choose_source(source_version)
    if patches_dir is None:
        patches_dir = patches_dir_for(version)
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
        say(f"building {package_for(version)} {version} with {len(patches)} patch(es) "
            f"of {patches_dir.name}/"
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
    parser.add_argument("--source-version",
                        help="linux-source version (7.3~rc7-1~exp1) or series (7.3); default: "
                        f"${SOURCE_ENV}, else the newest in Debian unstable with a series here")
    parser.add_argument("--patches", type=Path, default=None,
                        help="directory with `series` and the patches (default: the series "
                        "carried for the source's major.minor, patches/ or patches-X.Y/)")
    parser.add_argument("--force", action="store_true", help="rebuild even if cached")
    args = parser.parse_args(argv)
    try:
        result = build(args.debug, flavour=args.flavour, source_version=args.source_version,
                       patches_dir=args.patches.resolve() if args.patches else None,
                       force=args.force)
    except (BuildError, debian.FetchError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"source:    {package_for(result.version)} {result.version}")
    print(f"release:   {result.release}")
    print(f"flavour:   {result.flavour}")
    print(f"key:       {result.key}")
    print(f"bzImage:   {result.bzimage}")
    print(f"vmlinux.h: {result.vmlinux_h}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
