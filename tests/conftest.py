"""Shared fixtures: leak and leftover checks, and skips that name what is missing.

Every test runs against the real kernel.  Two autouse fixtures fail the test
that leaves something behind: an fd still open, or a congestion control of
ours still registered.  A test that needs something this machine may lack
asks for a fixture that skips with a reason naming it; with
BPFOOM_REQUIRE_ALL=1 (set it in CI on a machine known to have everything)
those skips become failures, so nothing is skipped silently.
"""
from __future__ import annotations

import gc
import os
import shutil
import signal
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import facts

# Tests stop the commands they start with SIGINT, as a user's Ctrl-C would.  A
# run started in the background by a shell without job control (`nohup
# ./scripts/test &` from a script) inherits SIGINT ignored, and every child
# would too (Python then installs no KeyboardInterrupt handler): restore it
# here, so that children start with the default disposition.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


require = facts.require  # tests import it from here: `from conftest import require`


@pytest.fixture(autouse=True)
def no_fd_leak():
    """Fail the test if it returns with more fds open than it started with."""
    gc.collect()
    before = facts.open_fds()
    yield
    gc.collect()
    after = facts.open_fds()
    leaked = {fd: target for fd, target in after.items() if before.get(fd) != target}
    if leaked:
        listing = ", ".join(f"{fd} -> {target}" for fd, target in sorted(leaked.items()))
        pytest.fail(f"test leaked {len(leaked)} fd(s): {listing}")


@pytest.fixture(autouse=True)
def no_congestion_control_left():
    """Fail the test if one of our congestion controls is still registered after it."""
    before = set(facts.available_congestion_control())
    issued_before = len(facts.ISSUED_CC_NAMES)
    yield
    gc.collect()
    ours = facts.ISSUED_CC_NAMES[issued_before:] + list(facts.DEMO_CC_NAMES)
    left = [name for name in ours
            if name in facts.available_congestion_control() and name not in before]
    if left:
        pytest.fail(f"test left congestion control(s) registered: {', '.join(left)}")


@pytest.fixture
def bpf_privileges() -> None:
    """Loading BPF and registering struct_ops needs root (CAP_BPF + CAP_SYS_ADMIN)."""
    require(
        os.geteuid() == 0 or (facts.has_capability(facts.CAP_BPF) and facts.has_capability(facts.CAP_SYS_ADMIN)),
        "needs root / CAP_BPF and CAP_SYS_ADMIN",
    )


@pytest.fixture
def tcp_struct_ops(bpf_privileges) -> None:
    """The kernel must offer tcp_congestion_ops through struct_ops (BTF-visible)."""
    require(facts.vmlinux_btf_has_name("bpf_struct_ops_tcp_congestion_ops"),
            "needs tcp_congestion_ops struct_ops (kernel BTF has no bpf_struct_ops_tcp_congestion_ops)")
    require(facts.AVAILABLE_CC.exists(), f"needs {facts.AVAILABLE_CC} (CONFIG_INET)")


@dataclass
class Demo:
    """The tcp_cc example opened (not loaded), its two maps renamed to names of this test's own."""

    obj: Any
    first: str
    second: str

    @property
    def ops(self):
        return self.obj.struct_ops["bpfoom_demo"]

    @property
    def ops2(self):
        return self.obj.struct_ops["bpfoom_demo2"]


@pytest.fixture
def demo(tcp_struct_ops):
    """Congestion control names are global: unique ones keep parallel test runs apart."""
    import bpfoom

    obj = bpfoom.BpfObject.open(facts.TCP_CC_OBJECT)
    first, second = facts.unique_cc_name(), facts.unique_cc_name()
    obj.struct_ops["bpfoom_demo"].fields["name"] = first
    obj.struct_ops["bpfoom_demo2"].fields["name"] = second
    yield Demo(obj, first, second)
    obj.close()


@pytest.fixture
def notify(tmp_path):
    """A NOTIFY_SOCKET (``receive.env``) and the messages it receives, as KEY=VALUE dicts."""
    from daemon_process import WAIT_S

    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(WAIT_S)

        def receive() -> dict[str, str]:
            return dict(line.split("=", 1) for line in sock.recv(4096).decode().splitlines())
        receive.env = {"NOTIFY_SOCKET": str(path)}  # type: ignore[attr-defined]
        yield receive


@pytest.fixture
def bpffs_dir(bpf_privileges):
    """A fresh directory on bpffs for this test's pins, removed with whatever is left in it."""
    require(facts.is_mountpoint_of(facts.BPFFS, "bpf"),
            f"needs bpffs mounted at {facts.BPFFS} (mount -t bpf bpf {facts.BPFFS})")
    directory = facts.BPFFS / f"bpfoom-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    directory.mkdir()
    yield directory
    # Unlinking a pin drops the kernel's reference; a link nobody else holds detaches.
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def cgroup2_dir() -> Path:
    """A fresh child cgroup under the cgroup2 mount, removed afterwards (never a v1 hierarchy)."""
    require(facts.is_mountpoint_of(facts.CGROUP2_ROOT, "cgroup2"),
            f"needs a cgroup2 mount at {facts.CGROUP2_ROOT}")
    require(os.access(facts.CGROUP2_ROOT, os.W_OK), f"needs write access to {facts.CGROUP2_ROOT}")
    path = facts.CGROUP2_ROOT / f"bpfoom-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    yield path
    if path.exists():
        path.rmdir()


@pytest.fixture
def cgroup_v1_memory() -> Path:
    """The machine's cgroup v1 memory hierarchy: only ever opened read-only by tests."""
    require(facts.is_mountpoint_of(facts.CGROUP_V1_MEMORY, "cgroup"),
            f"needs a cgroup v1 hierarchy at {facts.CGROUP_V1_MEMORY}")
    return facts.CGROUP_V1_MEMORY


@pytest.fixture
def clang_toolchain() -> None:
    require(shutil.which("clang-19") is not None and shutil.which("llvm-strip-19") is not None,
            "needs clang-19 and llvm-strip-19 (apt-get install clang-19 llvm-19)")
