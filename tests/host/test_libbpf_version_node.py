"""Our libbpf addition lives in a version node of its own, not a released one.

bpfoom links libbpf statically into its cffi extension, which exports none of
libbpf's symbols: a version node only exists where the version script is used,
in a shared libbpf. So the test links the very archive the extension uses
(prepare.py static) into a shared object with the prepared libbpf.map, as
libbpf's own Makefile links libbpf.so, and reads the version the linker gave
bpf_map__attach_struct_ops_opts and the parent of its node.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import facts
import pytest
from conftest import require

PREPARE = facts.REPO / "third_party" / "libbpf" / "prepare.py"
SYMBOL = "bpf_map__attach_struct_ops_opts"
NODE = "BPFOOM_1.0.0"


@pytest.fixture(scope="module")
def shared_libbpf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """libbpf.so linked from the prepared archive and version script."""
    if shutil.which("cc") is None or shutil.which("readelf") is None:
        require(False, "needs cc and readelf (binutils) to link and read a shared libbpf")
    archive = Path(subprocess.run([sys.executable, str(PREPARE), "static"], check=True,
                                  capture_output=True, text=True, timeout=600).stdout.strip())
    version_script = PREPARE.parent / "src" / "src" / "libbpf.map"
    target = tmp_path_factory.mktemp("libbpf") / "libbpf.so"
    subprocess.run(["cc", "-shared", "-o", str(target), f"-Wl,--version-script={version_script}",
                    "-Wl,--whole-archive", str(archive), "-Wl,--no-whole-archive", "-lelf", "-lz"],
                   check=True, capture_output=True, text=True, timeout=300)
    return target


def _readelf(*args: str) -> str:
    return subprocess.run(["readelf", "-W", *args], check=True, capture_output=True,
                          text=True).stdout


def test_the_opts_attach_is_exported_in_our_own_node(shared_libbpf: Path) -> None:
    versions = re.findall(rf"\b{SYMBOL}@@?(\S+)", _readelf("--dyn-syms", str(shared_libbpf)))
    assert versions == [NODE]


def test_our_node_inherits_the_release_it_extends(shared_libbpf: Path) -> None:
    """In .gnu.version_d a node's line is followed by its parent's."""
    definitions = _readelf("-V", str(shared_libbpf))
    assert re.search(rf"Name: {re.escape(NODE)}\n\s+\S+: Parent 1: LIBBPF_1\.7\.0\n",
                     definitions), definitions


def test_no_released_node_claims_our_symbol(shared_libbpf: Path) -> None:
    released = re.findall(r"@@?(LIBBPF_[0-9.]+)", _readelf("--dyn-syms", str(shared_libbpf)))
    assert released, "the released nodes are there"
    assert SYMBOL not in (PREPARE.parent / "src" / "src" / "libbpf.map").read_text() \
        .split(NODE)[0]
