#!/usr/bin/env python3
"""Rebuild every committed BPF object from its source, reproducibly.

The `.bpf.o` files under bpfoom/bpf/ (shipped in the package), examples/ and
tests/bpf/ are committed so that users and tests need no compiler, and a test
(`--check`) proves each one still is what its source compiles to.  For that
the build must not depend on where the repository or libbpf's headers live:
sources are compiled from the repository root under their relative names,
both prefixes are mapped to fixed names, and DWARF (which would carry more
paths) is stripped while BTF is kept.

    python3 tools/build_bpf.py            # rebuild in place
    python3 tools/build_bpf.py --check    # rebuild into a temp dir, list differences
"""
from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOURCE_DIRS = ("bpfoom/bpf", "examples", "tests/bpf")
CLANG = os.environ.get("BPFOOM_CLANG", "clang-19")
STRIP = os.environ.get("BPFOOM_LLVM_STRIP", "llvm-strip-19")
HEADERS_ENV = "BPFOOM_LIBBPF_HEADERS"
PREPARE_SCRIPT = REPO / "third_party" / "libbpf" / "prepare.py"
# Fixed names the build paths are mapped to, so no clone path reaches an object.
REPO_ALIAS = "bpfoom"
HEADERS_ALIAS = "libbpf"
CFLAGS = ("-g", "-O2", "-target", "bpf", "-mcpu=v3", "-Wall", "-Werror")


class BuildError(RuntimeError):
    """The objects cannot be built; the message says what to do."""


def find_sources() -> list[Path]:
    """Every *.bpf.c we own, as paths relative to the repository root."""
    sources: list[Path] = []
    for directory in SOURCE_DIRS:
        sources.extend(p.relative_to(REPO) for p in (REPO / directory).rglob("*.bpf.c"))
    return sorted(sources)


def libbpf_headers() -> Path:
    """The directory holding bpf/bpf_helpers.h: $BPFOOM_LIBBPF_HEADERS, else the prepared libbpf's."""
    override = os.environ.get(HEADERS_ENV)
    if override:
        directory = Path(override).resolve()
        if not (directory / "bpf" / "bpf_helpers.h").is_file():
            raise BuildError(f"{HEADERS_ENV}={override} has no bpf/bpf_helpers.h; point it at libbpf's installed include directory")
        return directory
    sys.path.insert(0, str(PREPARE_SCRIPT.parent))
    try:
        import prepare
    finally:
        sys.path.pop(0)
    try:
        return prepare.include_dir().resolve()
    except prepare.PrepareError as err:
        raise BuildError(f"libbpf's headers are not available: {err}") from err


def _run(command: list[str]) -> None:
    try:
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    except FileNotFoundError as err:
        raise BuildError(f"{command[0]} is not installed; install clang-19 and llvm-19 (apt-get install clang-19 llvm-19)") from err
    if result.returncode != 0:
        raise BuildError(f"{' '.join(command)} failed:\n{result.stderr.strip()}")


def build_one(source: Path, output: Path, headers: Path) -> None:
    """Compile `source` (relative to the repo) into `output`, stripped of DWARF and .comment."""
    unstripped = output.with_name(output.name + ".full")
    _run([
        CLANG, *CFLAGS,
        f"-ffile-prefix-map={REPO}={REPO_ALIAS}",
        f"-ffile-prefix-map={headers}={HEADERS_ALIAS}",
        "-fdebug-compilation-dir=.",
        "-I", str(headers),
        "-c", str(source), "-o", str(unstripped),
    ])
    # .comment names the exact clang package build; dropping it keeps objects
    # equal across rebuilds of the same compiler version.
    _run([STRIP, "-g", "--remove-section=.comment", str(unstripped), "-o", str(output)])
    unstripped.unlink()


def object_path(source: Path) -> Path:
    return source.with_name(source.name[: -len(".c")] + ".o")


def build_all(output_root: Path) -> list[Path]:
    """Build every object under `output_root` (mirroring the repo layout); return their relative paths."""
    headers = libbpf_headers()
    built = []
    for source in find_sources():
        target = object_path(source)
        (output_root / target).parent.mkdir(parents=True, exist_ok=True)
        build_one(source, output_root / target, headers)
        built.append(target)
    return built


def check() -> list[str]:
    """Rebuild into a temp dir; return one line per committed object that differs or is missing."""
    with tempfile.TemporaryDirectory(prefix="bpfoom-bpf-check-") as tmp:
        problems = []
        for target in build_all(Path(tmp)):
            committed = REPO / target
            if not committed.exists():
                problems.append(f"{target}: missing (run tools/build_bpf.py and commit it)")
            elif not filecmp.cmp(committed, Path(tmp) / target, shallow=False):
                problems.append(f"{target}: differs from what its source builds to (run tools/build_bpf.py and commit it)")
        return problems


def _clang_version() -> str:
    found = shutil.which(CLANG)
    if not found:
        return f"{CLANG} not found"
    return subprocess.run([found, "--version"], capture_output=True, text=True).stdout.splitlines()[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="rebuild into a temp dir and fail if any committed object differs")
    args = parser.parse_args(argv)
    try:
        if args.check:
            problems = check()
            for line in problems:
                print(line, file=sys.stderr)
            if problems:
                print(f"built with: {_clang_version()}", file=sys.stderr)
                return 1
            print(f"all {len(find_sources())} BPF objects match their sources")
            return 0
        for target in build_all(REPO):
            print(f"built {target}")
        return 0
    except BuildError as err:
        print(f"build_bpf: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
