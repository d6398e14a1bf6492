"""A user's tests of the `cgroup` and `oom_policy` fixtures on whatever kernel runs them."""
import os
from pathlib import Path

SEEN = Path(os.environ["SAMPLE_RECORD"])


def test_cgroup_is_a_fresh_cgroup2_directory(cgroup):
    SEEN.write_text(str(cgroup.path))
    assert cgroup.procs == []
    assert (cgroup.path / "cgroup.controllers").exists()
    child = cgroup.child("leaf")
    child.close()


def test_cgroup_is_removed_even_when_the_test_fails(cgroup):
    cgroup.child("left-behind").close()
    with open(SEEN, "a") as record:
        record.write("\n" + str(cgroup.path))
    assert False, "this test fails on purpose"


def test_oom_policy_without_the_kernel_feature(oom_policy, cgroup):
    oom_policy("largest_leaf", cgroup=cgroup.path)
