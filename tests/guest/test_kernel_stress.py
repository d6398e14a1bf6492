"""Stress of the BPF OOM kernel interface (issue 16), bounded in time.

Skipped unless BPFOOM_STRESS=1.  BPFOOM_STRESS_SECONDS (default 120) bounds
the churn test; BPFOOM_OVERKILL_RUNS (default 20) sets the runs per side of
the kills-per-OOM measurement.  With BPFOOM_STRESS_REPORT=<file> the figures
are written there as JSON (the repository is shared with the VM).

Pass = no exception in any worker, no kernel splat or hung task (the autouse
fixtures and the VM harness check the log), links, fds and cgroups back to
their baseline, and, on a kmemleak kernel, no leak report naming our code.
"""
from __future__ import annotations

import errno
import json
import os
import random
import subprocess
import threading
import time
from pathlib import Path

import pytest

import bpfoom
from bpfoom.testing import remove_cgroup_tree
from kerneltest import open_guard, overkill_run
from oomtest import (BPF_DIR, KILL_CURRENT, PSI_MEM, Forker, Trigger, link_ids, open_probe,
                     open_psi_probe, set_action, set_psi_triggers, sigkilled, wait_until)

pytestmark = pytest.mark.skipif(os.environ.get("BPFOOM_STRESS") != "1",
                                reason="stress tests run with BPFOOM_STRESS=1")

SECONDS = float(os.environ.get("BPFOOM_STRESS_SECONDS", "120"))
RUNS = int(os.environ.get("BPFOOM_OVERKILL_RUNS", "20"))
CHURN_CGROUPS = 50
KMEMLEAK = Path("/sys/kernel/debug/kmemleak")
OUR_CODE = ("bpf_oom", "bpf_psi", "bpf_struct_ops", "oom_pending", "oom_kill_task_for_policy",
            "psi_trigger", "bpf_out_of_memory")


def report(section: str, figures: dict) -> None:
    path = os.environ.get("BPFOOM_STRESS_REPORT")
    print(f"\n{section}: {json.dumps(figures)}")
    if not path:
        return
    existing = json.loads(Path(path).read_text()) if Path(path).exists() else {}
    existing[section] = figures
    Path(path).write_text(json.dumps(existing, indent=2) + "\n")


def test_kills_per_oom_ours_and_the_kernels(cgroups, hogs):
    """The overkill scenario RUNS times with the policy and RUNS times with the kernel alone."""
    policy = bpfoom.BpfObject.open(BPF_DIR / "overkill_leaf.bpf.o")
    try:
        policy.load()
        ours = [overkill_run(cgroups, hogs, f"ours{i}", policy) for i in range(RUNS)]
    finally:
        policy.close()
    default = [overkill_run(cgroups, hogs, f"default{i}", None) for i in range(RUNS)]
    report("kills_per_oom", {
        "runs": RUNS,
        "ours": [r["kills"] for r in ours], "ours_killed": [r["killed"] for r in ours],
        "default": [r["kills"] for r in default],
        "default_killed": [r["killed"] for r in default],
    })
    assert [r["kills"] for r in ours] == [1] * RUNS, ours
    assert all(r["killed"] == ["cg3/cg4"] for r in ours), ours


def _mkdir_memcg(path: Path) -> None:
    path.mkdir()
    (path / "memory.swap.max").write_text("0")


def _kmemleak_suspects() -> list[str]:
    if not KMEMLEAK.exists():
        subprocess.run(["mount", "-t", "debugfs", "none", "/sys/kernel/debug"],
                       capture_output=True)
    if not KMEMLEAK.exists():
        return []
    for _ in range(2):  # an object is reported after two scans found it unreferenced
        KMEMLEAK.write_text("scan")
    text = KMEMLEAK.read_text()
    reports = ["unreferenced object" + part for part in text.split("unreferenced object")[1:]]
    return reports


def test_churn_attach_oom_psi_declare(cgroups):
    """Everything at once for SECONDS: see the module docstring."""
    links_before = link_ids()
    leaks_before = len(_kmemleak_suspects())
    churn = cgroups("churn", memory_for_children=True)
    slots = [churn.path / f"c{i}" for i in range(CHURN_CGROUPS)]
    for path in slots:
        _mkdir_memcg(path)
    leaf = cgroups("leaf", memory_max="16M")
    parent = cgroups("parent")
    under_parent = cgroups("parent/child", memory_max="16M")
    system = cgroups("system", memory_max="16M")
    declared = cgroups("declared", memory_max="16M")

    probe = open_probe("bpfoom_stress")
    guard = open_guard()
    psi = open_psi_probe()
    declare = bpfoom.BpfObject.open(BPF_DIR / "psi_declare_init.bpf.o")
    declare.load()
    counts = {name: 0 for name in ("attach", "attach_refused", "detach", "rmdir", "mkdir",
                                   "oom_kills", "oom_other", "psi_attach", "psi_refused",
                                   "declare", "declare_busy", "declare_refused")}
    lock = threading.Lock()
    stop = threading.Event()
    failures: list[BaseException] = []

    def count(name: str, n: int = 1) -> None:
        with lock:
            counts[name] += n

    def worker(fn):
        def run():
            rng = random.Random(hash(fn.__name__))
            try:
                while not stop.is_set():
                    fn(rng)
            except BaseException as err:  # reported by the main thread
                failures.append(err)
                stop.set()
        return threading.Thread(target=run, name=fn.__name__)

    held: list[bpfoom.Link] = []

    def attach_detach(rng):
        path = rng.choice(slots)
        try:
            cg = bpfoom.Cgroup.open(path)
        except OSError:
            count("attach_refused")
            return
        try:
            held.append(guard.struct_ops["guard_policy"].attach(cgroup=cg))
            count("attach")
        except OSError as err:
            assert err.errno in (errno.ENOENT, errno.EBUSY, errno.EINVAL, errno.EBADF,
                                 errno.ENODEV), err
            count("attach_refused")
        finally:
            cg.close()
        while len(held) > 20 or (held and rng.random() < 0.3):
            held.pop(rng.randrange(len(held))).close()
            count("detach")

    def remove_recreate(rng):
        path = rng.choice(slots)
        try:
            path.rmdir()
            count("rmdir")
        except FileNotFoundError:
            pass
        try:
            _mkdir_memcg(path)
            count("mkdir")
        except FileExistsError:
            pass
        time.sleep(0.01)

    forkers = {}

    def ooms(rng):
        for cg in (leaf, under_parent, system):
            _, status = forkers[cg.path].allocate(48)
            count("oom_kills" if sigkilled(status) else "oom_other")

    def psi_cycle(rng):
        ids = []
        for path in rng.sample(slots, 2):
            try:
                ids.append(os.stat(path).st_ino)
            except FileNotFoundError:
                pass
        set_psi_triggers(psi, *[Trigger(i, PSI_MEM) for i in ids])
        try:
            with psi.struct_ops[next(iter(psi.struct_ops))].attach():
                count("psi_attach")
                time.sleep(rng.random() * 0.05)
        except OSError:
            count("psi_refused")  # a trigger's cgroup went away during init()

    def declare_cycle(rng):
        declare.bss["cgroup_id"] = rng.choice((declared.id, leaf.id, system.id))
        declare.data["flags"] = rng.choice((0, 1))  # with and without WAIT_ON_OOM_LOCK
        declare.bss["declared"] = 0
        try:
            with declare.struct_ops["psi_declare_init"].attach():
                pass
        except OSError:
            count("declare_refused")
            return
        count("declare_busy" if declare.bss["ret"] == -errno.EBUSY else "declare")

    ops = probe.struct_ops["probe_policy"]
    static_links = [ops.attach(cgroup=leaf), ops.attach(cgroup=parent), ops.attach()]
    for cg_id in (leaf.id, parent.id, 0):
        set_action(probe, cg_id, KILL_CURRENT)
    for cg in (leaf, under_parent, system):
        forkers[cg.path] = Forker(cg)
    threads = [worker(fn) for fn in (attach_detach, remove_recreate, ooms, psi_cycle,
                                     declare_cycle)]
    started = time.monotonic()
    try:
        for thread in threads:
            thread.start()
        stop.wait(SECONDS)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=300)
        hung = [t.name for t in threads if t.is_alive()]
        for link in held + static_links:
            link.close()
        for forker in forkers.values():
            forker.close()
        for obj in (probe, guard, psi, declare):
            obj.close()
    elapsed = time.monotonic() - started
    assert not hung, f"workers still running after the stop: {hung}"
    assert not failures, failures
    wait_until(lambda: link_ids() <= links_before, timeout=60, what="every link to go")
    for path in slots:
        remove_cgroup_tree(path)
    assert not [p for p in churn.path.iterdir() if p.is_dir()], "cgroups left behind"
    leaks = _kmemleak_suspects()
    ours = [r for r in leaks[leaks_before:] if any(name in r for name in OUR_CODE)]
    figures = dict(counts, seconds=round(elapsed, 1), kmemleak_reports=len(leaks) - leaks_before,
                   kmemleak_ours=len(ours), kmemleak=KMEMLEAK.exists())
    report("churn", figures)
    assert not ours, ours[:3]
    assert counts["attach"] > 0 and counts["oom_kills"] > 0 and counts["psi_attach"] > 0
    assert counts["declare"] + counts["declare_busy"] > 0
