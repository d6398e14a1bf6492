"""Targets by name resolved on a real cgroup2 tree: patterns, the watcher, kubepods layouts, units.

Trees are built under the cgroup2 mount at /sys/fs/cgroup/unified (no
memory controller needed: resolution only reads directories) and removed
afterwards; processes are moved only into those children.
"""
from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

import bpfoom
from conftest import require

targets = bpfoom.targets


def make(root: Path, *relative: str) -> list[Path]:
    made = []
    for rel in relative:
        (root / rel).mkdir(parents=True, exist_ok=True)
        made.append(root / rel)
    return made


def remove_tree(root: Path) -> None:
    """rmdir bottom-up (cgroup directories hold only control files, which rmdir takes along)."""
    for directory, children, _ in sorted(os.walk(root), key=lambda w: -len(Path(w[0]).parts)):
        Path(directory).rmdir()


@pytest.fixture
def tree(cgroup2_dir):
    yield cgroup2_dir
    for child in cgroup2_dir.iterdir():
        if child.is_dir():
            remove_tree(child)


@pytest.fixture
def sleeper_in():
    """Start `sleep` inside a cgroup of the test tree (cgroup.procs), killed at the end."""
    started: list[subprocess.Popen] = []

    def start(cgroup: Path) -> int:
        process = subprocess.Popen(["sleep", "60"])
        started.append(process)
        (cgroup / "cgroup.procs").write_text(str(process.pid))
        return process.pid

    yield start
    for process in started:
        process.kill()
        process.wait()


def kernel_cgroup_of(pid: int, mount: Path) -> Path:
    """The process's cgroup2 path as /proc/PID/cgroup says it ("0::/..."), under ``mount``."""
    line = next(l for l in Path(f"/proc/{pid}/cgroup").read_text().splitlines() if l.startswith("0::"))
    return mount / line[3:].lstrip("/")


# -- patterns --------------------------------------------------------------------

def test_a_pattern_matches_one_level_and_only_directories(tree):
    make(tree, "workload.slice/a.service", "workload.slice/b.service", "workload.slice/c.scope",
         "workload.slice/x.slice/d.service")
    pattern = targets.CgroupPattern(tree / "workload.slice" / "*.service")
    assert pattern.matches() == [tree / "workload.slice/a.service", tree / "workload.slice/b.service"]
    assert pattern.match(tree / "workload.slice/z.service")
    assert not pattern.match(tree / "workload.slice/x.slice/d.service")  # * stops at /
    two_levels = targets.CgroupPattern(tree / "*.slice" / "*" / "*.service")
    assert two_levels.matches() == [tree / "workload.slice/x.slice/d.service"]


def test_a_pattern_must_be_absolute():
    for bad in ("workload.slice/*.service", "/sys/fs/cgroup/../x"):
        with pytest.raises(bpfoom.InvalidValueError, match="absolute path"):
            targets.CgroupPattern(bad)


def test_the_processes_of_matched_cgroups_are_where_the_kernel_says(tree, sleeper_in):
    a, b = make(tree, "apps/a.service", "apps/b.service")
    pids = [sleeper_in(a), sleeper_in(b)]
    matched = targets.CgroupPattern(tree / "apps" / "*.service").matches()
    mount = targets.cgroup2_root()
    assert [kernel_cgroup_of(pid, mount) for pid in pids] == matched


# -- the watcher -------------------------------------------------------------------

def changes_until(watcher, count: int) -> list[tuple[str, bool]]:
    seen = []
    for _ in range(20):
        seen += [(change.path.name, change.added) for change in watcher.changes(timeout=1)]
        if len(seen) >= count:
            break
    return seen


def test_the_watcher_reports_cgroups_coming_and_going(tree):
    make(tree, "workload.slice/a.service")
    with targets.CgroupWatcher([tree / "workload.slice" / "*.service"]) as watcher:
        assert watcher.current == [tree / "workload.slice/a.service"]
        assert watcher.changes(timeout=0) == []
        make(tree, "workload.slice/b.service", "workload.slice/other.scope")
        assert changes_until(watcher, 1) == [("b.service", True)]
        (tree / "workload.slice/a.service").rmdir()
        assert changes_until(watcher, 1) == [("a.service", False)]
        assert watcher.current == [tree / "workload.slice/b.service"]


def test_the_watcher_sees_a_subtree_made_in_one_go_and_a_base_that_comes_later(tree):
    patterns = [tree / "later.slice" / "*" / "*.service", tree / "pending"]
    with targets.CgroupWatcher(patterns) as watcher:
        assert watcher.current == []
        make(tree, "later.slice/x.slice/web.service")  # parents made after the watcher started
        make(tree, "pending")
        seen = changes_until(watcher, 2)
        assert sorted(seen) == [("pending", True), ("web.service", True)]
        assert {c for c in watcher.current} == {tree / "later.slice/x.slice/web.service", tree / "pending"}
        remove_tree(tree / "later.slice")
        assert changes_until(watcher, 1) == [("web.service", False)]
        make(tree, "later.slice/y.slice/api.service")  # the base again, after it went
        assert changes_until(watcher, 1) == [("api.service", True)]


def test_the_watcher_fileno_is_readable_on_a_change(tree):
    import select

    with targets.CgroupWatcher([tree / "*.service"]) as watcher:
        assert select.select([watcher.fileno()], [], [], 0)[0] == []
        make(tree, "a.service")
        assert select.select([watcher.fileno()], [], [], 5)[0] == [watcher.fileno()]
    with pytest.raises(bpfoom.ClosedError):
        watcher.fileno()


# -- Kubernetes ----------------------------------------------------------------------

POD_G, POD_B, POD_BE = (str(uuid.uuid4()) for _ in range(3))


def cgroupfs_layout(root: Path) -> dict[str, Path]:
    """The kubelet's cgroupfs driver layout: pods with a container each."""
    return dict(zip(("guaranteed", "burstable", "besteffort"), make(
        root, f"kubepods/pod{POD_G}/c1", f"kubepods/burstable/pod{POD_B}/c2",
        f"kubepods/besteffort/pod{POD_BE}/c3")))


def systemd_layout(root: Path) -> dict[str, Path]:
    """The kubelet's systemd driver layout: slices with the UID's dashes as underscores."""
    g, b, be = (uid.replace("-", "_") for uid in (POD_G, POD_B, POD_BE))
    return dict(zip(("guaranteed", "burstable", "besteffort"), make(
        root, f"kubepods.slice/kubepods-pod{g}.slice/cri-containerd-1.scope",
        f"kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{b}.slice/cri-containerd-2.scope",
        f"kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{be}.slice/"
        "cri-containerd-3.scope")))


def matches(patterns) -> list[Path]:
    return sorted(p for pattern in patterns for p in pattern.matches())


@pytest.mark.parametrize("layout", [cgroupfs_layout, systemd_layout])
def test_kubernetes_targets_resolve_in_both_driver_layouts(tree, sleeper_in, layout):
    containers = layout(tree)
    pids = {qos: sleeper_in(container) for qos, container in containers.items()}
    mount = targets.cgroup2_root()
    for qos, uid in zip(("guaranteed", "burstable", "besteffort"), (POD_G, POD_B, POD_BE)):
        pod = containers[qos].parent
        assert matches(targets.kube_patterns(pod_uid=uid, root=tree)) == [pod]
        assert matches(targets.kube_patterns(pod_uid=uid.upper(), root=tree)) == [pod]
        [resolved] = matches(targets.kube_patterns(qos=qos, root=tree))
        # the class's cgroup (or the guaranteed pod's) holds the container's process
        assert kernel_cgroup_of(pids[qos], mount).is_relative_to(resolved)
    assert matches(targets.kube_patterns(qos="besteffort", root=tree))[0].name in (
        "besteffort", "kubepods-besteffort.slice")


def test_a_guaranteed_pod_that_starts_later_is_reported(tree):
    make(tree, "kubepods/burstable")
    with targets.CgroupWatcher(targets.kube_patterns(qos="guaranteed", root=tree)) as watcher:
        assert watcher.current == []
        make(tree, f"kubepods/pod{POD_G}/c1", f"kubepods/burstable/pod{POD_B}")
        assert changes_until(watcher, 1) == [(f"pod{POD_G}", True)]


def test_kubernetes_arguments_are_checked():
    with pytest.raises(bpfoom.InvalidValueError, match="not one of guaranteed, burstable, besteffort"):
        targets.kube_patterns(qos="BestEffortt")
    with pytest.raises(bpfoom.InvalidValueError, match="not a pod UID"):
        targets.kube_patterns(pod_uid="../../etc")
    with pytest.raises(bpfoom.InvalidValueError, match="either"):
        targets.kube_patterns()


def test_pod_names_resolve_through_the_kubelet_log_directories(tmp_path):
    for entry in (f"shop_web-0_{POD_B}", f"shop_web-01_{POD_G}", f"other_web-0_{POD_BE}", "junk"):
        (tmp_path / entry).mkdir()
    assert targets.kube_pod_uids("shop", "web-0", tmp_path) == [POD_B]
    with pytest.raises(bpfoom.NotFoundError, match="give the pod UID"):
        targets.kube_pod_uids("shop", "web-0", tmp_path / "absent")


# -- systemd units -------------------------------------------------------------------

def test_unit_names_are_checked_before_systemd_is_asked():
    for bad in ("nginx", "nginx.socket", ".service", "a b.service", ""):
        with pytest.raises(bpfoom.InvalidValueError, match="not a systemd unit with a cgroup"):
            targets.unit_cgroup(bad)
    assert targets.check_unit_name("user@1000.service") == "user@1000.service"


def test_without_systemd_a_unit_is_refused_naming_pid_1():
    why = targets.systemd_running()
    if why is None:
        require(False, "systemd is PID 1 here; the refusal needs a machine without it")
    init = Path("/proc/1/comm").read_text().strip()
    with pytest.raises(bpfoom.NotSupportedError) as caught:
        targets.unit_cgroup("nginx.service")
    assert "systemd is not running" in str(caught.value) and repr(init) in str(caught.value)


def test_a_running_unit_resolves_to_the_cgroup_its_processes_are_in():
    why = targets.systemd_running()
    if why is not None:
        require(False, f"needs systemd as PID 1 ({why})")
    path = targets.unit_cgroup("init.scope")  # always active under systemd, holds PID 1
    assert kernel_cgroup_of(1, targets.cgroup2_root()) == path
    with pytest.raises(bpfoom.NotFoundError, match="has no cgroup"):
        targets.unit_cgroup(f"bpfoom-absent-{uuid.uuid4().hex[:8]}.service")


def test_a_slice_path_follows_systemds_naming_rule():
    assert targets.slice_path("system.slice") == Path("system.slice")
    assert targets.slice_path("a-b-c.slice") == Path("a.slice/a-b.slice/a-b-c.slice")
    assert targets.slice_path("-.slice") == Path()
    for bad in ("a--b.slice", "a-.slice", "nginx.service"):
        with pytest.raises(bpfoom.InvalidValueError):
            targets.slice_path(bad)
    # a slice's cgroup needs no systemd to be found, running or not
    assert targets.unit_cgroup_when_running("kubepods-besteffort.slice", root="/sys/fs/cgroup") == \
        Path("/sys/fs/cgroup/kubepods.slice/kubepods-besteffort.slice")


def test_where_a_service_will_run_needs_systemd():
    why = targets.systemd_running()
    if why is not None:
        with pytest.raises(bpfoom.NotSupportedError, match="systemd is not running"):
            targets.unit_cgroup_when_running("nginx.service")
        return
    # under systemd: init.scope runs in the root slice, where PID 1 is
    assert targets.unit_cgroup_when_running("init.scope") == targets.unit_cgroup("init.scope")


def test_pod_names_follow_kubernetes_rules():
    assert targets.check_pod_name("shop/web-0") == ("shop", "web-0")
    assert targets.check_pod_name("kube-system/coredns.x") == ("kube-system", "coredns.x")
    for bad in ("web-0", "Shop/web", "shop/", "/web", "shop/web_0"):
        with pytest.raises(bpfoom.InvalidValueError, match="NAMESPACE/NAME"):
            targets.check_pod_name(bad)
