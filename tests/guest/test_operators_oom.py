"""Operators' pieces around real OOMs in the VM.

* The Kubernetes example: the DaemonSet's container command, with exactly the
  capabilities its manifest grants (setpriv bounding set), on the kubelet's
  systemd-driver kubepods tree built here with the example's own config; a
  BestEffort pod's OOM is decided by the policy the config put on the QoS
  class, which bpfoom.targets resolves to the same cgroup.
* Metrics and journal entries made from the real events of an OOM.
"""
from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import bpfoom
from bpfoom import daemon
from daemon_process import DaemonProcess
from oomtest import CGROUP_ROOT, kill_and_remove, sigkilled
from policytest import holders, overrun
from prometheus_text import parse

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "kubernetes"
CAPS = ("bpf", "perfmon", "sys_admin")  # the manifest's capabilities.add, lower-cased


def manifest_caps() -> set[str]:
    text = (EXAMPLE / "daemonset.yaml").read_text()
    return {c.lower() for c in json.loads(re.search(r"add: (\[.*\])", text)[1])}


def container(pod: Path, name: str) -> bpfoom.Cgroup:
    """A container's cgroup as containerd makes it in `pod`, without swap."""
    scope = pod / f"cri-containerd-{name}.scope"
    scope.mkdir()
    if (scope / "memory.swap.max").exists():
        (scope / "memory.swap.max").write_text("0")
    return bpfoom.Cgroup.open(scope)


def sigterm_keeping(process: DaemonProcess) -> None:
    """SIGTERM the daemon under the example's on_exit = "keep": it says so and exits 0."""
    process.signal(signal.SIGTERM)
    process.wait_event("kept")
    assert process.wait() == 0


@pytest.fixture
def kubepods():
    """The systemd driver's kubepods tree at the guest's cgroup root, memcg on every level."""
    root = CGROUP_ROOT / "kubepods.slice"
    uid = str(uuid.uuid4())
    pod = root / "kubepods-besteffort.slice" / f"kubepods-besteffort-pod{uid.replace('-', '_')}.slice"
    chain = [root, root / "kubepods-besteffort.slice", pod]
    for directory in chain:
        directory.mkdir()
        (directory.parent / "cgroup.subtree_control").write_text("+memory")
    (pod / "cgroup.subtree_control").write_text("+memory")
    (pod / "memory.max").write_text(str(48 << 20))
    containers = []
    for name in ("holder", "alloc"):
        containers.append(container(pod, name))
    yield uid, pod, containers
    for cg in containers:
        cg.close()
    kill_and_remove(root)


@pytest.fixture
def example_pins():
    """The example's pin_dir; on_exit = "keep" leaves its links there: detach them afterwards."""
    pin_dir = Path("/sys/fs/bpf/bpfoom/daemon")
    assert not pin_dir.exists() or not any(pin_dir.iterdir()), f"{pin_dir} is in use"
    yield pin_dir
    for pin in sorted(pin_dir.glob("*")) if pin_dir.exists() else ():
        if not pin.name.endswith(("_events", "_events_dropped")):  # those two are maps
            with bpfoom.Link.from_pinned(pin) as link:
                link.detach()
        pin.unlink()


def test_the_daemonset_command_decides_a_besteffort_pod_oom(kubepods, example_pins, hogs,
                                                            kernel_log):
    uid, pod, (holder_cg, alloc_cg) = kubepods
    assert manifest_caps() == set(CAPS)
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("needs setpriv (util-linux) to run the daemon with only the manifest's capabilities")
    caps = ",".join(f"+{c}" for c in CAPS)
    limited = (setpriv, f"--bounding-set=-all,{caps}")  # root's exec gets no capability beyond it
    process = DaemonProcess(EXAMPLE / "policies.toml", prefix=limited)
    try:
        records = [process.wait_event("attached") for _ in range(2)]
        links = {record["id"]: record["link"] for record in records}
        assert set(links) == {"besteffort", "node"} and process.wait_event("ready")["attached"] == 2
        assert not [r for r in process.seen if isinstance(r, dict) and r.get("event") == "kills_not_watched"]
        bounding = next(line for line in Path(f"/proc/{process.proc.pid}/status").read_text().splitlines()
                        if line.startswith("CapBnd:"))
        assert int(bounding.split()[1], 16) == sum(1 << n for n in (21, 38, 39))  # SYS_ADMIN, PERFMON, BPF

        [qos_cgroup] = [p for pattern in bpfoom.targets.kube_patterns(qos="besteffort")
                        for p in pattern.matches()]
        by_link = {a.link_id: a for a in bpfoom.attached()}
        assert Path(by_link[links["besteffort"]].cgroup_path) == qos_cgroup  # config path = resolver's
        assert by_link[links["node"]].cgroup_id == 0

        holder = holders(hogs, {"holder": holder_cg}, {"holder": 24})["holder"]
        overrun(hogs, alloc_cg, 32)
        assert sigkilled(holder.wait_dead())
        # the kill watcher's record may come before or after the policy's decision
        logged = process.wait_events("decision", "kill")
        decision, kill = logged["decision"], logged["kill"]
        assert (decision["id"], decision["action"], decision["pids"]) == (
            "besteffort", "killed", [holder.pid])
        assert (kill["policy"], kill["pid"]) == ("largest_leaf", holder.pid)
    except BaseException:
        process.stop()
        raise
    sigterm_keeping(process)
    assert {p.name for p in example_pins.iterdir()} >= {"besteffort", "node"}  # on_exit = "keep"


def test_the_daemon_needs_sys_admin_bpf_and_perfmon(cgroups, tmp_path):
    """Why the manifest grants what it does: measured, not assumed.  The kernel refuses every
    bpf_oom_ops attach without CAP_SYS_ADMIN (a policy is not a sandbox: README, "What the
    kernel guarantees"), so a daemon without it fails at start, attaching nothing; CAP_BPF and
    CAP_PERFMON load what it attaches; the link list (`bpfoom status`) needs CAP_SYS_ADMIN."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("needs setpriv (util-linux) to limit capabilities")
    target = cgroups("app")
    pin_dir = Path("/sys/fs/bpf") / f"bpfoom-caps-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "caps.toml"
    config.write_text(f'[daemon]\npin_dir = "{pin_dir}"\nlog_format = "json"\n'
                      f'[[attach]]\nid = "app"\npolicy = "largest_leaf"\ncgroup = "{target.path}"\n')
    try:
        for kept in ("+bpf,+perfmon", "+bpf", "+perfmon"):  # each without CAP_SYS_ADMIN
            failed = DaemonProcess(config, prefix=(setpriv, f"--bounding-set=-all,{kept}"))
            failed.wait_event("start_failed")
            assert failed.wait() == 1, kept
            assert target.id not in {a.cgroup_id for a in bpfoom.attached()}, kept
        done = subprocess.run([setpriv, "--bounding-set=-all,+bpf,+perfmon", sys.executable, "-P",
                               "-m", "bpfoom", "status"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 1 and "EPERM" in done.stderr  # the link list needs CAP_SYS_ADMIN
    finally:
        shutil.rmtree(pin_dir, ignore_errors=True)


def test_metrics_and_journal_entries_of_a_real_oom(cgroups, hogs, tmp_path):
    parent = cgroups("parent", memory_max="48M")
    work, alloc = cgroups("parent/work"), cgroups("parent/alloc")
    events = []
    with bpfoom.OomPolicy.load("largest_leaf") as policy, bpfoom.KillWatcher() as watcher:
        policy.attach(cgroup=parent)
        policy.on_event(events.append)
        watcher.on_event(events.append)
        holder = holders(hogs, {"holder": work}, {"holder": 24})["holder"]
        overrun(hogs, alloc, 32)
        assert sigkilled(holder.wait_dead())
        for _ in range(100):
            policy.poll(0.1)
            watcher.poll(0.1)
            if any(getattr(e, "kind", "") == "kill" for e in events) and \
                    any(getattr(e, "action", "") == "killed" for e in events):
                break
        metrics = daemon.Metrics()
        for event in events:
            metrics.observe(event)
        metrics.set_attached(bpfoom.attached())
        metrics.write(tmp_path / "bpfoom.prom")
        parsed = parse((tmp_path / "bpfoom.prom").read_text())
        kills = parsed["bpfoom_kills_total"]["samples"]
        assert kills[(("policy", "largest_leaf"), ("constraint", "memcg"))] >= 1
        decided = parsed["bpfoom_decisions_total"]["samples"]
        assert decided[(("policy", "largest_leaf"), ("action", "killed"), ("reason", "largest_leaf"))] >= 1
        attached = parsed["bpfoom_attached_policies"]["samples"]
        assert attached[(("policy", "largest_leaf"), ("kind", "oom"), ("target", str(parent.path)))] == 1

    kill = next(e for e in events if getattr(e, "kind", "") == "kill" and e.pid == holder.pid)
    path = str(tmp_path / "journal.socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        server.settimeout(5)
        with daemon.Journal(path) as journal:
            assert journal.event(kill)
        data = server.recv(1 << 16)
    fields = dict(line.split(b"=", 1) for line in data.rstrip(b"\n").split(b"\n"))
    assert fields[b"MESSAGE_ID"] == daemon.journal.KILL_MESSAGE_ID.encode()
    assert (fields[b"BPFOOM_PID"], fields[b"BPFOOM_POLICY"]) == (str(holder.pid).encode(), b"largest_leaf")
    assert fields[b"BPFOOM_VICTIM_CGROUP_ID"] == str(work.id).encode()


@pytest.fixture
def qos_pods():
    """One pod per QoS class in the systemd driver's layout, kubepods.slice limited as the
    kubelet limits it to the node's allocatable memory: (container cgroups by class, alloc)."""
    root = CGROUP_ROOT / "kubepods.slice"
    uid = uuid.uuid4().hex
    pods = {"guaranteed": root / f"kubepods-pod{uid}.slice",
            "burstable": root / "kubepods-burstable.slice" / f"kubepods-burstable-pod{uid}.slice",
            "besteffort": root / "kubepods-besteffort.slice" / f"kubepods-besteffort-pod{uid}.slice"}
    root.mkdir()
    (CGROUP_ROOT / "cgroup.subtree_control").write_text("+memory")
    (root / "memory.max").write_text(str(160 << 20))
    containers: dict[str, bpfoom.Cgroup] = {}
    for qos, pod in pods.items():
        for directory in (pod.parent, pod):
            directory.mkdir(exist_ok=True)
            (directory.parent / "cgroup.subtree_control").write_text("+memory")
        (pod / "cgroup.subtree_control").write_text("+memory")
        containers[qos] = container(pod, "holder")
    containers["alloc"] = container(pods["guaranteed"], "alloc")
    yield containers
    for cg in containers.values():
        cg.close()
    kill_and_remove(root)


def test_the_shipped_node_policy_kills_by_qos_class_not_by_size(qos_pods, example_pins, hogs):
    """An OOM of kubepods.slice (the node's allocatable memory) under the Kubernetes example's
    config: the BestEffort pod dies first although it is the smallest, the Guaranteed pod
    that ran the node out of memory keeps its large container."""
    process = DaemonProcess(EXAMPLE / "policies.toml")
    try:
        assert process.wait_event("ready")["attached"] == 2
        held = holders(hogs, qos_pods, {"guaranteed": 64, "burstable": 40, "besteffort": 24})
        alloc = overrun(hogs, qos_pods["alloc"], 36)  # 164 MiB asked of 160
        assert sigkilled(held["besteffort"].wait_dead())
        decision = process.wait_event("decision")
        assert (decision["id"], decision["action"], decision["reason"], decision["pids"]) == (
            "node", "killed", "priority_class", [held["besteffort"].pid])
        assert alloc.wait_for("allocated")  # whatever else it took, never the Guaranteed pod
        assert held["guaranteed"].alive
    except BaseException:
        process.stop()
        raise
    sigterm_keeping(process)
