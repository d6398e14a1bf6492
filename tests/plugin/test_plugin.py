"""The pytest plugin, exercised by running the sample project under tests/plugin/sample
(its files become test_<name>.py in a fresh pytester directory).

Each run is a child pytest (pytester's subprocess mode) with the plugin
loaded through its pytest11 entry point, as a user's suite would get it.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

import bpfoom
import facts

SAMPLE = Path(__file__).with_name("sample")
# pytester points HOME at its own directory; the VM must keep using the real kernel and tool
# cache (else it would build the kernel again), so remember it before any test runs.
CACHE = os.environ.get("BPFOOM_CACHE") or os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "bpfoom")


def sample_project(pytester: pytest.Pytester, *names: str) -> None:
    for name in names:
        pytester.makepyfile(**{f"test_{name}": (SAMPLE / f"{name}.py").read_text()})


def has_bpf_oom_ops() -> bool:
    return bpfoom.features()["bpf_oom_ops"].supported is True


def test_fixtures_and_marker_are_registered(pytester):
    fixtures = pytester.runpytest_subprocess("--fixtures")
    for name in ("cgroup", "memory_hog", "oom_policy"):
        fixtures.stdout.fnmatch_lines([f"{name} -- *bpfoom*pytest_plugin.py*"])
    markers = pytester.runpytest_subprocess("--markers")
    markers.stdout.fnmatch_lines(["@pytest.mark.bpfoom_vm: *bpf_oom_ops*"])


def test_a_session_that_uses_no_bpfoom_fixture_imports_no_bpfoom(pytester):
    """The plugin loads in every pytest session of the environment: it must cost them nothing."""
    pytester.makepyfile(test_plain="""
        import sys

        def test_nothing_of_bpfoom_was_imported():
            loaded = sorted(m for m in sys.modules if m == "bpfoom" or m.startswith("bpfoom."))
            assert loaded == []
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_cgroup_fixture_creates_and_always_removes(pytester, monkeypatch, tmp_path):
    record = tmp_path / "cgroups.txt"
    monkeypatch.setenv("SAMPLE_RECORD", str(record))
    sample_project(pytester, "host_fixtures")
    result = pytester.runpytest_subprocess("-k", "cgroup_is", "-p", "no:cacheprovider")
    if "needs a writable cgroup2 mount" in result.stdout.str():
        facts.require(False, "needs a writable cgroup2 mount")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*this test fails on purpose*"])
    paths = [Path(line) for line in record.read_text().split()]
    assert len(paths) == 2
    for path in paths:
        assert path.parent.is_dir()  # it was made under a real cgroup2 mount...
        assert not path.exists()  # ...and removed, subtree included, pass or fail


def test_oom_policy_skips_naming_the_missing_feature(pytester, monkeypatch, tmp_path):
    if has_bpf_oom_ops():
        facts.require(False, "this kernel has bpf_oom_ops: the fixture attaches instead of skipping")
    monkeypatch.setenv("SAMPLE_RECORD", str(tmp_path / "unused"))
    sample_project(pytester, "host_fixtures")
    result = pytester.runpytest_subprocess("-k", "oom_policy", "-rs", "-p", "no:cacheprovider")
    if "needs a writable cgroup2 mount" in result.stdout.str():
        facts.require(False, "needs a writable cgroup2 mount")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*needs bpf_oom_ops*bpfoom_vm*"])


def test_marked_tests_run_in_the_vm_and_report_its_results(pytester, monkeypatch):
    """One VM boot runs the four marked tests; each reports what happened in the guest."""
    if has_bpf_oom_ops():
        facts.require(False, "this kernel has bpf_oom_ops: marked tests run here, not in the VM")
    if os.environ.get("BPFOOM_IN_VM") == "1":
        facts.require(False, "already inside the VM (no nested VM)")
    monkeypatch.setenv("BPFOOM_CACHE", CACHE)
    sample_project(pytester, "in_vm")
    result = pytester.runpytest_subprocess("-rfs", "-p", "no:cacheprovider", timeout=1500)
    result.assert_outcomes(passed=2, failed=1, skipped=1)
    result.stdout.fnmatch_lines(["*in bpfoom's VM*this kernel lacks bpf_oom_ops*",
                                 "*this test fails on purpose*"])
    result.stdout.fnmatch_lines(["SKIPPED*in bpfoom's VM: skipped on purpose*"])
