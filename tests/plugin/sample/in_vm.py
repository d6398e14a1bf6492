"""A user's OOM test: marked bpfoom_vm, so it runs in bpfoom's VM where the kernel lacks bpf_oom_ops."""
import os

import pytest

pytestmark = pytest.mark.bpfoom_vm


def test_the_policy_kills_the_largest_leaf(cgroup, memory_hog, oom_policy):
    assert os.environ.get("BPFOOM_IN_VM") == "1"  # the plugin sent it to the VM
    cgroup.write("memory.max", str(48 << 20))
    big, small = cgroup.child("big"), cgroup.child("small")
    large = memory_hog(big, 40)
    little = memory_hog(small, 12)
    policy = oom_policy("largest_leaf", cgroup=cgroup.path)
    little.release()
    assert little.wait_allocated()
    large.release()
    assert large.wait_dead() == "SIGKILL"  # the OOM: the largest leaf dies
    assert little.alive
    assert int(dict(line.split() for line in big.read("memory.events").splitlines())["oom_kill"]) >= 1
    decision = next(policy.events(timeout=30))
    assert large.pid in decision.pids
    big.close()
    small.close()


def test_a_hog_reports_how_it_died(cgroup, memory_hog):
    hog = memory_hog(cgroup.child("hog"), 4)
    hog.release()
    assert hog.wait_allocated()
    cgroup.write("cgroup.kill", "1")
    assert hog.wait_dead() == "SIGKILL"


def test_fails_inside_the_vm(cgroup):
    assert cgroup.procs == ["no such process"], "this test fails on purpose"


def test_skips_inside_the_vm():
    pytest.skip("skipped on purpose")
