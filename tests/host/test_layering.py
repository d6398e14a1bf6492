"""Imports go one way: only bpfoom/ touches libbpf_ffi; tests and examples use only bpfoom's public API."""
from __future__ import annotations

import ast
from pathlib import Path

import facts

SKIPPED_DIRS = {".git", ".venv", "build", "dist", "__pycache__"}
FETCHED_SOURCES = ("third_party", "libbpf", "src")  # libbpf's own tree, not ours
PROJECT_PACKAGES = {"bpfoom", "libbpf_ffi"}


def python_files(root: Path):
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(facts.REPO).parts
        if not SKIPPED_DIRS.intersection(parts) and parts[:3] != FETCHED_SOURCES:
            yield path


def imported_modules(path: Path) -> list[str]:
    """Every module an import statement names; "from m import n" also yields "m.n"."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
            names.extend(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def reaches_past_public_api(name: str) -> bool:
    """True for project imports other than "bpfoom" itself and its public top-level names."""
    parts = name.split(".")
    if parts[0] not in PROJECT_PACKAGES:
        return False
    if parts[0] != "bpfoom":
        return True
    return len(parts) > 2 or any(part.startswith("_") for part in parts[1:])


def test_only_bpfoom_imports_libbpf_ffi():
    offenders = []
    for path in python_files(facts.REPO):
        relative = path.relative_to(facts.REPO)
        if relative.parts[0] in ("bpfoom", "libbpf_ffi"):
            continue
        if any(name.split(".")[0] == "libbpf_ffi" for name in imported_modules(path)):
            offenders.append(str(relative))
    assert not offenders, f"outside bpfoom/, these import libbpf_ffi: {offenders}"


def test_tests_and_examples_use_only_the_public_bpfoom_api():
    offenders = []
    for top in ("tests", "examples"):
        for path in python_files(facts.REPO / top):
            names = imported_modules(path)
            # "from bpfoom.errors import X" names bpfoom.errors.X: a submodule, not the package.
            offenders.extend(f"{path.relative_to(facts.REPO)}: {name}" for name in names
                             if reaches_past_public_api(name))
    assert not offenders, f"tests/examples must import only bpfoom's public names: {offenders}"


def test_the_check_sees_imports(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import libbpf_ffi\nfrom bpfoom import _ffi\nfrom bpfoom.errors import BpfError\nfrom bpfoom import Link\n")
    flagged = [name for name in imported_modules(probe) if reaches_past_public_api(name)]
    assert flagged == ["libbpf_ffi", "bpfoom._ffi", "bpfoom.errors.BpfError"]
