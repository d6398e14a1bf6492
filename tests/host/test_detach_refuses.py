"""`bpfoom detach --pin` asks the kernel what is pinned before it detaches anything.

Only an OOM policy's or PSI handler's struct_ops link is detached (any
struct_ops link with --all); a tracing link, a pinned map or some other
program's link is refused with EINVAL and a sentence, and stays exactly as
it was: still attached (its counter still moves) and still pinned.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading

import pytest

import bpfoom
import facts
from conftest import require

pytestmark = pytest.mark.usefixtures("bpf_privileges")


def bpfoom_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-P", "-m", "bpfoom", *args], capture_output=True,
                          text=True, timeout=120)


def refusal(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 1, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bpfoom: [Errno 22 EINVAL] "), done.stderr
    assert done.stdout == ""
    return lines[0]


@pytest.fixture
def counting_link(bpffs_dir):
    """A tp_btf program counting this thread's system calls, its link pinned in bpffs_dir."""
    with bpfoom.BpfObject.open(facts.COUNT_CALLS_OBJECT) as obj:
        obj.rodata["target_tid"] = threading.get_native_id()
        obj.programs["count_access"].autoload = False
        obj.load()
        with obj.programs["count_syscall"].attach() as link:
            link.pin(bpffs_dir / "tracing")
        yield obj, bpffs_dir / "tracing"
        with bpfoom.Link.from_pinned(bpffs_dir / "tracing") as pinned:
            pinned.unpin()


def test_a_pinned_tracing_link_is_refused_and_stays(counting_link):
    obj, pin = counting_link
    line = refusal(bpfoom_cli("detach", "--pin", str(pin)))
    assert "is a link of type raw_tracepoint" in line and "not a struct_ops policy" in line
    assert pin.exists()
    before = obj.bss["syscalls"]
    for _ in range(10):
        os.getppid()
    assert obj.bss["syscalls"] >= before + 10  # still attached: the kernel still runs it
    # --all widens to other struct_ops types, never to other kinds of link
    assert "not a struct_ops policy" in refusal(bpfoom_cli("detach", "--all", "--pin", str(pin)))
    assert pin.exists()


def test_a_pinned_map_is_refused_and_stays(bpffs_dir):
    bpftool = shutil.which("bpftool")
    if bpftool is None:
        require(False, "needs bpftool to pin a map")
    pin = bpffs_dir / "a_map"
    with bpfoom.BpfObject.open(facts.RINGBUF_OBJECT) as obj:
        obj.load()
        subprocess.run([bpftool, "map", "pin", "id", str(obj.maps["events"].id), str(pin)],
                       check=True, capture_output=True, timeout=60)
    line = refusal(bpfoom_cli("detach", "--pin", str(pin)))
    assert "is not a BPF link (a pinned map or program)" in line
    assert pin.exists()
    pin.unlink()


def test_a_pinned_policy_link_of_another_struct_ops_type_needs_all(tcp_struct_ops, bpffs_dir):
    name, pin = facts.unique_cc_name(), bpffs_dir / "cc"
    with bpfoom.BpfObject.open(facts.TCP_CC_OBJECT) as obj:
        obj.struct_ops["bpfoom_demo"].fields["name"] = name
        obj.load()
        with obj.struct_ops["bpfoom_demo"].attach() as link:
            link.pin(pin)
    line = refusal(bpfoom_cli("detach", "--pin", str(pin)))
    assert "registers a tcp_congestion_ops, not an OOM policy or PSI handler" in line
    assert name in facts.available_congestion_control() and pin.exists()
    done = bpfoom_cli("detach", "--all", "--pin", str(pin))
    assert done.returncode == 0, done.stderr
    assert name not in facts.available_congestion_control() and not pin.exists()
