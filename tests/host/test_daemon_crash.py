"""Crash safety: SIGKILL the daemon at random points of its start and of a reload; the next start
re-adopts and ends with exactly the configured attachments and no stray pins.

On the running kernel with two tcp_congestion_ops entries (the kernel's list of congestion
controls and the pins in bpffs are what is judged); the configuration alternates between one and
two entries, so a kill can land in an attach, an adoption, an orphan removal or a reload."""
from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import pytest

import bpfoom
import facts
from daemon_process import DaemonProcess

pytestmark = pytest.mark.usefixtures("tcp_struct_ops")

ROUNDS = 12


def write(path: Path, pin_dir: Path, names: list[str], increments: int) -> None:
    text = f'[daemon]\npin_dir = "{pin_dir}"\nlog_format = "json"\non_exit = "keep"\n'
    for index, name in enumerate(names):
        text += (f'\n[[attach]]\nid = "cc{index}"\npolicy = "{facts.TCP_CC_OBJECT}"\n'
                 f'map = "bpfoom_demo{"2" if index else ""}"\nname = "{name}"\n[attach.tunables]\n'
                 f'cwnd_increments_per_rtt = {increments}\n')
    path.write_text(text)


def test_sigkill_anywhere_then_a_start_converges(tmp_path, bpffs_dir):
    names = [facts.unique_cc_name(), facts.unique_cc_name()]
    config = tmp_path / "bpfoom.toml"
    env = {"BPFOOM_STATE_DIR": str(tmp_path / "state")}
    seed = random.randrange(1 << 30)
    chooser = random.Random(seed)
    try:
        for round_ in range(ROUNDS):
            wanted = names[: 1 + round_ % 2]
            write(config, bpffs_dir, wanted, 1 + round_ % 3)
            daemon = DaemonProcess(config, env)
            if chooser.random() < 0.5:  # during the start
                time.sleep(chooser.uniform(0.0, 1.0))
            else:  # during a reload
                daemon.wait_event("ready")
                write(config, bpffs_dir, names[: 2 - round_ % 2], 2)
                daemon.signal(signal.SIGHUP)
                time.sleep(chooser.uniform(0.0, 0.3))
            daemon.signal(signal.SIGKILL)
            daemon.wait()

        write(config, bpffs_dir, names[:1], 1)
        final = DaemonProcess(config, env)
        final.wait_event("ready")
        available = facts.available_congestion_control()
        assert (available.count(names[0]), available.count(names[1])) == (1, 0), seed
        links = sorted(p.name for p in bpffs_dir.iterdir() if not p.name.endswith(("_events",
                                                                                  "_dropped")))
        assert links == ["cc0"], (seed, links)
        with bpfoom.Link.from_pinned(bpffs_dir / "cc0") as link:
            assert link.info().map_id, seed
        final.signal(signal.SIGTERM)
        assert final.wait() == 0
    finally:
        write(config, bpffs_dir, names, 1)
        config.write_text(config.read_text().replace('on_exit = "keep"', 'on_exit = "detach"'))
        cleanup = DaemonProcess(config, env)  # adopts whatever is left, and detaches it
        cleanup.wait_event("ready")
        cleanup.signal(signal.SIGTERM)
        cleanup.wait()
    assert [n for n in names if n in facts.available_congestion_control()] == []
    assert list(bpffs_dir.iterdir()) == []
