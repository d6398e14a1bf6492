"""The priority policy: per-cgroup priority and protection set from Python through
its `cgroup_settings` map, read by the kernel at each OOM."""
from __future__ import annotations

from oomtest import memory_events, sigkilled
from policytest import first_kill, holders, only_kill, overrun
from policytest import load_policy  # noqa: F401 (a fixture)


def test_a_protected_cgroup_survives_while_an_unprotected_one_exists(load_policy, cgroups,
                                                                     hogs, kernel_log):
    policy = load_policy("priority")
    top = cgroups("prio", memory_max="56M")
    leaves = {name: cgroups(f"prio/{name}") for name in ("precious", "spare", "alloc")}
    policy.attach(cgroup=top)
    policy.object.maps["cgroup_settings"][leaves["precious"].id] = {"priority": 0, "protected": 1}
    started = holders(hogs, leaves, {"precious": 28, "spare": 8})
    overrun(hogs, leaves["alloc"], 24)  # 60 MiB wanted; 52 once `spare` is gone

    assert first_kill(kernel_log) == (started["spare"].pid, "bpfoom priority")
    assert sigkilled(started["spare"].wait_dead())
    decision = only_kill(policy, kernel_log)
    assert decision.reason == "priority_class"
    assert decision.victim_cgroup_id == leaves["spare"].id
    assert [(c.cgroup_id, c.protected) for c in decision.considered] == [
        (leaves["spare"].id, False), (leaves["precious"].id, True)]
    assert decision.excluded["protected"].first == ((leaves["precious"].id, 0),)
    assert started["precious"].alive
    assert memory_events(leaves["precious"])["oom_kill"] == 0


def test_priorities_changed_while_attached_apply_at_the_next_oom(load_policy, cgroups, hogs,
                                                                 kernel_log):
    """Lowest priority dies first, then the settings flip and the other class dies."""
    policy = load_policy("priority")
    top = cgroups("flip", memory_max="56M")
    leaves = {name: cgroups(f"flip/{name}") for name in ("x", "y", "alloc")}
    settings = policy.object.maps["cgroup_settings"]
    policy.attach(cgroup=top)
    settings[leaves["x"].id] = {"priority": 0, "protected": 0}
    settings[leaves["y"].id] = {"priority": 10, "protected": 0}
    started = holders(hogs, leaves, {"x": 16, "y": 16})
    overrun(hogs, leaves["alloc"], 28)  # 60 MiB wanted; 44 once x is gone

    assert first_kill(kernel_log) == (started["x"].pid, "bpfoom priority")
    assert sigkilled(started["x"].wait_dead())
    first = only_kill(policy, kernel_log)
    assert first.victim_cgroup_id == leaves["x"].id

    settings[leaves["x"].id] = {"priority": 20, "protected": 0}
    settings[leaves["y"].id] = {"priority": -5, "protected": 0}
    again = hogs(leaves["x"], 16)  # 60 MiB wanted: y is now the lowest class
    assert sigkilled(started["y"].wait_dead())
    second = only_kill(policy, kernel_log)
    assert second.victim_cgroup_id == leaves["y"].id
    assert second.pids == (started["y"].pid,)
    assert again.wait_for("allocated"), "x's new task did not get its memory"
    assert again.alive


def test_a_leaf_without_a_setting_takes_its_nearest_ancestors(load_policy, cgroups, hogs,
                                                              kernel_log):
    """Settings on parents reach every leaf below them (siblings share their parent's), a
    leaf's own setting wins over its parent's, and a setting above the policy's cgroup does
    not count (c would die first if it did)."""
    policy = load_policy("priority")
    outer = cgroups("nest")
    top = cgroups("nest/top", memory_max="48M")
    teams = {team: cgroups(f"nest/top/{team}") for team in ("a", "b")}
    names = ("a/a1", "a/a2", "b/b1", "b/b2", "c", "alloc")
    leaves = {name.split("/")[-1]: cgroups(f"nest/top/{name}") for name in names}
    settings = policy.object.maps["cgroup_settings"]
    settings[outer.id] = {"priority": -100, "protected": 0}
    settings[teams["a"].id] = {"priority": 10, "protected": 0}
    settings[teams["b"].id] = {"priority": 0, "protected": 0}
    settings[leaves["b2"].id] = {"priority": 20, "protected": 0}
    policy.attach(cgroup=top)
    started = holders(hogs, leaves, {"a1": 16, "a2": 4, "b1": 12, "b2": 4, "c": 4})
    overrun(hogs, leaves["alloc"], 16)  # 56 MiB wanted; 44 once b1 is gone

    assert first_kill(kernel_log) == (started["b1"].pid, "bpfoom priority")
    assert sigkilled(started["b1"].wait_dead())
    decision = only_kill(policy, kernel_log)
    assert decision.victim_cgroup_id == leaves["b1"].id
    by_leaf = {c.cgroup_id: c.priority for c in decision.considered}
    assert by_leaf == {leaves["a1"].id: 10, leaves["a2"].id: 10, leaves["b1"].id: 0,
                       leaves["b2"].id: 20, leaves["c"].id: 0}
    assert all(started[name].alive for name in ("a1", "a2", "b2", "c"))
