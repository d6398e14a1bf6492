"""Helpers for the shipped-policy tests (test_policies*.py): load policies, build a
memcg with killable holders and an unkillable allocator, read who killed whom."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

import bpfoom
from oomtest import Hog, KernelLog, killed_pids, wait_until

KERNEL_REASON = "Memory cgroup out of memory"


@pytest.fixture
def load_policy() -> Iterator[Callable[..., bpfoom.OomPolicy]]:
    """load_policy("largest_leaf", **tunables): a loaded OomPolicy, detached and closed at the end."""
    loaded: list[bpfoom.OomPolicy] = []

    def load(name: str, **tunables) -> bpfoom.OomPolicy:
        policy = bpfoom.OomPolicy.load(name, **tunables)
        loaded.append(policy)
        return policy

    yield load
    for policy in loaded:
        policy.detach()
        policy.close()


def collect(policy: bpfoom.OomPolicy, until: Callable[[list[bpfoom.DecisionEvent]], bool],
            timeout: float = 60.0) -> list[bpfoom.DecisionEvent]:
    """The policy's events until `until(events)` holds; fails the test after `timeout`."""
    events: list[bpfoom.DecisionEvent] = []
    deadline = time.monotonic() + timeout
    while not until(events):
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"{policy.name}: timed out after {timeout:.0f} s; events so far: "
                        f"{[str(e) for e in events]}")
        events.extend(policy.events(timeout=min(left, 1.0)))
    return events


def kills(events: list[bpfoom.DecisionEvent]) -> list[bpfoom.DecisionEvent]:
    return [event for event in events if event.action == "killed"]


def only_kill(policy: bpfoom.OomPolicy, kernel_log: KernelLog) -> bpfoom.DecisionEvent:
    """The policy's one kill event (after a second to let others arrive); fails on 0 or more."""
    events = collect(policy, lambda seen: kills(seen))
    events += list(policy.events(timeout=1))
    found = kills(events)
    assert len(found) == 1, (f"{policy.name} killed {len(found)} times: "
                             f"{[str(e) for e in events]}; kernel kills: {killed_pids(kernel_log)}")
    return found[0]


def first_kill(kernel_log: KernelLog, timeout: float = 60.0) -> tuple[int, str]:
    """(pid, reason) of the first OOM kill in the kernel log from now on."""
    wait_until(lambda: killed_pids(kernel_log), timeout=timeout, what="an OOM kill")
    return killed_pids(kernel_log)[0]


def overrun(hogs, cg: bpfoom.Cgroup, mib: int) -> Hog:
    """Start an unkillable (oom_score_adj -1000) hog of `mib` MiB in `cg`, which runs it out of memory."""
    hog = hogs(cg, mib, oom_score_adj=-1000, gated=True)
    hog.go()
    return hog


def holders(hogs, cg_by_name: dict[str, bpfoom.Cgroup], sizes: dict[str, int],
            adj: dict[str, int] | None = None) -> dict[str, Hog]:
    """One hog per name, each allocated and holding its MiB before the next starts."""
    started = {}
    for name, mib in sizes.items():
        hog = hogs(cg_by_name[name], mib, oom_score_adj=(adj or {}).get(name, 0))
        assert hog.wait_for("allocated"), f"{name} could not allocate {mib} MiB"
        started[name] = hog
    return started
