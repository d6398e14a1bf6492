"""[attach.cgroup_settings] by path: the daemon fills priority's map from cgroup paths, and the
kernel's OOM goes by it (the low class dies though it is smaller; the protected one survives)."""
from __future__ import annotations

import signal

import pytest


from daemon_process import DaemonProcess
from policytest import first_kill, holders, overrun



def test_priority_classes_given_by_path_decide_the_oom(cgroups, hogs, kernel_log, pin_dir,
                                                       tmp_path):
    top = cgroups("classes", memory_max="48M")
    leaves = {name: cgroups(f"classes/{name}") for name in ("precious", "cheap", "alloc")}
    config = tmp_path / "bpfoom.toml"
    config.write_text(f"""
[daemon]
pin_dir = "{pin_dir}"
log_format = "json"

[[attach]]
id = "classes"
policy = "priority"
cgroup = "{top.path}"
[attach.cgroup_settings]
"precious" = {{ priority = 100, protected = true }}
"cheap" = {{ priority = -10 }}
"alloc" = {{ priority = 100 }}
""")
    daemon = DaemonProcess(config, {"BPFOOM_STATE_DIR": str(tmp_path / "state")})
    try:
        daemon.wait_event("ready")
        started = holders(hogs, leaves, {"precious": 20, "cheap": 8})
        overrun(hogs, leaves["alloc"], 24)  # 52 > 48; the cheap leaf's 8 MiB end it
        pid, reason = first_kill(kernel_log)
        assert pid == started["cheap"].pid and "priority" in reason
        assert started["precious"].alive
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
    finally:
        daemon.stop()


@pytest.mark.parametrize("share, action", [("25%", "killed"), ("75%", "declined")])
def test_a_percentage_is_of_the_targets_memory_max(cgroups, hogs, pin_dir, tmp_path, share,
                                                   action):
    """min_victim_bytes = "25%" of the target's 64 MiB is 16 MiB: the 32 MiB leaf at its own
    limit is big enough to kill; "75%" (48 MiB) makes largest_leaf decline it."""
    top = cgroups("share", memory_max="64M")
    leaf = cgroups("share/job", memory_max="32M")
    config = tmp_path / "bpfoom.toml"
    config.write_text(f"""
[daemon]
pin_dir = "{pin_dir}"
log_format = "json"

[[attach]]
id = "share"
policy = "largest_leaf"
cgroup = "{top.path}"
[attach.tunables]
min_victim_bytes = "{share}"
""")
    daemon = DaemonProcess(config, {"BPFOOM_STATE_DIR": str(tmp_path / "state")})
    try:
        resolved = daemon.wait_event("tunable_resolved")
        assert (resolved["tunable"], resolved["value"]) == ("min_victim_bytes", share)
        assert resolved["bytes"] == (64 << 20) * int(share[:-1]) // 100
        assert resolved["of"] == f"memory.max of {top.path}"
        daemon.wait_event("ready")
        hog = hogs(leaf, 48)
        assert hog.wait_dead() == "SIGKILL"  # the policy's kill, or the kernel's after a decline
        decision = daemon.wait_event("decision")
        assert decision["action"] == action, decision
        if action == "declined":
            assert decision["reason"] == "below_minimum"
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
    finally:
        daemon.stop()
