"""Kernel tests of the BPF OOM interface, run inside the bpfoom VM.

These tests need our patched kernel (bpf_oom_ops, cgroup-targeted struct_ops)
and a cgroup2 hierarchy with the memory controller, which the VM harness
sets up:  python3 -m bpfoom.vm -- .venv/bin/python -m pytest tests/guest

Elsewhere every test is skipped with the missing capability as the reason;
with BPFOOM_REQUIRE_VM_TESTS=1 (CI) a session where no test passed fails.

Helpers here: memory cgroups under /sys/fs/cgroup, memory hogs started
inside a cgroup, waiting for death, memory.events, and kernel log slices.
"""
from __future__ import annotations

import itertools
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pytest

import bpfoom

REPO = Path(__file__).resolve().parents[2]
BPF_DIR = REPO / "tests" / "bpf" / "oom"
CGROUP_ROOT = Path("/sys/fs/cgroup")
REQUIRE_ENV = "BPFOOM_REQUIRE_VM_TESTS"
DEATH_TIMEOUT_S = 60.0

# Actions of oom_probe.bpf.c's `actions` map.
DECLINE, KILL_PID, CLAIM_WITHOUT_KILL = 0, 1, 2


def _missing_capability() -> str | None:
    """Why these tests cannot run here, or None when they can."""
    if os.environ.get("BPFOOM_IN_VM") != "1":
        return ("not inside the bpfoom VM (BPFOOM_IN_VM unset): run "
                "`python3 -m bpfoom.vm -- .venv/bin/python -m pytest tests/guest`")
    if os.geteuid() != 0:
        return "needs root inside the VM"
    feats = bpfoom.features()
    for name in ("bpf_oom_ops", "struct_ops_cgroup_attach", "kfunc:bpf_oom_kill_process"):
        if feats[name].supported is not True:
            return f"the running kernel lacks {name}: {feats[name].detail}"
    controllers = (CGROUP_ROOT / "cgroup.subtree_control")
    if not controllers.exists() or "memory" not in controllers.read_text().split():
        return f"{CGROUP_ROOT} is not a cgroup2 root with +memory in cgroup.subtree_control"
    return None


# -- session rules --------------------------------------------------------------

_passed: list[str] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _missing_capability()
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
        reason = _missing_capability() or "no test ran"
        print(f"\n{REQUIRE_ENV}=1 but no guest test passed ({reason})", file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# -- cgroups --------------------------------------------------------------------

_names = itertools.count()


def _kill_and_remove(path: Path) -> None:
    """Remove a test cgroup tree: kill its tasks, then rmdir bottom-up."""
    if not path.exists():
        return
    for child in sorted((p for p in path.rglob("*") if p.is_dir()),
                        key=lambda p: len(p.parts), reverse=True):
        _kill_and_remove(child)
    try:
        (path / "cgroup.freeze").write_text("0")
        (path / "cgroup.kill").write_text("1")
    except OSError:
        pass
    deadline = time.monotonic() + 10
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
def cgroups() -> Iterator[Callable[..., bpfoom.Cgroup]]:
    """Make memory cgroups under a per-test root: cgroups("a"), cgroups("a/b", memory_max="64M").

    Every cgroup gets +memory in its parent's subtree_control (so it has its own
    memcg), swap off, and is killed and removed at the end of the test.
    """
    root = CGROUP_ROOT / f"bpfoom-test-{os.getpid()}-{next(_names)}"
    opened: list[bpfoom.Cgroup] = []

    def make(relative: str = "", *, memory_max: str | None = None,
             oom_group: bool = False) -> bpfoom.Cgroup:
        chain = [root]
        for part in Path(relative).parts:
            chain.append(chain[-1] / part)
        for parent, path in zip([None, *chain[:-1]], chain):
            if parent is not None:
                (parent / "cgroup.subtree_control").write_text("+memory")
            if not path.exists():
                path.mkdir()
                swap = path / "memory.swap.max"
                if swap.exists():
                    swap.write_text("0")
        cg = bpfoom.Cgroup.open(chain[-1])
        opened.append(cg)
        if memory_max is not None:
            cg.write("memory.max", memory_max)
        if oom_group:
            cg.write("memory.oom.group", "1")
        return cg

    yield make
    for cg in opened:
        cg.close()
    _kill_and_remove(root)


def memory_events(cg: bpfoom.Cgroup) -> dict[str, int]:
    """memory.events as a dict (oom, oom_kill, ...)."""
    return {key: int(value) for key, value in
            (line.split() for line in cg.read("memory.events").splitlines())}


# -- memory hogs ----------------------------------------------------------------

# Joins the cgroup itself, after Python's start-up, so the interpreter's own
# memory is charged to the test runner's cgroup and the hog's cgroup sees
# (almost) only the MiB it asked for.  Prints "joined" and "allocated", then
# holds the memory until killed or its stdin closes.
_HOG = r"""
import mmap, os, sys
procs, mib, adj, gate = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
with open("/proc/self/oom_score_adj", "w") as f:  # the runner's -1000 is inherited
    f.write(adj)
with open(procs, "w") as f:
    f.write(str(os.getpid()))
print("joined", flush=True)
if gate:
    sys.stdin.readline()
memory = mmap.mmap(-1, mib << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
for offset in range(0, len(memory), 4096):
    memory[offset] = 1
print("allocated", flush=True)
sys.stdin.readline()
"""


@dataclass
class Hog:
    """A process that allocates `mib` MiB of anonymous memory inside a cgroup."""

    proc: subprocess.Popen
    cgroup: bpfoom.Cgroup
    mib: int
    lines: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_for(self, word: str, timeout: float = DEATH_TIMEOUT_S) -> bool:
        """True once the hog printed `word`; False if it exited or timed out first."""
        deadline = time.monotonic() + timeout
        while word not in self.lines:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                line = self.proc.stdout.readline()
                if not line:
                    return False
                self.lines.append(line.strip())
        return True

    def go(self) -> None:
        """Let a gated hog start allocating."""
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def wait_dead(self, timeout: float = DEATH_TIMEOUT_S) -> int:
        """The hog's exit status (negative: killed by that signal); fails on timeout."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"hog {self.pid} in {self.cgroup.path} still alive after {timeout:.0f} s")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            stream.close()


@pytest.fixture
def hogs() -> Iterator[Callable[..., Hog]]:
    """Start memory hogs: hogs(cg, mib, oom_score_adj=0, gated=False); all stopped at the end."""
    started: list[Hog] = []

    def start(cg: bpfoom.Cgroup, mib: int, *, oom_score_adj: int = 0,
              gated: bool = False, wait_joined: bool = True) -> Hog:
        proc = subprocess.Popen(
            [sys.executable, "-S", "-c", _HOG, str(cg.path / "cgroup.procs"), str(mib),
             str(oom_score_adj), "1" if gated else "0"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        hog = Hog(proc, cg, mib)
        started.append(hog)
        if wait_joined:
            assert hog.wait_for("joined", 30), f"hog did not join {cg.path}"
        return hog

    yield start
    for hog in started:
        hog.stop()


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    """Poll `predicate` until true; fail the test with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what or predicate}")
        time.sleep(0.05)


# -- kernel log -----------------------------------------------------------------

class KernelLog:
    """The kernel log records written since this object was created (from /dev/kmsg)."""

    def __init__(self) -> None:
        self._fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(self._fd, 0, os.SEEK_END)
        self._lines: list[str] = []

    def lines(self) -> list[str]:
        while True:
            try:
                record = os.read(self._fd, 8192)
            except BlockingIOError:
                break
            except BrokenPipeError:  # overwritten records; keep reading
                continue
            if not record:
                break
            text = record.decode(errors="replace")
            self._lines.append(text.split(";", 1)[1].rstrip("\n") if ";" in text else text)
        return list(self._lines)

    def close(self) -> None:
        os.close(self._fd)


@pytest.fixture
def kernel_log() -> Iterator[KernelLog]:
    log = KernelLog()
    yield log
    log.close()


def policy_lines(log: KernelLog) -> list[str]:
    """The oom_policy=<name> lines of the OOM reports in `log`."""
    return [line for line in log.lines() if line.startswith("oom_policy=")]


# -- BPF objects ----------------------------------------------------------------

def open_probe(name: str | None = "bpfoom_probe") -> bpfoom.BpfObject:
    """oom_probe.bpf.o, loaded, with `probe_policy` named `name`."""
    obj = bpfoom.BpfObject.open(BPF_DIR / "oom_probe.bpf.o")
    if name is not None:
        obj.struct_ops["probe_policy"].fields["name"] = name
    obj.load()
    return obj


@pytest.fixture
def probe() -> Iterator[bpfoom.BpfObject]:
    """The recording policy object, loaded (its links are the test's to close)."""
    obj = open_probe()
    yield obj
    obj.close()


def set_action(obj: bpfoom.BpfObject, cgroup_id: int, kind: int, pid: int = 0) -> None:
    obj.maps["actions"][cgroup_id] = {"kind": kind, "pid": pid}


def recorded_calls(obj: bpfoom.BpfObject) -> list[tuple[int, int]]:
    """(ctx cgroup id, OOMing memcg's cgroup id) per handle_out_of_memory call, in order."""
    count = min(obj.bss["calls"], 64)
    return list(zip(obj.bss["call_ctx_ids"][:count], obj.bss["call_oom_ids"][:count]))


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


def sigkilled(status: int) -> bool:
    return status == -signal.SIGKILL
