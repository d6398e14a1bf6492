"""The shipped policies deciding real OOMs, loaded and read through bpfoom.OomPolicy.

Each test builds memcgs with killable holders, then starts an unkillable
(oom_score_adj -1000) allocator that runs the memcg out of memory, and checks
who the kernel log says was killed, by whom, what memory.events counted and
what the policy reported on its ring buffer.
"""
from __future__ import annotations

from pathlib import Path

import pytest

import bpfoom
from oomtest import await_oom_report_window
from oomtest import killed_pids, memory_events, policy_lines, sigkilled, wait_until
from policytest import KERNEL_REASON, collect, first_kill, holders, kills, only_kill, overrun
from policytest import load_policy  # noqa: F401 (a fixture)
from test_oom_tree import first_death, run_scenario

EXAMPLE_POLICY = Path(__file__).resolve().parents[2] / "examples" / "policies" / "adjusted_task.bpf.o"


def test_oom_tree_reference_scenario_through_oom_policy(load_policy, cgroups, hogs, kernel_log):
    """Spec section 6: largest_leaf on oom_test and cg3 kills cg4, the largest killable leaf."""
    policy = load_policy("largest_leaf")
    top, groups, started = run_scenario(cgroups, hogs)
    policy.attach(cgroup=top)
    policy.attach(cgroup=groups["cg3"])

    assert first_death(started, kernel_log) == ("cg3/cg4", "bpfoom largest_leaf")
    assert sigkilled(started["cg3/cg4"].wait_dead())
    assert started["cg2"].wait_for("allocated"), "cg2 did not get its memory after the kill"
    events = collect(policy, lambda seen: kills(seen))
    events += list(policy.events(timeout=1))

    decision, = kills(events)
    assert decision.policy == "largest_leaf"
    assert decision.reason == "largest_leaf"
    assert (decision.scope_cgroup_id, decision.oom_cgroup_id) == (top.id, top.id)
    assert decision.victim_cgroup_id == groups["cg3/cg4"].id
    assert decision.pids == (started["cg3/cg4"].pid,)
    assert decision.candidates == 3  # cg1, cg4, cg5; cg2 holds an unkillable task
    assert 29 << 20 <= decision.usage_bytes <= 33 << 20
    assert memory_events(groups["cg3/cg4"])["oom_kill"] == 1
    # One kill in all: while cg4's task exits the policy waits instead of killing again.
    assert [pid for pid, _ in killed_pids(kernel_log)] == [started["cg3/cg4"].pid]
    assert all(hog.alive for name, hog in started.items() if name != "cg3/cg4")


def test_every_kill_appears_once_in_the_event_stream(load_policy, cgroups, hogs, kernel_log):
    """Three OOMs, three kills: each killed event names the pid and cgroup the kernel killed."""
    policy = load_policy("largest_leaf")
    top = cgroups("stream", memory_max="56M")
    leaves = {name: cgroups(f"stream/{name}") for name in ("a", "b", "c", "alloc")}
    policy.attach(cgroup=top)
    started = holders(hogs, leaves, {"a": 14, "b": 12, "c": 10})
    # 36 MiB held; each allocation overruns 56 MiB by less than the next victim frees.
    for victim, mib in (("a", 24), ("b", 12), ("c", 12)):
        overrun(hogs, leaves["alloc"], mib)
        assert sigkilled(started[victim].wait_dead())
    events = collect(policy, lambda seen: len(kills(seen)) >= 3)
    events += list(policy.events(timeout=1))

    kernel = [(pid, reason) for pid, reason in killed_pids(kernel_log)]
    assert kernel == [(started[n].pid, "bpfoom largest_leaf") for n in ("a", "b", "c")]
    assert [(e.pids, e.victim_cgroup_id) for e in kills(events)] == [
        ((started[n].pid,), leaves[n].id) for n in ("a", "b", "c")]
    assert all(e.scope_cgroup_id == top.id for e in events)


def test_min_victim_bytes_set_while_attached_makes_it_decline(load_policy, cgroups, hogs,
                                                              kernel_log):
    """A .data tunable changed after attach: the next OOM is declined and the kernel decides."""
    await_oom_report_window()  # the report lines read below are rate-limited
    policy = load_policy("largest_leaf")
    top = cgroups("small", memory_max="40M")
    leaves = {name: cgroups(f"small/{name}") for name in ("holder", "alloc")}
    policy.attach(cgroup=top)
    policy.set("min_victim_bytes", 64 << 20)
    assert policy.get("min_victim_bytes") == 64 << 20
    started = holders(hogs, leaves, {"holder": 16}, adj={"holder": 500})
    overrun(hogs, leaves["alloc"], 30)

    assert first_kill(kernel_log) == (started["holder"].pid, KERNEL_REASON)
    events = collect(policy, lambda seen: any(e.action == "declined" for e in seen))
    declined = next(e for e in events if e.action == "declined")
    assert declined.reason == "below_minimum"
    assert declined.victim_cgroup_id == leaves["holder"].id
    assert "oom_policy=default" in policy_lines(kernel_log)


@pytest.mark.parametrize("policy_name,victim", [("largest_task", "big"), ("newest_task", "young")])
def test_task_policies_kill_one_task(load_policy, cgroups, hogs, kernel_log, policy_name, victim):
    """largest_task kills the biggest task, newest_task the last started; nothing else dies."""
    policy = load_policy(policy_name)
    top = cgroups("tasks", memory_max="60M")
    work = cgroups("tasks/work")
    alloc = cgroups("tasks/alloc")
    policy.attach(cgroup=top)
    started = holders(hogs, {"big": work, "old": work, "young": work},
                      {"old": 6, "big": 20, "young": 8})
    allocator = overrun(hogs, alloc, 30)  # 64 MiB wanted; either victim leaves room

    assert first_kill(kernel_log) == (started[victim].pid, f"bpfoom {policy_name}")
    assert sigkilled(started[victim].wait_dead())
    decision = only_kill(policy, kernel_log)
    assert decision.pids == (started[victim].pid,)
    assert decision.victim_cgroup_id == work.id
    assert decision.reason == policy_name
    assert decision.candidates == 3
    assert all(hog.alive for name, hog in started.items() if name != victim)
    # The explanation: the three tasks in the order they would die, the allocator excluded.
    order = {"largest_task": ("big", "young", "old"), "newest_task": ("young", "big", "old")}
    assert [c.pid for c in decision.considered] == [started[n].pid for n in order[policy_name]]
    assert all(c.cgroup_id == work.id for c in decision.considered)
    ranks = [c.rank for c in decision.considered]
    assert ranks == sorted(ranks, reverse=True)
    if policy_name == "largest_task":
        assert ranks == [c.usage_bytes for c in decision.considered]
    assert decision.excluded["unkillable"].first == ((alloc.id, allocator.pid),)
    assert decision.granularity == "task"


def test_observe_reports_largest_leaf_and_lets_the_kernel_decide(load_policy, cgroups, hogs,
                                                                kernel_log):
    """The kernel's victim (oom_score_adj 1000) dies; observe names the largest leaf instead.

    Only the first kill is the kernel's decision: it may kill again while its
    victim exits (Linux 7.2 hides exiting tasks from its own scan too).
    """
    policy = load_policy("observe")
    top = cgroups("observed", memory_max="56M")
    leaves = {name: cgroups(f"observed/{name}") for name in ("large", "favoured", "alloc")}
    policy.attach(cgroup=top)
    started = holders(hogs, leaves, {"large": 24, "favoured": 8}, adj={"favoured": 1000})
    overrun(hogs, leaves["alloc"], 28)  # 60 MiB wanted; 52 once `favoured` is gone

    assert first_kill(kernel_log) == (started["favoured"].pid, KERNEL_REASON)
    events = collect(policy, lambda seen: any(e.action == "dry_run" for e in seen))
    dry = next(e for e in events if e.action == "dry_run")
    assert dry.victim_cgroup_id == leaves["large"].id
    assert dry.pids == (started["large"].pid,)
    # largest_leaf's explanation, though the kernel's killer decides.
    assert [c.cgroup_id for c in dry.considered] == [leaves["large"].id, leaves["favoured"].id]
    assert [cgroup_id for cgroup_id, _ in dry.excluded["unkillable"].first] == [leaves["alloc"].id]
    assert not kills(events)
    wait_until(lambda: memory_events(leaves["favoured"])["oom_kill"] == 1,
               what="the kernel's kill to be counted")


def test_a_tunable_set_outside_its_declared_range_is_refused_and_unchanged(load_policy):
    """policy_meta.h's range holds while attached too: the value in the kernel stays."""
    policy = load_policy("largest_leaf", victim_wait_ms=100)
    policy.attach()
    with pytest.raises(bpfoom.InvalidValueError, match=r"victim_wait_ms.*0\.\.3600000"):
        policy.set("victim_wait_ms", 3600001)
    assert policy.get("victim_wait_ms") == 100


def test_the_example_user_policy_kills_by_its_own_ranking(load_policy, cgroups, hogs, kernel_log):
    """examples/policies/adjusted_task, loaded by path: oom_score_adj outweighs size."""
    policy = load_policy(str(EXAMPLE_POLICY), adj_unit_bytes=1 << 20)
    top = cgroups("adjusted", memory_max="60M")
    work = cgroups("adjusted/work")
    alloc = cgroups("adjusted/alloc")
    policy.attach(cgroup=top)
    # big: 20 MiB - 500 * 1 MiB ranks last; small: 8 MiB + 0 wins.
    started = holders(hogs, {"big": work, "small": work}, {"big": 20, "small": 8},
                      adj={"big": -500})
    overrun(hogs, alloc, 34)

    assert first_kill(kernel_log) == (started["small"].pid, "adjusted_task")
    assert sigkilled(started["small"].wait_dead())
    decision = only_kill(policy, kernel_log)
    assert decision.policy == "adjusted_task" and decision.pids == (started["small"].pid,)
    assert started["big"].alive
