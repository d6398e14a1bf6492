"""Prometheus metrics: the exposition parses by the format's rules, counts what it was given,
and the file node_exporter reads is never seen half-written.

The events are built here (OOMs need the VM; tests/guest/test_operators_oom.py
counts real ones); what is judged is the text a Prometheus scraper reads.
"""
from __future__ import annotations

import threading
import time

import pytest

import bpfoom
from bpfoom import daemon
from prometheus_text import parse

def kill(policy: str, constraint: str = "CONSTRAINT_MEMCG", ns: int | None = None) -> bpfoom.KillEvent:
    return bpfoom.KillEvent(policy=policy, by_bpf=policy != "default", pid=4242, tgid=4242,
                            comm="hog", uid=0, oom_score_adj=0, victim_cgroup_id=7, oom_cgroup_id=6,
                            constraint=constraint, constraint_text=None, oom_seq=1, victim_nr=1,
                            monotonic_ns=ns if ns is not None else time.monotonic_ns())


def decision(policy: str, action: str, reason: str) -> bpfoom.DecisionEvent:
    return bpfoom.DecisionEvent(policy=policy, action=action, reason=reason, scope_cgroup_id=6,
                                oom_cgroup_id=6, victim_cgroup_id=7, usage_bytes=1 << 20,
                                pids=(4242,), nr_pids=1, candidates=2, error=None,
                                monotonic_ns=time.monotonic_ns())


def test_the_exposition_counts_by_policy_and_constraint():
    metrics = daemon.Metrics()
    for event in (kill("largest_leaf"), kill("largest_leaf"), kill("default", "CONSTRAINT_NONE"),
                  decision("largest_leaf", "killed", "largest_leaf"),
                  decision("observe", "declined", "nothing_killable"),
                  decision("observe", "declined", "nothing_killable"),
                  bpfoom.OverrunEvent(lost=5, total_lost=5, monotonic_ns=1, source="largest_leaf"),
                  bpfoom.OomNoKillEvent(pid=1, tgid=1, comm="x", oom_cgroup_id=6, constraint="memcg",
                                        handled=False, oom_seq=2, monotonic_ns=1)):
        metrics.observe(event)
    before = time.time()
    metrics.observe(decision("largest_leaf", "waiting", "victim_exiting"))
    parsed = parse(metrics.render())
    kills = parsed["bpfoom_kills_total"]["samples"]
    assert kills == {(("policy", "largest_leaf"), ("constraint", "memcg")): 2,
                     (("policy", "default"), ("constraint", "none")): 1}
    decisions = parsed["bpfoom_decisions_total"]["samples"]
    assert decisions[(("policy", "observe"), ("action", "declined"), ("reason", "nothing_killable"))] == 2
    assert sum(decisions.values()) == 4
    assert parsed["bpfoom_declines_total"]["samples"] == {
        (("policy", "observe"), ("reason", "nothing_killable")): 2}
    assert parsed["bpfoom_records_lost_total"]["samples"] == {(("source", "largest_leaf"),): 5}
    assert parsed["bpfoom_overruns_total"]["samples"] == {(("source", "largest_leaf"),): 1}
    assert parsed["bpfoom_ooms_without_kill_total"]["samples"] == {(("handled", "false"),): 1}
    last = parsed["bpfoom_last_decision_timestamp_seconds"]["samples"][(("policy", "largest_leaf"),)]
    assert before - 1 <= last <= time.time() + 1
    assert parsed["bpfoom_kills_total"]["type"] == "counter"
    assert parsed["bpfoom_attached_policies"]["type"] == "gauge"


def test_counters_start_at_zero_and_the_daemon_reports_on_itself():
    """A counter that appears only at its first increment makes rate() and alerts on `== 0`
    blind; build_info, the kill watcher, attach failures and reloads are there from the start."""
    metrics = daemon.Metrics()
    metrics.init(["largest_leaf", "priority"], ["node", "batch"])
    parsed = parse(metrics.render())
    kills = parsed["bpfoom_kills_total"]["samples"]
    for policy in ("largest_leaf", "priority", "default"):
        for constraint in ("memcg", "none"):
            assert kills[(("policy", policy), ("constraint", constraint))] == 0
    assert parsed["bpfoom_attach_failures_total"]["samples"] == {
        (("entry", "node"),): 0, (("entry", "batch"),): 0}
    assert parsed["bpfoom_reloads_total"]["samples"] == {
        (("result", "success"),): 0, (("result", "failure"),): 0}
    [(labels, value)] = parsed["bpfoom_build_info"]["samples"].items()
    assert dict(labels)["version"] == bpfoom.__version__ and value == 1
    assert parsed["bpfoom_kill_watcher_up"]["samples"] == {(): 0}

    metrics.set_kill_watcher(True)
    metrics.attach_failed("batch")
    metrics.reloaded(False)
    metrics.observe(kill("largest_leaf"))
    parsed = parse(metrics.render())
    assert parsed["bpfoom_kill_watcher_up"]["samples"] == {(): 1}
    assert parsed["bpfoom_attach_failures_total"]["samples"][(("entry", "batch"),)] == 1
    assert parsed["bpfoom_reloads_total"]["samples"][(("result", "failure"),)] == 1
    assert parsed["bpfoom_kills_total"]["samples"][
        (("policy", "largest_leaf"), ("constraint", "memcg"))] == 1


def test_fields_built_once_count_as_the_event_does():
    """The daemon passes the JSON form it just logged: the counts must not change."""
    events = (kill("largest_leaf", ns=5), decision("observe", "declined", "nothing_killable"),
              bpfoom.OverrunEvent(lost=2, total_lost=2, monotonic_ns=1, source="observe"))
    own, given = daemon.Metrics(), daemon.Metrics()
    for event in events:
        own.observe(event)
        given.observe(event, event.to_json())
    mine, theirs = parse(own.render()), parse(given.render())
    # wall-clock stamps are converted from CLOCK_MONOTONIC at each to_json(): equal to within ms
    for name in [n for n in mine if n.endswith("_timestamp_seconds")]:
        stamps, others = mine.pop(name)["samples"], theirs.pop(name)["samples"]
        assert stamps.keys() == others.keys()
        assert all(abs(stamps[k] - others[k]) < 0.5 for k in stamps)
    assert mine == theirs


def test_attached_policies_and_label_escaping():
    metrics = daemon.Metrics()
    odd = 'we"ird\\name\n'
    metrics.set_attached([
        bpfoom.Attachment(policy_name="largest_leaf", kind="oom", cgroup_path="/sys/fs/cgroup/a",
                          cgroup_id=9, link_id=1, map_id=2, pin_path=None),
        bpfoom.Attachment(policy_name=odd, kind="psi", cgroup_path=None, cgroup_id=0, link_id=3,
                          map_id=4, pin_path=None)])
    samples = parse(metrics.render())["bpfoom_attached_policies"]["samples"]
    assert samples == {
        (("policy", "largest_leaf"), ("kind", "oom"), ("target", "/sys/fs/cgroup/a")): 1,
        (("policy", odd), ("kind", "psi"), ("target", "system")): 1}
    metrics.set_attached([])  # detached: the series go, they do not stay at 1
    assert parse(metrics.render())["bpfoom_attached_policies"]["samples"] == {}


def test_the_file_is_replaced_atomically(tmp_path):
    metrics = daemon.Metrics()
    target = tmp_path / "bpfoom.prom"
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            metrics.observe(kill("largest_leaf"))
            metrics.write(target)

    writer = threading.Thread(target=churn)
    writer.start()
    try:
        for _ in range(300):  # every read is a whole exposition, never a torn one
            if target.exists():
                parse(target.read_text())
    finally:
        stop.set()
        writer.join()
    assert oct(target.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in tmp_path.iterdir()] == ["bpfoom.prom"]  # no temporary left


def test_a_write_error_is_an_oserror_and_leaves_nothing_behind(tmp_path):
    metrics = daemon.Metrics()
    with pytest.raises(FileNotFoundError):
        metrics.write(tmp_path / "absent" / "bpfoom.prom")
    (tmp_path / "dir.prom").mkdir()  # rename over a directory fails after the temporary exists
    with pytest.raises(IsADirectoryError):
        metrics.write(tmp_path / "dir.prom")
    assert [p.name for p in tmp_path.iterdir()] == ["dir.prom"]
