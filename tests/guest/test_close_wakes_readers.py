"""The object layer's promises where only our kernel can show them: close() from another
thread ends a reader blocked in events() (kill watcher, policy) within a bounded time,
and an int cgroup is a cgroup id wherever a cgroup is taken."""
from __future__ import annotations

import threading
import time

import bpfoom
from policytest import load_policy  # noqa: F401 (a fixture)


def blocked_reader(stream) -> tuple[threading.Thread, list]:
    """A thread iterating stream.events() with no timeout; `outcome` gets the events or the error."""
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(list(stream.events()))
        except BaseException as error:  # noqa: BLE001 - reported to the test
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    time.sleep(0.5)
    assert thread.is_alive() and outcome == [], "events() ended before anything happened"
    return thread, outcome


def closing_ends(stream, thread: threading.Thread, outcome: list) -> None:
    closer = threading.Thread(target=stream.close, daemon=True)  # a hang fails, not blocks, the run
    closer.start()
    closer.join(5)
    assert not closer.is_alive(), "close() waited for the reader"
    thread.join(5)
    assert not thread.is_alive(), "events() still blocked 5 s after close()"
    assert outcome == [[]], outcome  # a clean end of iteration, nothing lost or invented


def test_closing_a_kill_watcher_ends_events_in_another_thread():
    watcher = bpfoom.KillWatcher()
    closing_ends(watcher, *blocked_reader(watcher))


def test_closing_a_policy_ends_events_in_another_thread(load_policy, cgroups):
    policy = load_policy("largest_task")
    policy.attach(cgroup=cgroups("reader"))
    closing_ends(policy, *blocked_reader(policy))
    assert policy.closed


def test_a_cgroup_id_attaches_to_that_cgroup(probe, cgroups):
    cg = cgroups("by_id")
    with probe.struct_ops["probe_policy"].attach(cgroup=cg.id) as link:
        assert link.info().cgroup_id == cg.id
