"""The committed BPF objects are exactly what their sources build to."""
from __future__ import annotations

import subprocess
import sys

import facts


def test_bpf_objects_reproducible(clang_toolchain):
    done = subprocess.run([sys.executable, str(facts.REPO / "tools" / "build_bpf.py"), "--check"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "match their sources" in done.stdout


def test_every_source_has_its_committed_object():
    sources = [source for pattern in ("bpfoom/bpf/*.bpf.c", "examples/**/*.bpf.c", "tests/bpf/**/*.bpf.c")
               for source in sorted(facts.REPO.glob(pattern))]
    assert sources
    missing = [str(s) for s in sources if not s.with_name(s.name[:-2] + ".o").is_file()]
    assert not missing
