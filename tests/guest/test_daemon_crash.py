"""Crash safety on our kernel: SIGKILL the daemon at random points of its start and of a reload,
ROUNDS times (BPFOOM_CRASH_ROUNDS, default 6: about 3 min under TCG on a loaded host, a start
taking 25 s there; the issue's 50 with BPFOOM_CRASH_ROUNDS=50, over 15 min there); the
next start re-adopts and ends with exactly the configured bpf_oom_ops attachments and no stray
pins.

Judged by the kernel: `bpfoom.attached()` per cgroup and the links behind the pins.  Entry "a"
is in every configuration (its tunables change, so a start or reload switches its link by
update); entry "b" comes and goes, so a kill can land in an attach, an adoption, an update, an
orphan removal or a reload.  The protection gap is measured across each kill: once "a" was
attached, the kernel must list a policy on its cgroup right after every SIGKILL (the pin keeps
it; a detach-and-attach replacement would show as a gap); the daemons' own `gap_ms` of any
replacement is collected and reported.
"""
from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import bpfoom
from daemon_process import DaemonProcess

ROUNDS = int(os.environ.get("BPFOOM_CRASH_ROUNDS", "6"))


def write(path: Path, pin_dir: Path, a: bpfoom.Cgroup, b: bpfoom.Cgroup | None,
          min_victim: str) -> None:
    text = (f'[daemon]\npin_dir = "{pin_dir}"\nlog_format = "json"\non_exit = "keep"\n\n'
            f'[[attach]]\nid = "a"\npolicy = "largest_leaf"\ncgroup = "{a.path}"\n'
            f'[attach.tunables]\nmin_victim_bytes = "{min_victim}"\n')
    if b is not None:
        text += f'\n[[attach]]\nid = "b"\npolicy = "largest_task"\ncgroup = "{b.path}"\n'
    path.write_text(text)


def on(cgroup: bpfoom.Cgroup) -> list[str]:
    """The policies the kernel runs on ``cgroup``."""
    return [a.policy_name for a in bpfoom.attached() if a.cgroup_id == cgroup.id]


def link_pins(pin_dir: Path) -> list[str]:
    return sorted(p.name for p in pin_dir.iterdir()) if pin_dir.exists() else []


def test_sigkill_anywhere_in_start_and_reload_then_a_start_converges(cgroups, pin_dir, tmp_path):
    a, b = cgroups("crash-a", memory_max="64M"), cgroups("crash-b", memory_max="64M")
    config = tmp_path / "bpfoom.toml"
    env = {"BPFOOM_STATE_DIR": str(tmp_path / "state")}
    seed = random.randrange(1 << 30)
    chooser = random.Random(seed)
    gaps_ms: list[float] = []  # what the daemons measured for a replacement, if any
    unprotected: list[int] = []  # rounds after whose kill "a", protected before, was not
    points = {"start": 0, "reload": 0}

    # One clean start and reload first: how long each takes here sets the range of kill points.
    write(config, pin_dir, a, None, "0")
    began = time.monotonic()
    first = DaemonProcess(config, env)
    first.wait_event("ready")
    start_s = time.monotonic() - began
    write(config, pin_dir, a, b, "1M")
    began = time.monotonic()
    first.signal(signal.SIGHUP)
    first.wait_event("reloaded")
    reload_s = time.monotonic() - began
    first.signal(signal.SIGKILL)
    first.wait()
    assert on(a) == ["largest_leaf"], "a clean start did not attach entry a"

    try:
        for round_ in range(ROUNDS):
            with_b = b if round_ % 2 else None
            write(config, pin_dir, a, with_b, f"{round_ % 3}M")
            daemon = DaemonProcess(config, env)
            if chooser.random() < 0.5:
                points["start"] += 1
                time.sleep(chooser.uniform(0.0, start_s))
            else:
                points["reload"] += 1
                daemon.wait_event("ready")
                write(config, pin_dir, a, None if with_b else b, f"{(round_ + 1) % 3}M")
                daemon.signal(signal.SIGHUP)
                time.sleep(chooser.uniform(0.0, reload_s))
            daemon.signal(signal.SIGKILL)
            daemon.wait()
            gaps_ms += [r["gap_ms"] for r in daemon.seen
                        if isinstance(r, dict) and r.get("event") == "replaced"]
            if on(a) != ["largest_leaf"]:
                unprotected.append(round_)

        write(config, pin_dir, a, None, "2M")
        final = DaemonProcess(config, env)
        final.wait_event("ready")
        assert on(a) == ["largest_leaf"] and on(b) == [], seed
        pins = link_pins(pin_dir)
        assert [p for p in pins if not p.endswith(("_events", "_dropped"))] == ["a"], (seed, pins)
        assert set(pins) <= {"a", "a_events", "a_events_dropped"}, (seed, pins)
        with bpfoom.Link.from_pinned(pin_dir / "a") as link:
            assert link.info().map_id, seed
        final.signal(signal.SIGTERM)
        assert final.wait() == 0
    finally:
        print(f"\ncrash rounds: {ROUNDS} (seed {seed}; kills in start {points['start']}, in "
              f"reload {points['reload']}; clean start {start_s:.1f} s, reload {reload_s:.1f} s); "
              f"replacements measured: {gaps_ms or 'none'} ms; rounds leaving a unprotected: "
              f"{unprotected or 'none'}")
        write(config, pin_dir, a, b, "0")
        config.write_text(config.read_text().replace('on_exit = "keep"', 'on_exit = "detach"'))
        cleanup = DaemonProcess(config, env)  # adopts whatever is left, and detaches it
        cleanup.wait_event("ready")
        cleanup.signal(signal.SIGTERM)
        cleanup.wait()
    assert unprotected == [], (seed, unprotected)
    assert on(a) == [] and on(b) == [] and link_pins(pin_dir) == []
