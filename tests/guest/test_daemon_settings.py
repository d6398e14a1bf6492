"""[attach.cgroup_settings] by path: the daemon fills priority's map from cgroup paths, and the
kernel's OOM goes by it (the low class dies though it is smaller; the protected one survives)."""
from __future__ import annotations

import signal


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
