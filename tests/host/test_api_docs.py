"""The API reference (docs/api, Sphinx autodoc) builds from the docstrings with warnings as errors,
and leaves out no public module of the package."""
from __future__ import annotations

import importlib.util
import pkgutil
import re
import subprocess
import sys

import bpfoom
import facts
from conftest import require

API = facts.REPO / "docs" / "api"


def test_every_public_module_has_its_page():
    documented = set(re.findall(r"^\.\. automodule:: (\S+)$",
                                "\n".join(p.read_text() for p in API.glob("*.rst")), re.M))
    public = {info.name for info in pkgutil.walk_packages(bpfoom.__path__, "bpfoom.")
              if not any(part.startswith("_") for part in info.name.split("."))
              and not info.name.startswith("bpfoom.cli")}  # the command: documented by --help
    assert sorted(public - documented) == []


def test_the_reference_builds_without_a_warning(tmp_path):
    require(importlib.util.find_spec("sphinx") is not None,
            "needs Sphinx (pip install -e '.[docs]' installs it)")
    done = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                           "-d", str(tmp_path / "doctrees"), str(API), str(tmp_path / "html")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OomPolicy" in (tmp_path / "html" / "oom.html").read_text()
