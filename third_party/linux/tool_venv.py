"""virtme-ng in a venv of its own, inside bpfoom's cache.

virtme-ng is a tool we run, not a library we import, so it gets a private venv:
the system stays untouched and the project's venv does not carry its
dependencies.  Both the kernel build (its guest config) and the VM harness
(booting) use it.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

VIRTME_NG = "virtme-ng==1.42"


class ToolError(RuntimeError):
    """virtme-ng could not be installed; the message says what to do."""


def _cache_root() -> Path:
    root = os.environ.get("BPFOOM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "bpfoom"
    )
    return Path(root)


def virtme_ng_bin(program: str = "vng") -> Path:
    """Path of a virtme-ng program (vng, virtme-configkernel), installing it once."""
    venv = _cache_root() / "tools" / VIRTME_NG.replace("==", "-")
    path = venv / "bin" / program
    if (venv / "installed").exists():
        return path
    print(f"tools: installing {VIRTME_NG} into {venv}", file=sys.stderr)
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    proc = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", VIRTME_NG],
        stdin=subprocess.DEVNULL, capture_output=True, text=True,
    )
    if proc.returncode != 0 or not path.exists():
        raise ToolError(
            f"pip could not install {VIRTME_NG} into {venv}: {proc.stderr.strip()[-600:]}\n"
            "Check that PyPI is reachable (pip config, proxy), then run again."
        )
    (venv / "installed").write_text(VIRTME_NG + "\n")
    return path
