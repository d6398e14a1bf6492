"""A restarted daemon makes the kernel run the configuration it is given: a pinned link that
runs the same configuration is kept as it is; one that runs another gets the new object through
a link update (BPF_LINK_UPDATE, series 0015: same link, no moment without a policy).  Where a
kernel cannot update a bpf_oom_ops link the daemon replaces it and logs the protection gap.

Judged by the kernel: which policy `bpfoom.attached()` lists on the cgroup, and what the policy
decides at a real OOM (a tunable that makes it decline)."""
from __future__ import annotations

import signal
import uuid
from pathlib import Path

import bpfoom
from daemon_process import WAIT_S, DaemonProcess



def write(path: Path, pin_dir: Path, cgroup: Path, policy: str, min_victim_bytes: str) -> Path:
    tunable = f'min_victim_bytes = "{min_victim_bytes}"' if policy == "largest_leaf" else ""
    path.write_text(f"""
[daemon]
pin_dir = "{pin_dir}"
on_exit = "keep"
log_format = "json"

[[attach]]
id = "leaf"
policy = "{policy}"
cgroup = "{cgroup}"
[attach.tunables]
{tunable}
""")
    return path


def run_once(config: Path, env: dict[str, str], cgroup_id: int) -> tuple[list[dict], int]:
    """Start a daemon, wait until ready, stop it (on_exit = keep): its log records, the link id."""
    daemon = DaemonProcess(config, env)
    try:
        daemon.wait_event("ready")
        [link] = [a.link_id for a in bpfoom.attached() if a.cgroup_id == cgroup_id]
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
    finally:
        daemon.stop()
    return [r for r in daemon.seen if isinstance(r, dict)], link


def test_a_restart_with_a_changed_config_runs_the_new_policy_and_tunables(
        cgroup, memory_hog, pin_dir, tmp_path):
    env = {"BPFOOM_STATE_DIR": str(tmp_path / "state")}
    config = tmp_path / "bpfoom.toml"
    cgroup.write("memory.max", str(48 << 20))

    _, first = run_once(write(config, pin_dir, cgroup.path, "largest_leaf", "0"), env, cgroup.id)
    records, same = run_once(config, env, cgroup.id)  # unchanged: the running link is kept
    assert same == first
    [adopted] = [r for r in records if r["event"] == "adopted"]
    assert adopted["how"].startswith("kept")
    assert not [r for r in records if r["event"] == "replaced"]

    # A tunable that makes largest_leaf decline every victim smaller than 1 GiB.
    write(config, pin_dir, cgroup.path, "largest_leaf", "1G")
    daemon = DaemonProcess(config, env)
    try:
        changed = daemon.wait_event_any(["replaced", "adopted"], WAIT_S)
        assert (changed["event"], changed["how"]) == ("adopted", "updated"), changed
        daemon.wait_event("ready")
        [running] = [a for a in bpfoom.attached() if a.cgroup_id == cgroup.id]
        assert running.policy_name == "largest_leaf" and running.link_id == first  # same link
        child = cgroup.child(f"big-{uuid.uuid4().hex[:4]}")
        hog = memory_hog(child, 64)
        child.close()
        hog.release()
        assert hog.wait_dead() == "SIGKILL"  # the kernel's killer, after the decline
        decision = daemon.wait_event("decision")
        assert (decision["action"], decision["reason"]) == ("declined", "below_minimum")
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
    finally:
        daemon.stop()

    # Another policy altogether: the kernel lists it on the cgroup.
    records, _ = run_once(write(config, pin_dir, cgroup.path, "observe", "0"), env, cgroup.id)
    assert [a.policy_name for a in bpfoom.attached() if a.cgroup_id == cgroup.id] == ["observe"]
    assert [r for r in records if r["event"] in ("replaced", "adopted")]
