"""Download-only access to Debian unstable (and experimental), verified by apt,
cached outside the repo.

The system runs Debian stable; installing unstable packages would replace its
libc.  So we give apt a private configuration (its own source list, lists and
cache directories) that can read unstable's signed indexes and download files
into our cache, and is never used to install anything.  apt checks every
downloaded file against the signed index; callers may pin a sha256 as well.
Experimental gets a configuration of its own (apt-experimental/), so asking
unstable never returns an experimental version by accident.

Usable as a module (``download_binary``, ``download_source``, ``versions``,
``package_names``) and from the shell:
``python3 third_party/debian.py newest linux-source-7.2 [experimental]``.
"""
from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
SYSTEM_SOURCES = (
    Path("/etc/apt/sources.list.d/debian.sources"),
    Path("/etc/apt/sources.list"),
)
INDEX_MAX_AGE_S = 6 * 3600
SUITES = ("unstable", "experimental")


class FetchError(RuntimeError):
    """A package or file could not be had; the message says what to do."""


def cache_root() -> Path:
    """Where downloads live: $BPFOOM_CACHE, else ~/.cache/bpfoom."""
    root = os.environ.get("BPFOOM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "bpfoom"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _system_mirror() -> str:
    """The Debian mirror the system already uses (we name no host ourselves)."""
    for source in SYSTEM_SOURCES:
        if not source.exists():
            continue
        text = source.read_text()
        match = re.search(r"^URIs:\s*(\S+)", text, re.M) or re.search(
            r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+\S+", text, re.M
        )
        if match:
            return match.group(1).rstrip("/")
    raise FetchError(
        "no Debian mirror found in /etc/apt/sources.list.d/debian.sources or "
        "/etc/apt/sources.list; configure apt for Debian first"
    )


def _suite(suite: str) -> str:
    if suite not in SUITES:
        raise FetchError(f"unknown Debian suite {suite!r}; bpfoom reads {' and '.join(SUITES)}")
    return suite


def _apt_dir(suite: str = "unstable") -> Path:
    apt_dir = cache_root() / f"apt-{_suite(suite)}"
    (apt_dir / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (apt_dir / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    sources = apt_dir / "sources.list"
    mirror = _system_mirror()
    text = (
        f"deb [signed-by={KEYRING}] {mirror} {suite} main\n"
        f"deb-src [signed-by={KEYRING}] {mirror} {suite} main\n"
    )
    if not sources.exists() or sources.read_text() != text:
        sources.write_text(text)
    return apt_dir


def _apt_options(apt_dir: Path) -> list[str]:
    return [
        "-o", f"Dir::Etc::SourceList={apt_dir / 'sources.list'}",
        "-o", "Dir::Etc::SourceParts=/dev/null",
        "-o", f"Dir::State::Lists={apt_dir / 'lists'}",
        "-o", f"Dir::Cache={apt_dir / 'cache'}",
        "-o", "Dir::State::status=/dev/null",
        "-o", "APT::Architectures=amd64",
        "-o", "APT::Sandbox::User=root",
        "-o", "Debug::NoLocking=1",
    ]


def _run(args: list[str], cwd: Path | None = None) -> str:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise FetchError(
            f"{' '.join(args[:1] + args[-3:])} failed (exit {proc.returncode}): "
            f"{proc.stderr.strip()[-800:]}"
        )
    return proc.stdout


def update_index(force: bool = False, suite: str = "unstable") -> Path:
    """Refresh the private index of `suite` unless it is recent."""
    apt_dir = _apt_dir(suite)
    stamp = apt_dir / "updated"
    fresh = stamp.exists() and time.time() - stamp.stat().st_mtime < INDEX_MAX_AGE_S
    if force or not fresh:
        print(f"debian: reading Debian {suite}'s signed index (download only)", file=sys.stderr)
        _run(["apt-get", *_apt_options(apt_dir), "-q", "update"])
        stamp.touch()
    return apt_dir


def _versions(apt_dir: Path, command: str, package: str) -> list[str]:
    out = _run(["apt-cache", *_apt_options(apt_dir), command, package])
    return re.findall(r"^Version:\s*(\S+)", out, re.M)


def source_files(package: str) -> list[tuple[str, dict[str, str]]]:
    """(version, {file name: sha256}) of every version of source package `package` in unstable."""
    out = _run(["apt-cache", *_apt_options(update_index()), "showsrc", package])
    found = []
    for stanza in out.split("\n\n"):
        version = re.search(r"^Version:\s*(\S+)", stanza, re.M)
        sums = re.search(r"^Checksums-Sha256:\n((?: .*\n?)*)", stanza, re.M)
        if version and sums:
            files = {name: digest for digest, _size, name in
                     (line.split() for line in sums.group(1).splitlines() if line.strip())}
            found.append((version.group(1), files))
    return found


def version_gt(a: str, b: str) -> bool:
    """Debian's ordering: is version `a` newer than `b`?"""
    return subprocess.run(["dpkg", "--compare-versions", a, "gt", b]).returncode == 0


def newest(versions: list[str]) -> str:
    best = versions[0]
    for version in versions[1:]:
        if version_gt(version, best):
            best = version
    return best


def versions(package: str, suite: str = "unstable", source: bool = False) -> list[str]:
    """Every version of a binary (or source) package that `suite` has (maybe none)."""
    apt_dir = update_index(suite=suite)
    try:
        return _versions(apt_dir, "showsrc" if source else "show", package)
    except FetchError:
        # apt-cache show fails (exit 100) for a name the index lacks altogether.
        if package in package_names(package, suite):
            raise
        return []


def package_names(prefix: str, suite: str = "unstable") -> list[str]:
    """Binary package names in `suite` that start with `prefix` (read from the local index)."""
    apt_dir = update_index(suite=suite)
    return sorted(set(_run(["apt-cache", *_apt_options(apt_dir), "pkgnames", prefix]).split()))


def newest_version(package: str, source: bool = False, suite: str = "unstable") -> str:
    """Newest version of a binary (or source) package in `suite` (unstable by default)."""
    found = versions(package, suite, source)
    if not found:
        raise FetchError(f"Debian {suite} has no {'source ' if source else ''}package {package!r}")
    return newest(found)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, expected_sha256: str) -> Path:
    actual = sha256(path)
    if actual != expected_sha256:
        raise FetchError(
            f"{path} has sha256 {actual}, expected {expected_sha256}; "
            "delete it and fetch again"
        )
    return path


def download_binary(package: str, version: str | None = None,
                    suite: str | None = None) -> Path:
    """The .deb of `package` (newest if no version), downloaded once into the cache.

    Without `version` the newest of `suite` (default unstable); with one, from
    `suite`, or if none is named from whichever of SUITES has that version.
    """
    version = version or newest_version(package, suite=suite or "unstable")
    target = cache_root() / "debs"
    target.mkdir(exist_ok=True)
    filename_version = version.split(":", 1)[-1]
    existing = sorted(target.glob(f"{package}_{filename_version}_*.deb"))
    if existing:
        return existing[0]
    if suite is None:
        offered = {name: versions(package, name) for name in SUITES}
        having = [name for name, found in offered.items() if version in found]
        if not having:
            raise FetchError(
                f"no Debian suite bpfoom reads has {package} {version}; "
                + "; ".join(f"{name} has {', '.join(found) or 'none'}"
                            for name, found in offered.items())
            )
        suite = having[0]
    apt_dir = update_index(suite=suite)
    print(f"debian: downloading {package} {version} from {suite} (apt verifies it)",
          file=sys.stderr)
    _run(["apt-get", *_apt_options(apt_dir), "-q", "download", f"{package}={version}"], cwd=target)
    found = sorted(target.glob(f"{package}_{filename_version}_*.deb"))
    if not found:
        raise FetchError(f"apt-get download {package}={version} produced no .deb in {target}")
    return found[0]


def download_source(package: str, version: str, wanted: str) -> Path:
    """File `wanted` of source package `package`=`version`, downloaded once into the cache.

    apt verifies the .dsc against the signed Sources index and every file
    against the .dsc.  If the file is cached, no network is used.
    """
    target = cache_root() / "sources"
    target.mkdir(exist_ok=True)
    path = target / wanted
    if path.exists():
        return path
    try:
        apt_dir = update_index()
        print(f"debian: downloading source {package} {version} (apt verifies it)", file=sys.stderr)
        _run(
            ["apt-get", *_apt_options(apt_dir), "-q", "source", "--download-only",
             f"{package}={version}"],
            cwd=target,
        )
    except FetchError as err:
        raise FetchError(
            f"cannot get {wanted} (source package {package} {version} from Debian "
            f"unstable): {err}. Place the file at {path} by hand to build offline."
        ) from err
    if not path.exists():
        raise FetchError(
            f"source package {package} {version} has no file {wanted}; "
            f"Debian unstable may have replaced that version. Place {wanted} at {path}."
        )
    return path


def _main(argv: list[str]) -> int:
    if 2 <= len(argv) <= 4 and argv[0] == "binary":
        print(download_binary(argv[1], argv[2] if len(argv) > 2 and argv[2] else None,
                              suite=argv[3] if len(argv) > 3 else None))
        return 0
    if len(argv) in (2, 3) and argv[0] == "newest":
        print(newest_version(argv[1], suite=argv[2] if len(argv) > 2 else "unstable"))
        return 0
    print("usage: debian.py binary PACKAGE [VERSION [SUITE]] | newest PACKAGE [SUITE]\n"
          f"SUITE: {' or '.join(SUITES)} (default unstable)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(_main(sys.argv[1:]))
    except FetchError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
