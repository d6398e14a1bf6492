"""Kernel tests of the BPF OOM interface, run inside the bpfoom VM.

These tests need our patched kernel (bpf_oom_ops, cgroup-targeted struct_ops)
and a cgroup2 hierarchy with the memory controller, which the VM harness
sets up:  python3 -m bpfoom.testing.vm -- .venv/bin/python -m pytest tests/guest

Elsewhere every test is skipped with the missing capability as the reason;
with BPFOOM_REQUIRE_VM_TESTS=1 (CI) a session where no test passed fails.

Fixtures here (helpers in oomtest.py): memory cgroups under /sys/fs/cgroup,
memory hogs started inside a cgroup, kernel log slices, the recording policy,
and a check that every test detaches what it attached.
"""
from __future__ import annotations

import itertools
import os
import uuid
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest

import bpfoom
from bpfoom.testing import CgroupTree, MemoryHog, memory_hogs, vm
from oomtest import CGROUP_ROOT, Forker, KernelLog, missing_capability, open_probe

REQUIRE_ENV = "BPFOOM_REQUIRE_VM_TESTS"


# -- session rules --------------------------------------------------------------

_passed: list[str] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = missing_capability()
    if reason is None:
        return
    for item in items:
        item.add_marker(pytest.mark.skip(reason=reason))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" and report.passed:
        _passed.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """CI rule: a run whose VM tests were all skipped (or none ran) must fail."""
    if os.environ.get(REQUIRE_ENV) == "1" and not _passed and exitstatus == 0:
        reason = missing_capability() or "no test ran"
        print(f"\n{REQUIRE_ENV}=1 but no guest test passed ({reason})", file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# -- cgroups --------------------------------------------------------------------

_names = itertools.count()


@pytest.fixture
def cgroups() -> Iterator[Callable[..., bpfoom.Cgroup]]:
    """Make memory cgroups under a per-test root: cgroups("a"), cgroups("a/b", memory_max="64M").

    Every cgroup gets +memory in its parent's subtree_control (so it has its own
    memcg), swap off, and is killed and removed at the end of the test
    (bpfoom.testing.CgroupTree).
    """
    tree = CgroupTree(CGROUP_ROOT / f"bpfoom-test-{os.getpid()}-{next(_names)}")
    yield tree.make
    tree.close()


@pytest.fixture
def hogs() -> Iterator[Callable[..., MemoryHog]]:
    """Start memory hogs: hogs(cg, mib, oom_score_adj=0, gated=False); all stopped at the end.

    A gated hog allocates once released (hog.release()); bpfoom.testing.MemoryHog.
    """
    with memory_hogs(gated=False) as start:
        yield start


@pytest.fixture
def forker() -> Iterator[Callable[[bpfoom.Cgroup], Forker]]:
    made: list[Forker] = []

    def make(cg: bpfoom.Cgroup) -> Forker:
        made.append(Forker(cg))
        return made[-1]

    yield make
    for f in made:
        f.close()


@pytest.fixture
def pin_dir() -> Iterator[Path]:
    """A daemon's pin directory on bpffs (the daemon makes it); afterwards the links a failed
    test left attached there are detached and the directory removed."""
    path = Path("/sys/fs/bpf") / f"bpfoom-daemon-test-{uuid.uuid4().hex[:8]}"
    yield path
    for pin in sorted(path.glob("*")) if path.exists() else ():
        if not pin.name.endswith(("_events", "_dropped")):
            with bpfoom.Link.from_pinned(pin) as link:
                if link.info().map_id:
                    link.detach()
        pin.unlink()
    if path.exists():
        path.rmdir()


@pytest.fixture
def kernel_log() -> Iterator[KernelLog]:
    log = KernelLog()
    yield log
    log.close()


@pytest.fixture
def probe() -> Iterator[bpfoom.BpfObject]:
    """The recording policy object, loaded (its links are the test's to close)."""
    obj = open_probe()
    yield obj
    obj.close()


@pytest.fixture(autouse=True)
def no_kernel_splat() -> Iterator[None]:
    """Fail the test during which the kernel logged a warning, BUG, Oops, KASAN or lockdep report.

    The VM harness scans the log too, but only what is left of it at the end
    (OOM reports soon overflow the ring buffer), and without saying which test.
    """
    log = KernelLog()
    yield
    problems = vm.kernel_log_problems("\n".join(log.lines()))
    log.close()
    assert not problems, f"the kernel logged problems during this test: {problems[:5]}"


@pytest.fixture(autouse=True)
def no_leftover_links() -> Iterator[None]:
    """Each test must leave no struct_ops link of its own behind (checked by id)."""
    before = {info.id for info in bpfoom.links()}
    yield
    left = [info for info in bpfoom.links() if info.id not in before and info.map_id]
    assert not left, f"the test left struct_ops links attached: {left}"


@pytest.fixture(autouse=True, scope="session")
def runner_is_unkillable() -> None:
    """The OOM killer must never pick the test runner itself."""
    if os.environ.get("BPFOOM_IN_VM") == "1" and os.geteuid() == 0:
        Path("/proc/self/oom_score_adj").write_text("-1000")


@pytest.fixture
def cpu_burners() -> Iterator[Callable[[int], None]]:
    """cpu_burners(n): n busy loops (more than the guest's CPUs make CPU pressure); stopped at the end.

    They inherit the runner's oom_score_adj -1000, so no OOM ever picks them.
    """
    started: list[subprocess.Popen] = []

    def start(count: int) -> None:
        for _ in range(count):
            started.append(subprocess.Popen([sys.executable, "-S", "-c", "while True: pass"]))

    yield start
    for proc in started:
        proc.kill()
        proc.wait()
