"""Granularity per cgroup: what dies once a policy has chosen, set while attached, and
memory.oom.group honoured (and reported) whatever the setting."""
from __future__ import annotations

import pytest

import bpfoom
from oomtest import killed_pids, memory_events, sigkilled
from policytest import collect, holders, kills, overrun
from policytest import load_policy  # noqa: F401 (a fixture)


def test_task_then_cgroup_then_oom_group(load_policy, cgroups, hogs, kernel_log):
    """One policy, three OOMs of a three-process cgroup, the setting changed between them."""
    policy = load_policy("largest_leaf")
    top = cgroups("gran", memory_max="64M")
    trio, alloc = cgroups("gran/trio"), cgroups("gran/alloc")
    policy.attach(cgroup=top)

    def three(sizes: tuple[int, int, int]) -> list:
        started = holders(hogs, {f"t{i}": trio for i in range(3)},
                          {f"t{i}": mib for i, mib in enumerate(sizes)})
        return [started[f"t{i}"] for i in range(3)]

    def oom(allocate_mib: int) -> bpfoom.DecisionEvent:
        allocator = overrun(hogs, alloc, allocate_mib)
        decision, = kills(collect(policy, kills))
        allocator.stop()
        return decision

    # "task": only the largest of the three dies.
    policy.set_granularity(trio, "task")
    assert policy.granularity(trio.path) == "task"
    tasks = three((14, 10, 8))
    decision = oom(40)  # 32 + 40 MiB > 64
    assert sigkilled(tasks[0].wait_dead())
    assert tasks[1].alive() and tasks[2].alive()
    assert (decision.granularity, decision.granularity_cgroup_id) == ("task", trio.id)
    assert decision.pids == (tasks[0].pid,) and decision.oom_group_cgroup_id == 0
    assert memory_events(trio)["oom_kill"] == 1

    # "cgroup", set while attached: the next OOM kills all three.
    policy.set_granularity(trio, "cgroup")
    tasks = [tasks[1], tasks[2], holders(hogs, {"t3": trio}, {"t3": 14})["t3"]]
    decision = oom(40)
    assert all(sigkilled(task.wait_dead()) for task in tasks)
    assert (decision.granularity, decision.granularity_cgroup_id) == ("cgroup", trio.id)
    assert sorted(decision.pids) == sorted(task.pid for task in tasks)
    assert memory_events(trio)["oom_kill"] == 4

    # memory.oom.group: "task" asked, the kernel kills the whole group, and the event says so.
    policy.set_granularity(trio, "task")
    trio.write("memory.oom.group", "1")
    tasks = three((14, 10, 8))
    decision = oom(40)
    assert all(sigkilled(task.wait_dead()) for task in tasks)
    assert decision.granularity == "task" and decision.pids == (tasks[0].pid,)
    assert decision.oom_group_cgroup_id == trio.id
    assert decision.to_json()["oom_group_cgroup_id"] == trio.id
    killed = {pid for pid, _ in killed_pids(kernel_log)}
    assert {task.pid for task in tasks} <= killed
    # (A re-kill of the exiting victim while the policy waits for it may count again.)
    assert memory_events(trio)["oom_group_kill"] >= 1


def test_subtree_and_the_nearest_setting(load_policy, cgroups, hogs, kernel_log):
    """"subtree" on a parent kills its every leaf; a setting nearer the victim wins over it."""
    policy = load_policy("largest_leaf")
    top = cgroups("tree", memory_max="64M")
    group = cgroups("tree/group")
    leaves = {name: cgroups(f"tree/group/{name}") for name in ("x", "y")}
    alloc = cgroups("tree/alloc")
    policy.attach(cgroup=top)
    policy.set_granularity(group, "subtree")
    started = holders(hogs, leaves, {"x": 16, "y": 12})
    overrun(hogs, alloc, 40)  # 28 + 40 MiB > 64
    assert sigkilled(started["x"].wait_dead()) and sigkilled(started["y"].wait_dead())
    decision, = kills(collect(policy, kills))
    assert decision.victim_cgroup_id == leaves["x"].id
    assert (decision.granularity, decision.granularity_cgroup_id) == ("subtree", group.id)
    assert sorted(decision.pids) == sorted(hog.pid for hog in started.values())


def test_bad_granularity_values_are_refused(load_policy, cgroups):
    policy = load_policy("largest_task")
    cg = cgroups("refused")
    with pytest.raises(bpfoom.InvalidValueError, match="did you mean 'task'"):
        policy.set_granularity(cg, "tasks")
    with pytest.raises(bpfoom.NotFoundError):
        policy.set_granularity("/sys/fs/cgroup/no-such-cgroup", "task")
    policy.set_granularity(cg.id, "subtree")
    assert policy.granularity(cg) == "subtree"
    policy.set_granularity(cg, None)
    assert policy.granularity(cg) is None
