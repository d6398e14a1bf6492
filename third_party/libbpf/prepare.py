"""Prepare the patched libbpf that bpfoom links statically.

libbpf's code is never committed.  The pristine source is, in this order:

1. the tarball ``$BPFOOM_LIBBPF_TARBALL`` names (a libbpf 1.7.x/1.8.x
   source tarball on disk: Debian's ``libbpf_<v>.orig.tar.gz`` or a libbpf
   release archive), when set;
2. else the newest version of Debian unstable's source package ``libbpf``
   in the series SOURCE allows (1.7, 1.8) to which ``patches/*.patch``
   apply, downloaded once into the cache (apt verifies it against the signed
   index);
3. else, when Debian cannot be read, the newest such tarball already cached.

It is extracted into ``src/``, patched and its headers installed.  A stamp
records the version, the tarball's sha256 and every patch's sha256, so a
prepared tree is reused as is (no network) and a changed patch set
re-prepares it.  An sdist ships the prepared tree, which is why installing
from it needs neither the cache nor the network.

From the shell::

    python3 third_party/libbpf/prepare.py            # prepare src/, print it
    python3 third_party/libbpf/prepare.py version    # the libbpf version src/ holds
    python3 third_party/libbpf/prepare.py include    # print the header dir
    python3 third_party/libbpf/prepare.py static     # build libbpf.a, print it
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

LIBBPF_DIR = Path(__file__).resolve().parent
REPO_ROOT = LIBBPF_DIR.parent.parent
SOURCE_RULES = LIBBPF_DIR / "SOURCE"
PATCH_DIR = LIBBPF_DIR / "patches"
SOURCE_TREE = LIBBPF_DIR / "src"
STAMP = SOURCE_TREE / ".bpfoom-prepared"
# Installed headers of the prepared tree: bpf/*.h and the patched linux/bpf.h.
HEADERS_DIR = SOURCE_TREE / "headers"
DEFAULT_BUILD_ROOT = REPO_ROOT / "build" / "libbpf"
TARBALL_ENV = "BPFOOM_LIBBPF_TARBALL"
# libbpf's own -Werror is dropped so a newer compiler's new warning cannot
# break an install; -fPIC because the archive goes into a shared extension.
STATIC_CFLAGS = "-g -O2 -Wall -std=gnu89 -fPIC"


class PrepareError(RuntimeError):
    """libbpf's sources cannot be prepared; the message says what to do."""


@dataclass(frozen=True)
class SourceRules:
    """Which pristine libbpf may be used, as SOURCE says."""

    package: str
    series: tuple[str, ...]  # "1.7", "1.8": upstream major.minor versions our patches target


@dataclass(frozen=True)
class Candidate:
    """One pristine tarball prepare may try: where it comes from, and how to get it."""

    label: str  # e.g. "Debian libbpf 1.7.0-1", for messages and the stamp
    fetch: Callable[[], Path]


def read_rules(path: Path = SOURCE_RULES) -> SourceRules:
    fields: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            key, _, value = line.partition("=")
            fields[key.strip()] = value.strip()
    try:
        return SourceRules(fields["package"], tuple(fields["series"].split()))
    except KeyError as missing:
        raise PrepareError(f"{path} lacks the field {missing}; it needs package and series")


def patches() -> list[Path]:
    """Our patches, applied in name order."""
    return sorted(PATCH_DIR.glob("*.patch"))


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _patch_lines() -> list[str]:
    return [f"{patch.name} {_file_sha256(patch)}" for patch in patches()]


def _stamp_fields() -> dict[str, str]:
    if not STAMP.exists():
        return {}
    lines = STAMP.read_text().splitlines()
    return dict(line.split(" ", 1) for line in lines if line.startswith(("version ", "tarball ")))


def is_prepared() -> bool:
    """src/ holds a libbpf patched with today's patches (and $BPFOOM_LIBBPF_TARBALL's, if set)."""
    if not STAMP.exists() or STAMP.read_text().splitlines()[2:] != _patch_lines():
        return False
    override = os.environ.get(TARBALL_ENV)
    if override and Path(override).is_file():
        return _stamp_fields().get("tarball", "").endswith(_file_sha256(Path(override)))
    return True


def prepared_version() -> str:
    """What src/ was prepared from: "libbpf 1.7 from Debian libbpf 1.7.0-1 (<tarball>)"."""
    prepare()
    return _stamp_fields()["version"]


def _debian():
    sys.path.insert(0, str(LIBBPF_DIR.parent))
    try:
        import debian
    finally:
        sys.path.pop(0)
    return debian


def _upstream(version: str) -> str:
    """Debian's "1:1.7.0-1" -> "1.7.0"."""
    return version.split(":", 1)[-1].rsplit("-", 1)[0]


def _in_series(upstream: str, rules: SourceRules) -> bool:
    return any(upstream == s or upstream.startswith(s + ".") for s in rules.series)


def _version_key(upstream: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", upstream))


def candidates(rules: SourceRules) -> Iterator[Candidate]:
    """The tarballs to try, best first (see the module's docstring)."""
    override = os.environ.get(TARBALL_ENV)
    if override:
        path = Path(override)
        if not path.is_file():
            raise PrepareError(
                f"{TARBALL_ENV}={override} does not exist: point it at a libbpf "
                f"{' or '.join(rules.series)} source tarball on this machine (Debian's "
                f"libbpf_<version>.orig.tar.gz or a libbpf release archive), or unset it to "
                "fetch the source from Debian")
        yield Candidate(f"{TARBALL_ENV}={override}", lambda: path)
        return
    debian = _debian()
    try:
        published = debian.source_files(rules.package)
    except debian.FetchError as err:
        cached = sorted(debian.cache_root().glob("sources/libbpf_*.orig.tar.*"),
                        key=lambda p: _version_key(p.name), reverse=True)
        if not cached:
            raise PrepareError(
                f"libbpf's source is missing: Debian unstable cannot be read ({err}) and no "
                f"libbpf tarball is cached in {debian.cache_root() / 'sources'}; get a libbpf "
                f"{' or '.join(rules.series)} source tarball (Debian's "
                f"libbpf_<version>.orig.tar.gz or a libbpf release archive) and set "
                f"{TARBALL_ENV}=/path/to/it") from err
        for path in cached:
            yield Candidate(f"cached {path.name} (Debian unreachable)", lambda path=path: path)
        return
    usable = [(v, files) for v, files in published if _in_series(_upstream(v), rules)]
    usable.sort(key=lambda item: _version_key(_upstream(item[0])), reverse=True)
    if not usable:
        raise PrepareError(
            f"Debian unstable has no {rules.package} {' or '.join(rules.series)} source package "
            f"(it has {', '.join(v for v, _ in published) or 'none'}); get such a source "
            f"tarball and set {TARBALL_ENV}=/path/to/it, or port patches/ and SOURCE's series")
    for version, files in usable:
        orig = next((name for name in files if ".orig.tar." in name), None)
        if orig is None:
            continue

        def fetch(version=version, orig=orig, sha=files[orig]) -> Path:
            try:
                return debian.verify(debian.download_source(rules.package, version, orig), sha)
            except debian.FetchError as err:
                raise PrepareError(str(err)) from err
        yield Candidate(f"Debian {rules.package} {version}", fetch)


def _extract(tarball: Path, into: Path) -> None:
    """Extract the tarball's single top directory's contents into `into`."""
    with tarfile.open(tarball) as archive:
        archive.extractall(into, filter="data")
    tops = list(into.iterdir())
    if len(tops) != 1 or not tops[0].is_dir():
        raise PrepareError(f"{tarball} does not hold one top-level directory; is it a libbpf release?")
    for entry in tops[0].iterdir():
        entry.rename(into / entry.name)
    tops[0].rmdir()


def _apply(patch: Path, tree: Path) -> None:
    proc = subprocess.run(
        ["patch", "-p1", "--forward", "--batch", "--quiet", "-i", str(patch)],
        cwd=tree, capture_output=True, text=True,
    )
    if proc.returncode != 0:
        raise PrepareError(
            f"patch {patch.name} does not apply: "
            f"{(proc.stdout + proc.stderr).strip()[-800:]}"
        )


def _make(tree: Path, *args: str) -> None:
    proc = subprocess.run(
        ["make", "-C", str(tree / "src"), f"-j{os.cpu_count() or 1}", *args],
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        raise PrepareError(
            f"make {' '.join(args[:1])} in {tree / 'src'} failed: "
            f"{(proc.stdout + proc.stderr).strip()[-1500:]}; libbpf needs make, a C "
            "compiler, pkg-config, libelf-dev and zlib1g-dev"
        )


def prepare(force: bool = False) -> Path:
    """Make `src/` a supported libbpf with our patches and installed headers."""
    if not force and is_prepared():
        return SOURCE_TREE
    with _exclusive():
        if force or not is_prepared():
            _prepare_locked(read_rules())
    return SOURCE_TREE


@contextlib.contextmanager
def _exclusive() -> Iterator[None]:
    """Serialise preparing and building between processes (setup.py, BPF builds, tests)."""
    fd = os.open(LIBBPF_DIR, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _series_of(tree: Path) -> str:
    """"1.7" from the tree's src/libbpf_version.h."""
    header = tree / "src" / "libbpf_version.h"
    numbers = dict(re.findall(r"#define LIBBPF_(MAJOR|MINOR)_VERSION (\d+)",
                              header.read_text() if header.exists() else ""))
    if len(numbers) != 2:
        raise PrepareError(f"it has no src/libbpf_version.h; is it a libbpf source tarball?")
    return f"{numbers['MAJOR']}.{numbers['MINOR']}"


def _try(candidate: Candidate, rules: SourceRules, staging: Path) -> tuple[str, Path]:
    """Extract and patch one candidate into `staging`: (its version, its tarball), or PrepareError."""
    tarball = candidate.fetch()
    _extract(tarball, staging)
    series = _series_of(staging)
    if series not in rules.series:
        raise PrepareError(f"it is libbpf {series}; our patches are for "
                           f"{' or '.join(rules.series)}")
    for patch in patches():
        _apply(patch, staging)
    return f"libbpf {series} from {candidate.label} ({tarball.name})", tarball


def _prepare_locked(rules: SourceRules) -> None:
    failures = []
    for candidate in candidates(rules):
        staging = Path(tempfile.mkdtemp(prefix=".src-", dir=LIBBPF_DIR))
        try:
            try:
                version, tarball = _try(candidate, rules, staging)
            except PrepareError as err:
                failures.append(f"{candidate.label}: {err}")
                continue
            _make(staging, "install_headers", "install_uapi_headers",
                  f"DESTDIR={staging}", "INCLUDEDIR=/headers", "UAPIDIR=/headers")
            lines = [f"version {version}", f"tarball {tarball.name} {_file_sha256(tarball)}",
                     *_patch_lines()]
            (staging / STAMP.name).write_text("\n".join(lines) + "\n")
            if SOURCE_TREE.exists():
                shutil.rmtree(SOURCE_TREE)
            staging.rename(SOURCE_TREE)
            print(f"libbpf: prepared {version} with {len(patches())} patches", file=sys.stderr)
            return
        finally:
            if staging.exists():
                shutil.rmtree(staging)
    raise PrepareError(
        "no libbpf source could be prepared: " + "; ".join(failures)
        + f". Set {TARBALL_ENV} to a libbpf {' or '.join(rules.series)} source tarball our "
        "patches apply to, or port patches/ to the newer libbpf")


def include_dir() -> Path:
    """Header root: ``<bpf/bpf_helpers.h>``, ``<bpf/libbpf.h>``, patched ``<linux/bpf.h>``."""
    prepare()
    return HEADERS_DIR


def static_library_path(build_root: Path = DEFAULT_BUILD_ROOT) -> Path:
    """Where static_library() puts libbpf.a for the prepared tree.

    The build directory is keyed by the stamp, so a re-prepared tree never
    links objects left over from an older patch set.
    """
    prepare()
    key = hashlib.sha256(STAMP.read_bytes()).hexdigest()[:16]
    return build_root / key / "libbpf.a"


def static_library(build_root: Path = DEFAULT_BUILD_ROOT) -> Path:
    """Build (if needed) the static, PIC libbpf.a of the prepared tree and return it."""
    archive = static_library_path(build_root)
    with _exclusive():
        _make(SOURCE_TREE, "BUILD_STATIC_ONLY=1", f"OBJDIR={archive.parent}",
              f"CFLAGS={STATIC_CFLAGS}", str(archive))
    return archive


def _main(argv: list[str]) -> int:
    commands = {"": prepare, "version": prepared_version, "include": include_dir,
                "static": static_library}
    command = argv[0] if argv else ""
    if len(argv) > 1 or command not in commands:
        print("usage: prepare.py [version | include | static]", file=sys.stderr)
        return 2
    print(commands[command]())
    return 0


if __name__ == "__main__":
    try:
        sys.exit(_main(sys.argv[1:]))
    except PrepareError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
