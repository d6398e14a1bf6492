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
them, see :mod:`bpfoom.vm`) and each reports the in-VM result as its own.

The plugin is loaded in every pytest session of an environment with bpfoom
installed, so it imports bpfoom's extension only when a fixture is used.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

RESULTS_ENV = "BPFOOM_VM_RESULTS"
DEATH_TIMEOUT_S = 60.0

# Joins the cgroup after Python's start-up (so the interpreter's own memory is
# charged elsewhere), says "joined", waits for a line, allocates and touches
# MIB MiB, says "allocated", and holds it until killed or stdin closes.
_HOG_SCRIPT = r"""
import mmap, os, sys
procs, mib, adj = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open("/proc/self/oom_score_adj", "w") as f:
    f.write(adj)
with open(procs, "w") as f:
    f.write(str(os.getpid()))
print("joined", flush=True)
sys.stdin.readline()
memory = mmap.mmap(-1, mib << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
for offset in range(0, len(memory), 4096):
    memory[offset] = 1
print("allocated", flush=True)
sys.stdin.readline()
"""


# -- cgroups ------------------------------------------------------------------------

def cgroup2_root() -> Path | None:
    """The writable cgroup2 mount to create test cgroups in (the unified root first)."""
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()
              if line.split()[2] == "cgroup2"]
    for candidate in sorted(mounts, key=lambda path: path != "/sys/fs/cgroup"):
        if os.access(candidate, os.W_OK):
            return Path(candidate)
    return None


def remove_cgroup_tree(path: Path, timeout: float = 10.0) -> None:
    """Kill every process in the subtree, then remove it bottom-up."""
    if not path.is_dir():
        return
    for child in [entry for entry in path.iterdir() if entry.is_dir()]:
        remove_cgroup_tree(child, timeout)
    for name, value in (("cgroup.freeze", "0"), ("cgroup.kill", "1")):
        try:
            (path / name).write_text(value)
        except OSError:
            pass
    deadline = time.monotonic() + timeout
    while True:
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture
def cgroup() -> Iterator[Any]:
    """A fresh cgroup v2 directory, removed with its whole subtree afterwards."""
    import bpfoom

    root = cgroup2_root()
    if root is None:
        pytest.skip("needs a writable cgroup2 mount (root, and cgroup v2 mounted)")
    path = root / f"bpfoom-pytest-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    cg = bpfoom.Cgroup.create(path)
    try:
        if "memory" in cg.read("cgroup.controllers").split():
            cg.write("cgroup.subtree_control", "+memory")  # children get their own memcg
            if (path / "memory.swap.max").exists():
                cg.write("memory.swap.max", "0")
        yield cg
    finally:
        cg.close()
        remove_cgroup_tree(path)


# -- memory hogs --------------------------------------------------------------------

@dataclass
class MemoryHog:
    """A process in ``cgroup`` that allocates ``mib`` MiB once released."""

    proc: subprocess.Popen
    cgroup_path: Path
    mib: int
    lines: list[str] = field(default_factory=list)
    _pending: str = ""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _wait_for(self, word: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while word not in self.lines:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    return False
                self._pending += chunk.decode()
                *complete, self._pending = self._pending.split("\n")
                self.lines.extend(line.strip() for line in complete)
        return True

    def release(self) -> None:
        """Let the hog allocate."""
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()

    def wait_allocated(self, timeout: float = DEATH_TIMEOUT_S) -> bool:
        """True once all the memory is touched; False if it died (or timed out) first."""
        return self._wait_for("allocated", timeout)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_dead(self, timeout: float = DEATH_TIMEOUT_S) -> str:
        """How it died: "SIGKILL", another signal name, or "exit N"; fails the test on timeout."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"memory hog {self.pid} in {self.cgroup_path} still alive after "
                        f"{timeout:.0f} s")
        return self.death

    @property
    def death(self) -> str | None:
        """"SIGKILL", "SIGTERM", ..., "exit N", or None while alive."""
        code = self.proc.poll()
        if code is None:
            return None
        return signal.Signals(-code).name if code < 0 else f"exit {code}"

    @property
    def oom_killed(self) -> bool:
        """Died by SIGKILL after being released (what the OOM killer sends)."""
        return self.death == "SIGKILL"

    def stop(self) -> None:
        if self.alive:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            stream.close()


@pytest.fixture
def memory_hog() -> Iterator[Callable[..., MemoryHog]]:
    """``memory_hog(cgroup, mib, oom_score_adj=0)``: a frozen hog inside ``cgroup``."""
    started: list[MemoryHog] = []

    def start(cg: Any, mib: int, oom_score_adj: int = 0) -> MemoryHog:
        path = Path(getattr(cg, "path", cg))
        proc = subprocess.Popen([sys.executable, "-S", "-c", _HOG_SCRIPT,
                                 str(path / "cgroup.procs"), str(mib), str(oom_score_adj)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        hog = MemoryHog(proc, path, mib)
        started.append(hog)
        if not hog._wait_for("joined", 30):
            pytest.fail(f"memory hog did not join {path} (exit status {proc.poll()})")
        return hog

    yield start
    for hog in started:
        hog.stop()


# -- policies -----------------------------------------------------------------------

@pytest.fixture
def oom_policy() -> Iterator[Callable[..., Any]]:
    """``oom_policy(name_or_path, cgroup=None, pin=None, **tunables)`` -> attached OomPolicy."""
    import bpfoom

    loaded: list[Any] = []

    def attach(name_or_path: str | os.PathLike, cgroup: Any = None, pin: Any = None,
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
    from . import vm

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
    outcome: _VmOutcome | None = getattr(config, "_bpfoom_vm_outcome", None)
    if outcome is None:
        marked = [i for i in item.session.items if i.get_closest_marker("bpfoom_vm") is not None]
        outcome = _run_in_vm(config, marked)
        config._bpfoom_vm_outcome = outcome  # type: ignore[attr-defined]
    _replay(item, outcome, why)
    return True


def _replay(item: pytest.Item, outcome: _VmOutcome, why: str) -> None:
    from _pytest.reports import TestReport

    ihook = item.ihook
    ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    keywords = {name: 1 for name in item.keywords}
    path, lineno = str(item.path), (item.location[1] or 0) + 1
    records = outcome.reports.get(item.nodeid, [])
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
        report = TestReport(item.nodeid, item.location, keywords, record["outcome"], longrepr,
                            record["when"], duration=record.get("duration", 0.0))
        ihook.pytest_runtest_logreport(report=report)
    ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
