"""Prepare the patched libbpf that bpfoom links statically.

libbpf's code is never committed: the pristine release tarball pinned in
SOURCE is fetched from Debian (once, into the cache), verified, extracted
into ``src/`` and patched with ``patches/*.patch``.  A stamp records the
tarball's sha256 and every patch's sha256, so a prepared tree is reused as is
(no network) and a changed patch set re-prepares it.  An sdist ships the
prepared tree, which is why installing from it needs neither the cache nor
the network.

From the shell::

    python3 third_party/libbpf/prepare.py            # prepare src/, print it
    python3 third_party/libbpf/prepare.py include    # print the header dir
    python3 third_party/libbpf/prepare.py static     # build libbpf.a, print it
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

LIBBPF_DIR = Path(__file__).resolve().parent
REPO_ROOT = LIBBPF_DIR.parent.parent
SOURCE_PIN = LIBBPF_DIR / "SOURCE"
PATCH_DIR = LIBBPF_DIR / "patches"
SOURCE_TREE = LIBBPF_DIR / "src"
STAMP = SOURCE_TREE / ".bpfoom-prepared"
# Installed headers of the prepared tree: bpf/*.h and the patched linux/bpf.h.
HEADERS_DIR = SOURCE_TREE / "headers"
DEFAULT_BUILD_ROOT = REPO_ROOT / "build" / "libbpf"
# libbpf's own -Werror is dropped so a newer compiler's new warning cannot
# break an install; -fPIC because the archive goes into a shared extension.
STATIC_CFLAGS = "-g -O2 -Wall -std=gnu89 -fPIC"


class PrepareError(RuntimeError):
    """libbpf's sources cannot be prepared; the message says what to do."""


@dataclass(frozen=True)
class SourcePin:
    """The one tarball we build from, as pinned in SOURCE."""

    package: str
    version: str
    file: str
    sha256: str


def read_pin(path: Path = SOURCE_PIN) -> SourcePin:
    fields: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            fields[key.strip()] = value.strip()
    try:
        return SourcePin(**{name: fields[name] for name in ("package", "version", "file", "sha256")})
    except KeyError as missing:
        raise PrepareError(f"{path} lacks the field {missing}; it needs package, version, file, sha256")


def patches() -> list[Path]:
    """Our patches, applied in name order."""
    return sorted(PATCH_DIR.glob("*.patch"))


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def expected_stamp(pin: SourcePin) -> str:
    """What the stamp of a tree prepared from `pin` and today's patches says."""
    lines = [f"{pin.file} {pin.sha256}"]
    lines += [f"{patch.name} {_file_sha256(patch)}" for patch in patches()]
    return "\n".join(lines) + "\n"


def is_prepared(pin: SourcePin | None = None) -> bool:
    pin = pin or read_pin()
    return STAMP.exists() and STAMP.read_text() == expected_stamp(pin)


def fetch_tarball(pin: SourcePin) -> Path:
    """The pinned tarball from the cache, downloading it once if needed."""
    sys.path.insert(0, str(LIBBPF_DIR.parent))
    try:
        import debian
    finally:
        sys.path.pop(0)
    cached = debian.cache_root() / "sources" / pin.file
    if not cached.exists():
        try:
            cached = debian.download_source(pin.package, pin.version, pin.file)
        except debian.FetchError as err:
            raise PrepareError(
                f"libbpf source {pin.file} (sha256 {pin.sha256}) is missing: {err}"
            ) from err
    try:
        return debian.verify(cached, pin.sha256)
    except debian.FetchError as err:
        raise PrepareError(str(err)) from err


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
            f"patch {patch.name} does not apply to the pinned libbpf: "
            f"{(proc.stdout + proc.stderr).strip()[-800:]}; fix the patch or the pin"
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
    """Make `src/` the pinned libbpf with our patches and installed headers."""
    pin = read_pin()
    if not force and is_prepared(pin):
        return SOURCE_TREE
    with _exclusive():
        if force or not is_prepared(pin):
            _prepare_locked(pin)
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


def _prepare_locked(pin: SourcePin) -> None:
    tarball = fetch_tarball(pin)
    staging = Path(tempfile.mkdtemp(prefix=".src-", dir=LIBBPF_DIR))
    try:
        _extract(tarball, staging)
        for patch in patches():
            _apply(patch, staging)
        _make(staging, "install_headers", "install_uapi_headers",
              f"DESTDIR={staging}", "INCLUDEDIR=/headers", "UAPIDIR=/headers")
        (staging / STAMP.name).write_text(expected_stamp(pin))
        if SOURCE_TREE.exists():
            shutil.rmtree(SOURCE_TREE)
        staging.rename(SOURCE_TREE)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


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
    commands = {"": prepare, "include": include_dir, "static": static_library}
    command = argv[0] if argv else ""
    if len(argv) > 1 or command not in commands:
        print("usage: prepare.py [include | static]", file=sys.stderr)
        return 2
    print(commands[command]())
    return 0


if __name__ == "__main__":
    try:
        sys.exit(_main(sys.argv[1:]))
    except PrepareError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
