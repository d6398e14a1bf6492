"""What a user's type checker sees: the README's examples, checked by mypy and pyright (strict),
and the package itself (both checkers clean; strict on the public modules listed in STRICT).

The script is the README's ``python`` blocks, each wrapped in a function,
plus the facts an editor should show (``assert_type``): ``load()`` and
``with`` give the class itself, events are unions of their dataclasses, a
``str`` path and an ``int`` cgroup id are accepted where the README passes
them.  Only the script is checked strictly (the package is followed
silently), so this is the public surface as users meet it.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import facts
from conftest import require

FACTS = '''
def typed_facts() -> None:
    from typing import assert_type

    with bpfoom.OomPolicy.load("largest_leaf") as policy:
        assert_type(policy, bpfoom.OomPolicy)
        policy.attach(cgroup=1234)  # an int is a cgroup id, as the README says
        for event in policy.events(timeout=1):
            assert_type(event, bpfoom.DecisionEvent | bpfoom.OverrunEvent)
    assert_type(bpfoom.OomPolicy.load("largest_leaf"), bpfoom.OomPolicy)
    with bpfoom.PsiHandler.load("psi_guard") as guard:
        assert_type(guard, bpfoom.PsiHandler)
    with bpfoom.KillWatcher() as watcher:
        for kill in watcher.events(timeout=1):
            assert_type(kill, bpfoom.KillEvent | bpfoom.OomNoKillEvent | bpfoom.OverrunEvent)
    with bpfoom.PinnedEvents("/sys/fs/bpf/largest_leaf@system") as pinned:
        assert_type(pinned, bpfoom.PinnedEvents)
        for decision in pinned.events(timeout=0):
            assert_type(decision, bpfoom.DecisionEvent | bpfoom.OverrunEvent)
    with bpfoom.BpfObject.open("my_policy.bpf.o") as obj:
        assert_type(obj, bpfoom.BpfObject)
        assert_type(obj.btf, bpfoom.Btf)
        with bpfoom.Map.from_pinned("/sys/fs/bpf/m") as pinned_map:
            assert_type(pinned_map, bpfoom.Map)
        with bpfoom.RingBuffer(obj.maps["events"], print) as ring:
            assert_type(ring.poll(0.5), int)
'''


def readme_script() -> str:
    blocks = re.findall(r"```python\n(.*?)```", (facts.REPO / "README.md").read_text(), re.S)
    assert blocks, "the README has no python examples"
    functions = [f"def readme_example_{i}() -> None:\n{textwrap.indent(block, '    ')}"
                 for i, block in enumerate(blocks)]
    return "import bpfoom\n\n\n" + "\n\n".join(functions) + "\n\n" + textwrap.dedent(FACTS)


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "readme_examples.py"
    path.write_text(readme_script())
    return path


def tool(name: str) -> str:
    found = shutil.which(name, path=os.path.dirname(sys.executable)) or shutil.which(name)
    require(found is not None, f"needs {name} (pip install -e '.[test]' installs it)")
    assert found is not None
    return found


def test_mypy_strict_accepts_the_readme_examples(script):
    mypy = tool("mypy")
    done = subprocess.run([mypy, "--strict", "--follow-imports=silent", "--no-incremental",
                           "--python-version", "3.11", script.name], cwd=script.parent,
                          env={**os.environ, "MYPYPATH": str(facts.REPO)},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_pyright_strict_accepts_the_readme_examples(script):
    pyright = tool("basedpyright")
    (script.parent / "pyrightconfig.json").write_text(json.dumps({
        "extraPaths": [str(facts.REPO)], "typeCheckingMode": "strict", "pythonVersion": "3.11",
        "reportMissingModuleSource": False}))
    done = subprocess.run([pyright, "--level", "error", "--pythonpath", sys.executable, script.name],
                          cwd=script.parent, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


# The package as CI checks it: every module clean under the checkers' default rules, and these
# public modules under their strict rules too (a module joins once it is strict-clean).
PACKAGE = ["bpfoom", "libbpf_ffi", "bpfoom_pytest_plugin.py"]
STRICT = [
    "bpfoom/__init__.py", "bpfoom/bpf/__init__.py", "bpfoom/bpf/_ffi.py", "bpfoom/bpf/_log.py",
    "bpfoom/bpf/aio.py", "bpfoom/bpf/attach.py",
    "bpfoom/bpf/btf.py", "bpfoom/bpf/cgroup.py",
    "bpfoom/bpf/errors.py", "bpfoom/bpf/event_stream.py", "bpfoom/bpf/features.py",
    "bpfoom/bpf/globals.py", "bpfoom/bpf/inotify.py", "bpfoom/bpf/iterator.py",
    "bpfoom/bpf/kernel_objects.py", "bpfoom/bpf/lifecycle.py", "bpfoom/bpf/link.py",
    "bpfoom/bpf/logging.py", "bpfoom/bpf/map.py", "bpfoom/bpf/object.py",
    "bpfoom/bpf/probes.py", "bpfoom/bpf/records.py", "bpfoom/bpf/ringbuf.py",
    "bpfoom/bpf/struct_ops.py", "bpfoom/bpf/struct_ops_target.py", "bpfoom/bpf/waiter.py",
    "bpfoom/oom/__init__.py", "bpfoom/oom/abi.py",
    "bpfoom/oom/attachments.py", "bpfoom/oom/catalogue.py", "bpfoom/oom/decisions.py",
    "bpfoom/oom/events.py", "bpfoom/oom/features.py", "bpfoom/oom/kill_events.py",
    "bpfoom/oom/kill_watch.py", "bpfoom/oom/link_id.py", "bpfoom/oom/loader.py",
    "bpfoom/oom/memcg_stats.py", "bpfoom/oom/meta.py", "bpfoom/oom/pinned_events.py",
    "bpfoom/oom/policy.py", "bpfoom/oom/records.py", "bpfoom/oom/targets.py",
    "bpfoom/oom/tunables.py",
]


def run_mypy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("mypy"), "--no-incremental", "--cache-dir", os.devnull,
                           "--python-version", "3.11", *args], cwd=facts.REPO,
                          capture_output=True, text=True, timeout=300)


def test_mypy_accepts_the_package():
    done = run_mypy(*PACKAGE)
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_strict_accepts_the_strict_modules():
    done = run_mypy("--strict", "--follow-imports=silent", *STRICT)
    assert done.returncode == 0, done.stdout + done.stderr


def run_pyright(directory: Path, mode: str, paths: list[str]) -> subprocess.CompletedProcess[str]:
    (directory / "pyrightconfig.json").write_text(json.dumps({
        "include": [str(facts.REPO / p) for p in paths], "typeCheckingMode": mode,
        "pythonVersion": "3.11", "extraPaths": [str(facts.REPO)],
        "reportMissingModuleSource": False,
        # bpfoom checks argument types at run time too (users without a type checker get a
        # TypeError that says what to pass): those checks are deliberate, not unnecessary.
        "reportUnnecessaryIsInstance": False}))
    return subprocess.run([tool("basedpyright"), "--level", "error", "--pythonpath", sys.executable],
                          cwd=directory, capture_output=True, text=True, timeout=300)


def test_pyright_accepts_the_package(tmp_path):
    done = run_pyright(tmp_path, "standard", PACKAGE)
    assert done.returncode == 0, done.stdout + done.stderr


def test_pyright_strict_accepts_the_strict_modules(tmp_path):
    done = run_pyright(tmp_path, "strict", STRICT)
    assert done.returncode == 0, done.stdout + done.stderr
