"""Imports go one way: only bpfoom/ touches libbpf_ffi; tests and examples use only bpfoom's public API."""
from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path
from unittest.mock import patch

import facts

SKIPPED_DIRS = {".git", ".venv", "build", "dist", "__pycache__"}
FETCHED_SOURCES = ("third_party", "libbpf", "src")  # libbpf's own tree, not ours
PROJECT_PACKAGES = {"bpfoom", "libbpf_ffi"}
# Public subpackages: tests and examples may import the names their __init__ lists in
# __all__ (bpfoom.testing: cgroup and memory-hog helpers, the VM harness), nothing below.
PUBLIC_SUBPACKAGES = ("testing",)


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


def declared_public(subpackage: str) -> set[str]:
    """The names bpfoom/<subpackage>/__init__.py lists in __all__ (read, not imported)."""
    tree = ast.parse((facts.REPO / "bpfoom" / subpackage / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return {element.value for element in node.value.elts}
    return set()


def reaches_past_public_api(name: str) -> bool:
    """True for project imports other than "bpfoom" itself, its public top-level names, and
    the public names of its public subpackages."""
    parts = name.split(".")
    if parts[0] not in PROJECT_PACKAGES:
        return False
    if parts[0] != "bpfoom":
        return True
    if any(part.startswith("_") for part in parts[1:]):
        return True
    if len(parts) == 3 and parts[1] in PUBLIC_SUBPACKAGES:
        return parts[2] not in declared_public(parts[1])
    return len(parts) > 2


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
    probe.write_text("import libbpf_ffi\nfrom bpfoom import _ffi\nfrom bpfoom.errors import BpfError\n"
                     "from bpfoom import Link\nfrom bpfoom.testing import MemoryHog, vm\n"
                     "from bpfoom.testing import _SCRIPT\nfrom bpfoom.testing.hog import MemoryHog\n"
                     "from bpfoom.daemon import run_daemon\n")
    flagged = [name for name in imported_modules(probe) if reaches_past_public_api(name)]
    assert flagged == ["libbpf_ffi", "bpfoom._ffi", "bpfoom.errors.BpfError", "bpfoom.testing._SCRIPT",
                       "bpfoom.testing.hog", "bpfoom.testing.hog.MemoryHog", "bpfoom.daemon.run_daemon"]


def test_public_subpackages_declare_only_public_names():
    for subpackage in PUBLIC_SUBPACKAGES:
        names = declared_public(subpackage)
        assert names and not [name for name in names if name.startswith("_")], names


# -- the package's own layers -------------------------------------------------

# Each layer may import only from the layers listed for it (and itself).
LAYERS = {
    "bpf": set(),
    "oom": {"bpf"},
    "daemon": {"bpf", "oom"},
    "cli": {"bpf", "oom", "daemon"},
    "testing": {"bpf", "oom"},
}
# Layers built on the public API as a user would (`import bpfoom`).
PUBLIC_API_USERS = {"testing"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(facts.REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_imports(path: Path) -> set[str]:
    """bpfoom modules `path` imports at run time (TYPE_CHECKING blocks excluded), resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and getattr(node.test, "id", getattr(node.test, "attr", "")) == "TYPE_CHECKING"
                   for n in ast.walk(node)}
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "bpfoom")
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            if target.split(".")[0] != "bpfoom":
                continue
            for alias in node.names:  # "from . import x" may name a submodule
                sub = f"{target}.{alias.name}"
                found.add(sub if (facts.REPO / Path(*sub.split("."))).with_suffix(".py").exists()
                          or (facts.REPO / Path(*sub.split("."))).is_dir() else target)
    return found


def package_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in (facts.REPO / "bpfoom").rglob("*.py")
               if "__pycache__" not in p.parts}
    graph = {}
    for name, path in modules.items():
        graph[name] = {m for m in package_imports(path) if m in modules and m != name}
    return graph


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def test_layers_import_only_downwards():
    offenders = []
    for module, imports in package_graph().items():
        layer = layer_of(module)
        if layer is None:
            continue
        for target in imports:
            other = layer_of(target)
            if other is None and target != "bpfoom":
                continue
            if target == "bpfoom" and layer in PUBLIC_API_USERS:
                continue
            if target == "bpfoom" or (other != layer and other not in LAYERS[layer]):
                offenders.append(f"{module} -> {target}")
    assert not offenders, f"imports against the layering: {sorted(offenders)}"


def test_no_import_cycles_in_the_package():
    graph = package_graph()
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "active"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "active" and not _is_parent_package(nxt, node):
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [node, nxt]))
            elif nxt not in state:
                visit(nxt, stack + [node])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    assert not cycles, f"import cycles: {cycles}"


def _is_parent_package(package: str, module: str) -> bool:
    """A package's __init__ re-exporting its own modules is not a cycle."""
    return module.startswith(package + ".")


def test_the_layering_check_sees_a_violation(tmp_path, monkeypatch):
    fake = tmp_path / "bpfoom" / "bpf"
    fake.mkdir(parents=True)
    (fake / "x.py").write_text("from ..oom import policy\nif TYPE_CHECKING:\n    from ..cli import y\n")
    (tmp_path / "bpfoom" / "oom").mkdir()
    (tmp_path / "bpfoom" / "oom" / "policy.py").write_text("")
    monkeypatch.setattr(facts, "REPO", tmp_path)
    assert package_imports(fake / "x.py") == {"bpfoom.oom.policy"}


def cross_layer_private_imports(path: Path) -> list[str]:
    """`from <other layer> import _name` or of a `_module` of another layer, in bpfoom/<layer>/."""
    relative = path.relative_to(facts.REPO / "bpfoom")
    own = relative.parts[0] if len(relative.parts) > 1 else ""
    package = ["bpfoom", *relative.parts[:-1]]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = [*base, *(node.module.split(".") if node.module else [])]
            imported = [[*module, alias.name] for alias in node.names]
        elif isinstance(node, ast.Import):  # "import bpfoom.bpf._ffi"
            imported = [alias.name.split(".") for alias in node.names]
        else:
            continue
        for names in imported:
            if names[:1] != ["bpfoom"] or len(names) < 3 or names[1] not in LAYERS or names[1] == own:
                continue
            private = [name for name in names[2:] if name.startswith("_")]
            if private:
                found.append(f"bpfoom/{relative}:{node.lineno}: {'.'.join(names)} {private}")
    return found


def test_no_layer_imports_a_private_name_of_another():
    """What a layer needs from another is public there (issue 26): no `_ffi`, `_btf`, `_fd_kind`."""
    offenders = []
    for path in python_files(facts.REPO / "bpfoom"):
        offenders.extend(cross_layer_private_imports(path))
    assert not offenders, f"private names imported across layers: {offenders}"


def private_names_defined(paths: Iterable[Path]) -> set[str]:
    """Every `_name` (not dunder) these modules define: functions, classes, methods, module and
    class variables, and attributes assigned on `self`."""
    names: set[str] = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
                  and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                names.add(node.attr)
    return {name for name in names if name.startswith("_") and not name.endswith("__")}


def private_reaches(layer_dir: Path, forbidden: set[str]) -> list[str]:
    """`x._name` in the modules of `layer_dir` for a `_name` of `forbidden` the layer does not
    define itself (its own privates are its business), `x` not being self or cls."""
    paths = list(python_files(layer_dir))
    theirs = forbidden - private_names_defined(paths)
    found = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if (isinstance(node, ast.Attribute) and node.attr in theirs
                    and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
                found.append(f"{path.relative_to(facts.REPO)}:{node.lineno}: .{node.attr}")
    return found


def test_the_oom_layer_reaches_no_private_attribute_of_bpf_objects():
    """`obj._btf`, `obj._core`, `bpf_map._query` and the like: a name the object layer keeps
    private (any it defines), read from above."""
    bpf_privates = private_names_defined(python_files(facts.REPO / "bpfoom" / "bpf"))
    assert {"_core", "_owner", "_ptr", "_query"} <= bpf_privates  # the collection sees them
    offenders = []
    for layer in ("oom", "daemon", "cli"):
        offenders.extend(private_reaches(facts.REPO / "bpfoom" / layer, bpf_privates))
    assert not offenders, f"the object layer's private attributes used from above: {offenders}"


def test_the_private_checks_see_a_violation(tmp_path):
    """The checks above fail on each way of reaching a private name of a lower layer."""
    layer = tmp_path / "bpfoom" / "oom"
    layer.mkdir(parents=True)
    probe = layer / "probe.py"
    probe.write_text("import bpfoom.bpf._ffi\nfrom ..bpf import _log\nfrom ..bpf.map import _query\n"
                     "from ..bpf import map as bpf_map\n\n\nclass Mine:\n    def __init__(self):\n"
                     "        self._own = 1\n\n\ndef reach(obj, other):\n"
                     "    return obj._core.ptr, bpf_map._query, other._own\n")
    with patch.object(facts, "REPO", tmp_path):
        imports = cross_layer_private_imports(probe)
        reaches = private_reaches(layer, {"_core", "_query", "_own"})
    assert [line.split(": ", 1)[1] for line in imports] == [
        "bpfoom.bpf._ffi ['_ffi']", "bpfoom.bpf._log ['_log']", "bpfoom.bpf.map._query ['_query']"]
    assert sorted(line.rsplit(": ", 1)[1] for line in reaches) == ["._core", "._query"]


def test_the_package_runs_no_generated_code():
    """No eval/exec/compile of strings anywhere in bpfoom: an auditor of a root daemon looks first."""
    offenders = []
    for path in python_files(facts.REPO / "bpfoom"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id in ("eval", "exec", "compile")):
                offenders.append(f"{path.relative_to(facts.REPO)}:{node.lineno}: {node.func.id}()")
    assert not offenders, f"generated code is run here: {offenders}"


def test_every_skip_goes_through_the_require_all_rule():
    """A direct pytest.skip() escapes BPFOOM_REQUIRE_ALL=1; conftest.require() is the one way."""
    offenders = []
    for top in ("tests/host", "tests/plugin", "tests/vm"):
        for path in python_files(facts.REPO / top):
            if path.name == "conftest.py" or "sample" in path.parts:
                continue  # require() itself; the plugin's sample project skips on purpose
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr == "skip" and getattr(node.func.value, "id", "") == "pytest"):
                    offenders.append(f"{path.relative_to(facts.REPO)}:{node.lineno}")
    assert not offenders, f"skips that BPFOOM_REQUIRE_ALL=1 cannot turn into failures: {offenders}"


def test_c_is_reached_only_through_the_cffi_binding():
    """libc's calls (fstatfs, open_by_handle_at, inotify) are declared in libbpf_ffi, not ctypes."""
    offenders = [f"{path.relative_to(facts.REPO)}: {name}"
                 for path in python_files(facts.REPO / "bpfoom")
                 if path != facts.REPO / "bpfoom" / "testing" / "vm.py"  # the harness: prctl only
                 for name in imported_modules(path) if name.split(".")[0] == "ctypes"]
    assert not offenders, f"a second way into C: {offenders}"


def pytest_internals_reached(path: Path) -> list[str]:
    """Imports of pytest's private `_pytest` package, and attributes set on `config` (its
    `stash` is the public place for a plugin's state)."""
    found = [f"{node.lineno}: {name}" for node in ast.walk(ast.parse(path.read_text()))
             for name in imported_modules_of(node) if name.split(".")[0] == "_pytest"]
    for node in ast.walk(ast.parse(path.read_text())):
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else [])
        found.extend(f"{node.lineno}: config.{target.attr} =" for target in targets
                     if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name)
                     and target.value.id == "config")
    return found


def imported_modules_of(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return [node.module]
    return []


def test_the_pytest_plugin_uses_only_public_pytest_apis(tmp_path):
    """pytest.TestReport and config.stash, not _pytest.reports and an attribute on config."""
    assert pytest_internals_reached(facts.REPO / "bpfoom_pytest_plugin.py") == []
    probe = tmp_path / "plugin.py"
    probe.write_text("def hook(config):\n    from _pytest.reports import TestReport\n"
                     "    config._bpfoom_vm_outcome = TestReport\n")
    assert pytest_internals_reached(probe) == ["2: _pytest.reports", "3: config._bpfoom_vm_outcome ="]


def test_tests_examples_and_benchmarks_reach_no_private_attribute_of_the_package():
    """They use the package as its users do: `obj._btf` in a benchmark broke when the object
    layer moved its state (stop 29's fresh clone)."""
    package_privates = private_names_defined(python_files(facts.REPO / "bpfoom"))
    offenders = []
    for top in ("tests", "examples", "bench"):
        offenders.extend(private_reaches(facts.REPO / top, package_privates))
    assert not offenders, f"private attributes of bpfoom used by its users: {offenders}"
