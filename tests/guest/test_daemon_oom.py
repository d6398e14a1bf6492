"""`bpfoom run` with an OOM policy in the VM: decisions in the log, reload, restart, stop."""
from __future__ import annotations

import signal
import uuid
from pathlib import Path

import pytest

import bpfoom
from daemon_process import DaemonProcess
from oomtest import memory_events



@pytest.fixture
def daemons():
    started: list[DaemonProcess] = []

    def start(config: Path) -> DaemonProcess:
        started.append(DaemonProcess(config))
        return started[-1]

    yield start
    for daemon in started:
        daemon.stop()


def write_config(path: Path, pin_dir: Path, cgroup: Path, *, min_victim_bytes: int = 0,
                 exclude_page_cache: bool = True) -> Path:
    path.write_text(f"""
[daemon]
pin_dir = "{pin_dir}"
log_format = "json"

[[attach]]
id = "leaf"
policy = "largest_leaf"
cgroup = "{cgroup}"
[attach.tunables]
min_victim_bytes = {min_victim_bytes}
exclude_page_cache = {str(exclude_page_cache).lower()}
""")
    return path


def oom(cgroup, memory_hog):
    """Two leaves under a 48 MiB limit; the 40 MiB one overflows it.  Returns (big hog, small hog)."""
    big, small = cgroup.child(f"big-{uuid.uuid4().hex[:4]}"), cgroup.child(f"small-{uuid.uuid4().hex[:4]}")
    large, little = memory_hog(big, 40), memory_hog(small, 12)
    little.release()
    assert little.wait_allocated()
    large.release()
    big.close()
    small.close()
    return large, little


def test_the_daemon_logs_decisions_reloads_and_detaches(cgroup, memory_hog, daemons, pin_dir, tmp_path):
    cgroup.write("memory.max", str(48 << 20))
    config = write_config(tmp_path / "bpfoom.toml", pin_dir, cgroup.path)
    daemon = daemons(config)
    attached = daemon.wait_event("attached")
    daemon.wait_event("ready")
    assert attached["policy"] == "largest_leaf" and attached["target"] == str(cgroup.path)
    assert [a.policy_name for a in bpfoom.attached() if a.cgroup_id == cgroup.id] == ["largest_leaf"]

    large, little = oom(cgroup, memory_hog)
    assert large.wait_dead() == "SIGKILL" and little.alive
    decision = daemon.wait_event("decision")
    assert decision["action"] == "killed" and large.pid in decision["pids"]
    assert decision["schema"] == 2 and decision["id"] == "leaf"

    # A .data tunable changes in place: a 1 GiB minimum makes the policy decline.
    write_config(config, pin_dir, cgroup.path, min_victim_bytes=1 << 30)
    daemon.signal(signal.SIGHUP)
    assert daemon.wait_event("tunables_set")["set.min_victim_bytes"] == 1 << 30
    daemon.wait_event("reloaded")
    large, little = oom(cgroup, memory_hog)
    declined = daemon.wait_event("decision")
    assert declined["action"] == "declined"
    assert large.wait_dead() == "SIGKILL"  # the kernel's own killer took over

    # A .rodata tunable needs a new object, which the kernel swaps into the same link
    # (BPF_LINK_UPDATE, series 0015): the cgroup is never without its policy.
    [before] = [a for a in bpfoom.attached() if a.cgroup_id == cgroup.id]
    write_config(config, pin_dir, cgroup.path, exclude_page_cache=False)
    daemon.signal(signal.SIGHUP)
    daemon.wait_event("updated")
    daemon.wait_event("reloaded")
    [after] = [a for a in bpfoom.attached() if a.cgroup_id == cgroup.id]
    assert after.link_id == before.link_id and after.map_id != before.map_id
    assert after.pin_path == str(pin_dir / "leaf")

    daemon.signal(signal.SIGTERM)
    daemon.wait_event("detached")
    assert daemon.wait() == 0
    assert not any(a.cgroup_id == cgroup.id for a in bpfoom.attached())
    assert list(pin_dir.iterdir()) == []  # link and events pins both gone
    assert not (pin_dir / "leaf").exists()


def test_a_restart_after_sigkill_readopts_the_policy(cgroup, memory_hog, daemons, pin_dir, tmp_path):
    cgroup.write("memory.max", str(48 << 20))
    config = write_config(tmp_path / "bpfoom.toml", pin_dir, cgroup.path)
    first = daemons(config)
    first.wait_event("ready")
    link_id = next(a.link_id for a in bpfoom.attached() if a.cgroup_id == cgroup.id)
    first.signal(signal.SIGKILL)
    assert first.wait() == -signal.SIGKILL

    large, little = oom(cgroup, memory_hog)  # the pinned policy still decides
    assert large.wait_dead() == "SIGKILL" and little.alive
    assert memory_events(cgroup)["oom_kill"] >= 1

    second = daemons(config)
    adopted = second.wait_event("adopted")
    second.wait_event("ready")
    assert adopted["link"] == link_id and adopted["decisions"] == "logged"
    assert [a.link_id for a in bpfoom.attached() if a.cgroup_id == cgroup.id] == [link_id]
    # The first run's decision (made while no daemon ran) waited in the pinned buffer...
    earlier = second.wait_event("decision")
    assert large.pid in earlier["pids"]
    # ...and the adopted policy's next decisions are logged as they happen.
    large, little = oom(cgroup, memory_hog)
    assert large.wait_dead() == "SIGKILL"
    assert large.pid in second.wait_event("decision")["pids"]
    second.signal(signal.SIGTERM)
    assert second.wait() == 0
    assert not any(a.cgroup_id == cgroup.id for a in bpfoom.attached())
    assert list(pin_dir.iterdir()) == []  # link and events pins both gone


def test_the_daemon_applies_granularity_and_changes_it_on_reload(cgroup, memory_hog, daemons,
                                                                  pin_dir, tmp_path):
    cgroup.write("memory.max", str(64 << 20))
    trio, alloc = cgroup.child("trio"), cgroup.child("alloc")
    config = tmp_path / "bpfoom.toml"

    def configure(choice: str) -> None:
        write_config(config, pin_dir, cgroup.path)
        with config.open("a") as toml:
            toml.write(f'[attach.granularity]\n"trio" = "{choice}"\n')

    def three() -> list:
        hogs = [memory_hog(trio, mib) for mib in (14, 10, 8)]
        for hog in hogs:
            hog.release()
            assert hog.wait_allocated()
        return hogs

    def overflow() -> None:
        """Unkillable 40 MiB on top of the trio's 32 (and the hogs' own): one OOM; then stopped."""
        allocator = memory_hog(alloc, 40, oom_score_adj=-1000)
        allocator.release()
        assert allocator.wait_allocated()
        allocator.stop()

    def kill_decision() -> dict:
        while (decision := daemon.wait_event("decision"))["action"] != "killed":
            pass  # "waiting" for a victim to exit
        return decision

    configure("task")
    daemon = daemons(config)
    daemon.wait_event("ready")
    hogs = three()
    overflow()
    decision = kill_decision()
    assert decision["granularity"] == "task" and decision["pids"] == [hogs[0].pid]
    assert hogs[0].wait_dead() == "SIGKILL" and hogs[1].alive and hogs[2].alive

    configure("cgroup")  # in place, at the next OOM
    daemon.signal(signal.SIGHUP)
    daemon.wait_event("reloaded")
    assert [a.cgroup_id for a in bpfoom.attached()].count(cgroup.id) == 1
    hogs = hogs[1:] + [memory_hog(trio, 14)]
    hogs[-1].release()
    assert hogs[-1].wait_allocated()
    overflow()
    decision = kill_decision()
    assert decision["granularity"] == "cgroup"
    assert sorted(decision["pids"]) == sorted(hog.pid for hog in hogs)
    assert all(hog.wait_dead() == "SIGKILL" for hog in hogs)
    trio.close()
    alloc.close()
