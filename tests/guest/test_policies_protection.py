"""Safe fleet defaults: the shipped policies never choose a task or leaf whose oom_score_adj is at
or below protected_oom_score_adj (-900 by default) while another candidate exists, and prefer
the higher oom_score_adj among equals.

The kubelet's layout on a node: the kubelet at -999, the container runtime and critical pods at
-997, workloads above; real processes in real memcgs, a real OOM, the kernel's log of the kill.
"""
from __future__ import annotations

import pytest

from oomtest import sigkilled
from policytest import first_kill, holders, overrun
from policytest import load_policy  # noqa: F401 (a fixture)

# MiB: the kubelet's leaf is the largest; killing the pod alone ends the OOM (64 - 16 < 56)
LAYOUT = {"kubelet": 20, "runtime": 8, "pod": 16}
ADJ = {"kubelet": -999, "runtime": -997, "pod": 0}


@pytest.mark.parametrize("policy_name", ["largest_leaf", "largest_task"])
def test_protected_daemons_are_spared_while_a_workload_can_die(policy_name, load_policy, cgroups,
                                                               hogs, kernel_log):
    policy = load_policy(policy_name)
    top = cgroups("node", memory_max="56M")
    leaves = {name: cgroups(f"node/{name}") for name in (*LAYOUT, "alloc")}
    policy.attach(cgroup=top)
    started = holders(hogs, leaves, LAYOUT, ADJ)
    overrun(hogs, leaves["alloc"], 20)  # 44 + 20 > 56: an OOM
    pid, _ = first_kill(kernel_log)
    assert pid == started["pod"].pid, {name: hog.pid for name, hog in started.items()}
    assert sigkilled(started["pod"].wait_dead())
    assert started["kubelet"].alive and started["runtime"].alive


def test_a_protected_task_is_chosen_only_when_nothing_else_is_left(load_policy, cgroups, hogs,
                                                                   kernel_log):
    policy = load_policy("largest_leaf")
    top = cgroups("only", memory_max="48M")
    leaves = {name: cgroups(f"only/{name}") for name in ("kubelet", "runtime", "alloc")}
    policy.attach(cgroup=top)
    started = holders(hogs, leaves, {"kubelet": 12, "runtime": 20}, ADJ)
    overrun(hogs, leaves["alloc"], 24)
    pid, _ = first_kill(kernel_log)
    assert pid == started["runtime"].pid  # both protected: the largest, as before


def test_the_threshold_is_a_tunable(load_policy, cgroups, hogs, kernel_log):
    """protected_oom_score_adj = -1000 turns protection off: the largest leaf dies again."""
    policy = load_policy("largest_leaf", protected_oom_score_adj=-1000)
    top = cgroups("off", memory_max="56M")
    leaves = {name: cgroups(f"off/{name}") for name in (*LAYOUT, "alloc")}
    policy.attach(cgroup=top)
    started = holders(hogs, leaves, LAYOUT, ADJ)
    overrun(hogs, leaves["alloc"], 20)
    pid, _ = first_kill(kernel_log)
    assert pid == started["kubelet"].pid


def test_priority_treats_a_protected_task_as_a_protected_leaf(load_policy, cgroups, hogs,
                                                              kernel_log):
    policy = load_policy("priority")
    top = cgroups("prio", memory_max="56M")
    leaves = {name: cgroups(f"prio/{name}") for name in (*LAYOUT, "alloc")}
    policy.attach(cgroup=top)
    started = holders(hogs, leaves, LAYOUT, ADJ)
    overrun(hogs, leaves["alloc"], 20)
    pid, _ = first_kill(kernel_log)
    assert pid == started["pod"].pid
    assert started["kubelet"].alive and started["runtime"].alive
