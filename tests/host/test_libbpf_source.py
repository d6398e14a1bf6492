"""Where libbpf's source comes from, and the sentence when it cannot be had.

Each test runs third_party/libbpf/prepare.py from a copy of its directory (so
the real prepared tree is left alone) with no network (unshare -n) and an
empty download cache.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import facts
from conftest import require

ENV = "BPFOOM_LIBBPF_TARBALL"


@pytest.fixture
def offline_prepare(tmp_path):
    """Run a copy of prepare.py without network; returns (exit code, stdout, stderr)."""
    if shutil.which("unshare") is None or os.geteuid() != 0:
        require(False, "needs root and unshare(1) to run without network")
    copy = tmp_path / "third_party"
    shutil.copytree(facts.REPO / "third_party" / "libbpf", copy / "libbpf",
                    ignore=shutil.ignore_patterns("src", "__pycache__"))
    shutil.copy(facts.REPO / "third_party" / "debian.py", copy / "debian.py")

    def run(*args: str, **env: str) -> subprocess.CompletedProcess:
        environment = {**os.environ, "BPFOOM_CACHE": str(tmp_path / "cache"), **env}
        if ENV not in env:
            environment.pop(ENV, None)
        return subprocess.run(["unshare", "-n", "python3", str(copy / "libbpf" / "prepare.py"),
                               *args], capture_output=True, text=True, timeout=300,
                              env=environment)
    run.tree = copy / "libbpf" / "src"
    return run


def test_a_missing_tarball_named_by_the_variable_is_one_sentence(offline_prepare, tmp_path):
    missing = tmp_path / "libbpf_1.7.0.orig.tar.gz"
    done = offline_prepare(**{ENV: str(missing)})
    assert done.returncode == 1
    assert f"error: {ENV}={missing} does not exist: point it at a libbpf 1.7 or 1.8 source " \
           "tarball" in done.stderr
    assert not offline_prepare.tree.exists()


def test_without_network_or_cache_the_error_says_how_to_provide_the_source(offline_prepare):
    done = offline_prepare()
    assert done.returncode == 1
    assert "libbpf's source is missing: Debian unstable cannot be read" in done.stderr
    assert f"set {ENV}=/path/to/it" in done.stderr


def test_a_local_tarball_prepares_offline_and_says_which_version(offline_prepare):
    cached = sorted((Path(os.environ.get("BPFOOM_CACHE") or Path.home() / ".cache" / "bpfoom")
                     / "sources").glob("libbpf_1.7*.orig.tar.gz"))
    if not cached:
        require(False, "needs a libbpf 1.7 tarball in the download cache (scripts/bootstrap fetches it)")
    done = offline_prepare("version", **{ENV: str(cached[-1])})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"libbpf 1.7 from {ENV}={cached[-1]}")
    assert (offline_prepare.tree / "headers" / "bpf" / "libbpf.h").is_file()
    patched = (offline_prepare.tree / "headers" / "bpf" / "libbpf.h").read_text()
    assert "bpf_map__attach_struct_ops_opts" in patched


def test_a_tarball_of_another_libbpf_series_is_refused(offline_prepare, tmp_path):
    fake = tmp_path / "libbpf-1.5.0"
    (fake / "src").mkdir(parents=True)
    (fake / "src" / "libbpf_version.h").write_text(
        "#define LIBBPF_MAJOR_VERSION 1\n#define LIBBPF_MINOR_VERSION 5\n")
    tarball = tmp_path / "libbpf-1.5.0.tar.gz"
    subprocess.run(["tar", "-czf", str(tarball), "-C", str(tmp_path), fake.name], check=True)
    done = offline_prepare(**{ENV: str(tarball)})
    assert done.returncode == 1
    assert "it is libbpf 1.5; our patches are for 1.7 or 1.8" in done.stderr
