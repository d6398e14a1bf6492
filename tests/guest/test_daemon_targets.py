"""`bpfoom run` with targets that come and go, on our kernel: real cgroups, real links, real OOMs.

* A configured cgroup that does not exist at start is pending (the
  system-wide policy attaches all the same); created later, it gets its
  policy (the kernel's link list shows it on that cgroup id), which then
  decides an OOM there; removed, its link and pin go.
* A pattern attaches one link per matching cgroup as they appear.
* Kubernetes targets on a kubelet cgroupfs-driver tree built here: a QoS
  class and one pod by UID.
* A reload that fails after a bpf_oom_ops link took a new object puts the
  previous object back and leaves the pin on that attached link, which goes
  on deciding.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import bpfoom
from bpfoom.testing import remove_cgroup_tree
from daemon_process import DaemonProcess
from oomtest import sigkilled, wait_until
from policytest import holders, overrun



@pytest.fixture
def daemons(tmp_path):
    started: list[DaemonProcess] = []
    env = {"BPFOOM_STATE_DIR": str(tmp_path / "state")}

    def start(config: Path) -> DaemonProcess:
        started.append(DaemonProcess(config, env))
        return started[-1]

    start.env = env
    yield start
    for daemon in started:
        daemon.stop()


def config_with(path: Path, pin_dir: Path, entries: str) -> Path:
    """A config: `observe` system-wide (it declines: the kernel decides) plus ``entries``."""
    path.write_text(f"""
[daemon]
pin_dir = "{pin_dir}"
log_format = "json"

[[attach]]
id = "fallback"
policy = "observe"
{entries}""")
    return path


def links_on(cgroup_id: int) -> list[bpfoom.Attachment]:
    return [a for a in bpfoom.attached() if a.cgroup_id == cgroup_id]


def status_json(env: dict[str, str], *args: str) -> dict:
    done = subprocess.run([sys.executable, "-P", "-m", "bpfoom", "status", "--json", *args],
                          capture_output=True, text=True, timeout=120, env={**os.environ, **env})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def decide_an_oom(hogs, cgroups, under: str) -> tuple[int, dict]:
    """A 48 MiB cgroup ``under`` with a 24 MiB holder and a 32 MiB unkillable allocator: the
    holder dies.  Returns the holder's pid."""
    holder_cg, alloc_cg = cgroups(f"{under}/holder"), cgroups(f"{under}/alloc")
    holder = holders(hogs, {"holder": holder_cg}, {"holder": 24})["holder"]
    overrun(hogs, alloc_cg, 32)
    assert sigkilled(holder.wait_dead())
    return holder.pid


def killed(daemon: DaemonProcess) -> dict:
    while (decision := daemon.wait_event("decision"))["action"] != "killed":
        pass  # "waiting" for a victim to exit, or the fallback observing
    return decision


def test_a_cgroup_made_after_start_gets_its_policy_decides_and_loses_it_when_removed(
        cgroups, hogs, daemons, pin_dir, tmp_path):
    parent = cgroups("later")
    batch = parent.path / "batch"
    config = config_with(tmp_path / "bpfoom.toml", pin_dir, f"""
[[attach]]
id = "batch"
policy = "largest_leaf"
cgroup = "{batch}"
""")
    daemon = daemons(config)
    pending = daemon.wait_event("pending")
    assert (pending["id"], pending["target"]) == ("batch", str(batch))
    assert daemon.wait_event("ready")["pending"] == 1
    assert [a.policy_name for a in bpfoom.attached() if a.cgroup_id == 0] == ["observe"]
    [state] = [d for d in status_json(daemons.env)["daemons"] if d["pid"] == daemon.proc.pid]
    assert [p["entry"] for p in state["pending"]] == ["batch"]

    cg = cgroups("later/batch", memory_max="48M")
    attached = daemon.wait_event("attached")
    assert (attached["id"], attached["target"]) == ("batch", str(batch))
    [link] = links_on(cg.id)
    assert link.policy_name == "largest_leaf" and link.pin_path == str(pin_dir / "batch")
    chain = status_json(daemons.env, str(batch))["chain"]
    assert [(c["policy"], c["cgroup"]) for c in chain] == [
        ("largest_leaf", str(batch)), ("observe", None), ("default", None)]

    pid = decide_an_oom(hogs, cgroups, "later/batch")
    decision = killed(daemon)
    assert (decision["id"], decision["pids"]) == ("batch", [pid])

    remove_cgroup_tree(batch)
    gone = daemon.wait_event("detached")
    assert (gone["id"], gone["why"]) == ("batch", "its cgroup is gone")
    assert daemon.wait_event("pending")["id"] == "batch"
    assert not (pin_dir / "batch").exists() and not (pin_dir / "batch_events").exists()
    assert link.link_id not in {a.link_id for a in bpfoom.attached()}
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    assert list(pin_dir.iterdir()) == []


def test_a_pattern_gets_one_link_per_matching_cgroup(cgroups, hogs, daemons, pin_dir, tmp_path):
    root = cgroups("svc").path
    config = config_with(tmp_path / "bpfoom.toml", pin_dir, f"""
[[attach]]
id = "svc"
policy = "largest_leaf"
cgroup = "{root}/*.service"
""")
    daemon = daemons(config)
    daemon.wait_event("ready")
    made = {name: cgroups(f"svc/{name}", memory_max="48M") for name in ("a.service", "b.service")}
    other = cgroups("svc/c.scope")
    records = {daemon.wait_event("attached")["target"]: None for _ in range(2)}
    assert set(records) == {str(root / "a.service"), str(root / "b.service")}
    for cg in made.values():
        [link] = links_on(cg.id)
        assert link.policy_name == "largest_leaf" and Path(link.pin_path).name.startswith("svc+")
    assert links_on(other.id) == []

    pid = decide_an_oom(hogs, cgroups, "svc/a.service")
    decision = killed(daemon)
    assert decision["id"].startswith("svc+a_service-") and decision["pids"] == [pid]

    remove_cgroup_tree(root / "b.service")
    gone = daemon.wait_event("detached")
    assert gone["id"].startswith("svc+b_service-")
    assert len(links_on(made["a.service"].id)) == 1
    wait_until(lambda: len(list(pin_dir.glob("svc+*_events"))) == 1, what="b's pins removed")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0


def test_kubernetes_targets_on_a_cgroupfs_driver_tree(cgroups, hogs, daemons, pin_dir, tmp_path):
    """kubelet's cgroupfs layout under a root of this test's own (its --cgroup-root)."""
    root = cgroups("k8s").path
    best_uid, burst_uid = str(uuid.uuid4()), str(uuid.uuid4())
    config = config_with(tmp_path / "bpfoom.toml", pin_dir, f"""
[[attach]]
id = "besteffort"
policy = "largest_leaf"
kubernetes = {{ qos = "besteffort", root = "{root}" }}

[[attach]]
id = "one_pod"
policy = "largest_task"
kubernetes = {{ pod_uid = "{burst_uid}", root = "{root}" }}
""")
    daemon = daemons(config)
    waiting = {daemon.wait_event("pending")["id"] for _ in range(2)}
    assert waiting == {"besteffort", "one_pod"}
    daemon.wait_event("ready")

    best_pod = cgroups(f"k8s/kubepods/besteffort/pod{best_uid}", memory_max="48M")
    burst_pod = cgroups(f"k8s/kubepods/burstable/pod{burst_uid}")
    besteffort = bpfoom.Cgroup.open(root / "kubepods" / "besteffort")
    try:
        attached = {daemon.wait_event("attached")["target"] for _ in range(2)}
        assert attached == {str(besteffort.path), str(burst_pod.path)}
        assert [a.policy_name for a in links_on(besteffort.id)] == ["largest_leaf"]
        assert [a.policy_name for a in links_on(burst_pod.id)] == ["largest_task"]
        assert links_on(best_pod.id) == []  # the class's cgroup covers its pods
        pid = decide_an_oom(hogs, cgroups, f"k8s/kubepods/besteffort/pod{best_uid}")
        decision = killed(daemon)
        assert decision["id"].startswith("besteffort+besteffort-") and decision["pids"] == [pid]
    finally:
        besteffort.close()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    assert list(pin_dir.iterdir()) == []


def test_a_failed_reload_after_a_replace_leaves_the_pin_on_an_attached_link(
        cgroups, hogs, daemons, pin_dir, tmp_path):
    cg = cgroups("work", memory_max="48M")
    not_a_cgroup = tmp_path / "not_a_cgroup"
    not_a_cgroup.mkdir()
    entry = f"""
[[attach]]
id = "work"
policy = "largest_leaf"
cgroup = "{cg.path}"
[attach.tunables]
exclude_page_cache = {{}}
"""
    config = config_with(tmp_path / "bpfoom.toml", pin_dir, entry.format("true"))
    daemon = daemons(config)
    daemon.wait_event("ready")
    [before] = links_on(cg.id)

    # exclude_page_cache lives in .rodata: a new object goes into the link; then the added
    # entry cannot attach (its "cgroup" is a plain directory) and everything is undone.
    config_with(config, pin_dir, entry.format("false") + f"""
[[attach]]
id = "broken"
policy = "largest_task"
cgroup = "{not_a_cgroup}"
""")
    daemon.signal(signal.SIGHUP)
    failed = daemon.wait_event("reload_failed")
    assert "cgroup v2" in failed["error"]
    [after] = links_on(cg.id)
    assert after.pin_path == str(pin_dir / "work")
    with bpfoom.Link.from_pinned(pin_dir / "work") as pinned:
        info = pinned.info()
    assert info.id == after.link_id and info.map_id == after.map_id != 0
    assert not (pin_dir / "broken").exists()
    # the previous object (same struct_ops map) runs there again
    assert after.map_id == before.map_id

    pid = decide_an_oom(hogs, cgroups, "work")  # the restored link decides, and is read
    decision = killed(daemon)
    assert (decision["id"], decision["pids"]) == ("work", [pid])
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    assert links_on(cg.id) == []


def test_a_kept_pin_whose_cgroup_went_while_no_daemon_ran_is_pending_not_stale(
        cgroups, daemons, pin_dir, tmp_path):
    """on_exit = "keep" leaves the link pinned; its cgroup goes before the next start (a unit
    stopped across a restart or a DaemonSet rollout).  The next daemon reports the entry
    pending, drops the pin on the link the kernel detached, and is ready; the cgroup's return
    gets the policy again."""
    parent = cgroups("kept")
    work = parent.path / "work"
    cg = cgroups("kept/work")
    config = config_with(tmp_path / "bpfoom.toml", pin_dir, f"""
[[attach]]
id = "work"
policy = "largest_leaf"
cgroup = "{work}"
""").read_text().replace('log_format = "json"', 'log_format = "json"\non_exit = "keep"')
    (tmp_path / "bpfoom.toml").write_text(config)
    first = daemons(tmp_path / "bpfoom.toml")
    first.wait_event("ready")
    first.signal(signal.SIGTERM)
    assert first.wait() == 0
    pin = pin_dir / "work"
    with bpfoom.Link.from_pinned(pin) as link:
        assert link.info().map_id and link.info().cgroup_id == cg.id

    remove_cgroup_tree(work)  # offline is asynchronous: the kernel detaches the link soon after

    def detached() -> bool:
        with bpfoom.Link.from_pinned(pin) as link:
            return not link.info().map_id
    wait_until(detached, what="the kernel to detach the link of the removed cgroup")

    second = daemons(tmp_path / "bpfoom.toml")
    assert second.wait_event("ready")["pending"] == 1
    status = status_json(daemons.env, "--probe", "ready")  # exit 0: pending is ready
    [state] = [d for d in status["daemons"] if d["pid"] == second.proc.pid]
    assert [p["entry"] for p in state["pending"]] == ["work"]
    assert [e["id"] for e in state["entries"]] == ["fallback"]  # no pin on a detached link
    assert status["probe"] == {"ready": True, "why": None}
    [stale] = [r for r in second.seen if isinstance(r, dict) and r.get("event") == "stale_pin"]
    assert (stale["id"], stale["pin"]) == ("work", str(pin))
    assert not pin.exists() and not (pin_dir / "work_events").exists()

    back = cgroups("kept/work")
    assert second.wait_event("attached")["id"] == "work"
    [now] = links_on(back.id)
    assert now.policy_name == "largest_leaf" and now.pin_path == str(pin)
    status = status_json(daemons.env, "--probe", "ready")
    [state] = [d for d in status["daemons"] if d["pid"] == second.proc.pid]
    assert state["pending"] == [] and [e["id"] for e in state["entries"]] == ["fallback", "work"]
    second.signal(signal.SIGTERM)
    assert second.wait() == 0
