"""pytest plugin (entry point ``pytest11``): OOM behaviour in your own test suite.

Fixtures:

* ``cgroup``: a fresh cgroup v2 directory (a :class:`bpfoom.Cgroup`) with the
  memory controller enabled for its children where the mount has it, swap
  off; its whole subtree is killed and removed afterwards, even on failure.
* ``memory_hog``: ``memory_hog(cgroup, mib, oom_score_adj=0)`` starts a
  process inside ``cgroup`` that allocates ``mib`` MiB once released and
  holds it; frozen until :meth:`MemoryHog.release`; :meth:`MemoryHog.wait_dead`
  reports how it died.
* ``oom_policy``: ``oom_policy("largest_leaf", cgroup=cg, **tunables)`` loads
  and attaches a policy, detached and closed afterwards.  Skips (naming the
  feature) on a kernel without ``bpf_oom_ops``.

Marker ``@pytest.mark.bpfoom_vm``: when the running kernel lacks
``bpf_oom_ops``, the marked tests run inside bpfoom's VM (one boot for all of
them, see :mod:`bpfoom.testing.vm`) and each reports the in-VM result as its own.

The plugin is loaded in every pytest session of an environment with bpfoom
installed, so it lives outside the ``bpfoom`` package and imports bpfoom
(and installs libbpf's print hook) only when a session uses one of its
fixtures or the marker.  The helpers behind the fixtures are public for
tests that need more than one cgroup or hog: :mod:`bpfoom.testing`.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Literal

import pytest

if TYPE_CHECKING:
    from bpfoom.testing import MemoryHog

RESULTS_ENV = "BPFOOM_VM_RESULTS"
_VM_OUTCOME = pytest.StashKey["_VmOutcome"]()


# -- cgroups and memory hogs (bpfoom.testing.cgroups, bpfoom.testing.hog) -------------

@pytest.fixture
def cgroup() -> Iterator[Any]:
    """A fresh cgroup v2 directory, removed with its whole subtree afterwards."""
    from bpfoom.testing import cgroup2_root, cgroup_tree

    root = cgroup2_root()
    if root is None:
        pytest.skip("needs a writable cgroup2 mount (root, and cgroup v2 mounted)")
    with cgroup_tree(root / f"bpfoom-pytest-{os.getpid()}-{uuid.uuid4().hex[:8]}") as tree:
        yield tree.make(memory_for_children=True)


@pytest.fixture
def memory_hog() -> Iterator[Callable[..., MemoryHog]]:
    """``memory_hog(cgroup, mib, oom_score_adj=0)``: a frozen hog inside ``cgroup``."""
    from bpfoom.testing import memory_hogs

    with memory_hogs(gated=True) as start:
        yield start


# -- policies -----------------------------------------------------------------------

@pytest.fixture
def oom_policy() -> Iterator[Callable[..., Any]]:
    """``oom_policy(name_or_path, cgroup=None, pin=None, **tunables)`` -> attached OomPolicy."""
    import bpfoom

    loaded: list[Any] = []

    def attach(name_or_path: str | os.PathLike[str], cgroup: Any = None, pin: Any = None,
               **tunables: Any) -> Any:
        try:
            policy = bpfoom.OomPolicy.load(name_or_path, **tunables)
        except bpfoom.NotSupportedError as exc:
            pytest.skip(f"needs {exc.feature or 'bpf_oom_ops'}: {exc.strerror} "
                        "(mark the test @pytest.mark.bpfoom_vm to run it in bpfoom's VM)")
        loaded.append(policy)
        policy.attach(cgroup=cgroup, pin=pin)
        return policy

    yield attach
    for policy in loaded:
        try:
            policy.detach()
        finally:
            policy.close()


# -- the VM marker ------------------------------------------------------------------

def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "bpfoom_vm: run this test inside bpfoom's VM (our kernel) when the running "
        "kernel lacks bpf_oom_ops; the in-VM result is the test's result")
    if os.environ.get(RESULTS_ENV):
        config.pluginmanager.register(_GuestRecorder(Path(os.environ[RESULTS_ENV])),
                                      "bpfoom-vm-recorder")


class _GuestRecorder:
    """Inside the VM: write every report, so the host can replay it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        reason = None
        if report.skipped and isinstance(report.longrepr, tuple):
            reason = str(report.longrepr[2]).removeprefix("Skipped: ")
        record = {"nodeid": report.nodeid, "when": report.when, "outcome": report.outcome,
                  "text": report.longreprtext, "reason": reason, "duration": report.duration}
        with open(self.path, "a") as out:
            out.write(json.dumps(record) + "\n")


def _needs_vm() -> str | None:
    """Why marked tests must go to the VM, or None when they can run here."""
    if os.environ.get("BPFOOM_IN_VM") == "1":
        return None
    import bpfoom

    feature = bpfoom.features()["bpf_oom_ops"]
    return None if feature.supported else f"this kernel lacks bpf_oom_ops ({feature.detail})"


@dataclass
class _VmOutcome:
    reports: dict[str, list[dict]]
    output: str
    error: str | None = None  # the VM could not run the tests at all
    skip: str | None = None  # the VM is not available here: a missing capability


def _run_in_vm(config: pytest.Config, items: list[pytest.Item]) -> _VmOutcome:
    from bpfoom.testing import vm

    if not _which("qemu-system-x86_64"):
        return _VmOutcome({}, "", skip="needs qemu-system-x86_64 to boot bpfoom's VM")
    rootdir = Path(config.rootpath)
    with tempfile.TemporaryDirectory(prefix="bpfoom-vm-results-", dir="/tmp") as scratch:
        results = Path(scratch) / "reports.jsonl"
        command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                   "--rootdir", str(rootdir)]
        if config.inipath is not None:
            command += ["-c", str(config.inipath)]
        command += [item.nodeid for item in items]
        try:
            run = vm.run(command, cwd=rootdir, env={RESULTS_ENV: str(results)}, rwdirs=[scratch])
        except vm.VmError as exc:
            return _VmOutcome({}, exc.output, error=f"bpfoom's VM did not finish: {exc}")
        reports: dict[str, list[dict]] = {}
        if results.exists():
            for line in results.read_text().splitlines():
                record = json.loads(line)
                reports.setdefault(record["nodeid"], []).append(record)
        error = None
        if run.kernel_log_problems:
            error = f"the guest kernel logged problems: {run.kernel_log_problems[:5]}"
        return _VmOutcome(reports, run.output, error=error)


def _which(program: str) -> bool:
    import shutil

    return shutil.which(program) is not None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    """Marked tests on a kernel without bpf_oom_ops: replay the VM's reports instead of running."""
    if item.get_closest_marker("bpfoom_vm") is None:
        return None
    why = _needs_vm()
    if why is None:
        return None
    config = item.config
    outcome = config.stash.get(_VM_OUTCOME, None)
    if outcome is None:
        marked = [i for i in item.session.items if i.get_closest_marker("bpfoom_vm") is not None]
        outcome = _run_in_vm(config, marked)
        config.stash[_VM_OUTCOME] = outcome
    _replay(item, outcome, why)
    return True


def _replay(item: pytest.Item, outcome: _VmOutcome, why: str) -> None:
    ihook = item.ihook
    ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    keywords: dict[str, Literal[1]] = {name: 1 for name in item.keywords}
    path, lineno = str(item.path), (item.location[1] or 0) + 1
    records: list[dict[str, Any]] = outcome.reports.get(item.nodeid, [])
    if outcome.skip is not None:
        records = [{"when": "setup", "outcome": "skipped", "reason": outcome.skip, "text": ""}]
    elif outcome.error is not None or not records:
        tail = "\n".join(outcome.output.splitlines()[-60:])
        problem = outcome.error or "the test did not report inside the VM"
        records = [{"when": "setup", "outcome": "failed", "text": f"{problem}\n{tail}",
                    "reason": None}]
    for record in records:
        if record["outcome"] == "skipped":
            longrepr: Any = (path, lineno, f"in bpfoom's VM: {record['reason']}")
        elif record["outcome"] == "failed":
            longrepr = f"in bpfoom's VM ({why}):\n{record['text']}"
        else:
            longrepr = None
        report = pytest.TestReport(item.nodeid, item.location, keywords, record["outcome"], longrepr,
                            record["when"], duration=record.get("duration", 0.0))
        ihook.pytest_runtest_logreport(report=report)
    ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
