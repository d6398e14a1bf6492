"""The wheel as users install it (scripts/test runs this from a fresh venv, outside the tree).

Everything a user needs must be inside the installed package: the shipped
policies with their metadata, the kill watcher's object, the headers for
writing policies, the compiled binding, PEP 561's marker.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import bpfoom
import facts

pytestmark = pytest.mark.skipif(
    os.environ.get("BPFOOM_TEST_INSTALLED") != "1",
    reason="needs bpfoom installed from its wheel in a fresh venv: run scripts/test-wheel")

SHIPPED = {"largest_leaf", "priority", "largest_task", "newest_task", "observe", "psi_guard"}
SITE = Path(metadata.distribution("bpfoom").locate_file(""))


def bpfoom_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    command = Path(sys.executable).with_name("bpfoom")
    return subprocess.run([str(command), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env}, cwd=SITE)


def test_bpfoom_is_imported_from_the_install_not_the_source_tree():
    package = Path(bpfoom.__file__).resolve()
    assert package.is_relative_to(SITE.resolve()), package
    assert not package.is_relative_to(facts.REPO), "the source tree is on sys.path"
    assert str(facts.REPO) not in sys.path and "" not in sys.path


def test_the_wheel_carries_its_data_files():
    files = {str(f) for f in metadata.files("bpfoom")}
    wanted = {f"bpfoom/oom/policies/{name}.bpf.o" for name in SHIPPED}
    wanted |= {"bpfoom/oom/kill_watch.bpf.o", "bpfoom/py.typed", "bpfoom/oom/include/policy_meta.h",
               "bpfoom/oom/include/policy_event.h", "bpfoom/oom/include/bpfoom_kernel.h",
               "bpfoom/oom/include/bpf/bpf_helpers.h", "bpfoom/oom/include/bpf/bpf_tracing.h"}
    assert wanted <= files, sorted(wanted - files)
    assert not any(f.startswith("third_party/") or "/decl/" in f for f in files)
    assert any(f.startswith("bpfoom.libs/libelf") for f in files), "libelf is not vendored"


def test_policies_json_lists_all_six_with_tunables():
    done = bpfoom_cli("policies", "--json")
    assert done.returncode == 0, done.stderr
    listed = {entry["name"]: entry for entry in json.loads(done.stdout)["policies"]}
    assert set(listed) == SHIPPED
    for name, entry in listed.items():
        assert entry["description"] and entry["tunables"], name
        assert Path(entry["path"]).resolve().is_relative_to(SITE.resolve())
        for tunable in entry["tunables"].values():
            assert tunable["type"] and tunable["doc"], (name, tunable)
    assert listed["largest_leaf"]["tunables"]["victim_wait_ms"]["range"] == [0, 3600000]


def test_version_is_the_installed_distribution_s():
    done = bpfoom_cli("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"bpfoom {metadata.version('bpfoom')}"


def test_the_kill_watcher_finds_its_object():
    try:
        bpfoom.KillWatcher().close()
    except (bpfoom.PermissionDeniedError, bpfoom.NotSupportedError) as refused:
        assert not isinstance(refused, FileNotFoundError)  # the kernel refused, not a missing file


@pytest.mark.skipif(shutil.which("clang-19") is None, reason="needs clang-19 to compile a policy")
def test_a_user_policy_compiles_against_get_include_and_lists(tmp_path):
    include = Path(bpfoom.get_include())
    assert include.resolve().is_relative_to(SITE.resolve())
    source = facts.REPO / "examples" / "policies" / "adjusted_task.bpf.c"
    built = tmp_path / "adjusted_task.bpf.o"
    # get_include() alone: bpfoom's headers and libbpf's <bpf/...> come with the wheel
    subprocess.run(["clang-19", "-g", "-O2", "-target", "bpf", "-nostdinc", "-I", str(include),
                    "-c", str(source), "-o", str(built)], check=True)
    done = bpfoom_cli("policies", "--json", BPFOOM_POLICY_PATH=str(tmp_path))
    listed = {entry["name"]: entry for entry in json.loads(done.stdout)["policies"]}
    assert listed["adjusted_task"]["tunables"]["adj_unit_bytes"]["range"] == [0, 1 << 30]
