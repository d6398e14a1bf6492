"""examples/kubernetes: the DaemonSet's container command accepts the config its ConfigMap
carries, and the pod gets what the daemon needs (host pids, bpffs, the node's cgroup tree,
the capabilities of the systemd unit and no more)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys


import facts
from conftest import require

EXAMPLE = facts.REPO / "examples" / "kubernetes"
CONFIG_MOUNT = "/etc/bpfoom"


def manifest() -> dict:
    """daemonset.yaml as data: PyYAML here, or the system Python's (python3-yaml)."""
    text = (EXAMPLE / "daemonset.yaml").read_text()
    try:
        import yaml
        return yaml.safe_load(text)
    except ImportError:
        pass
    python = shutil.which("python3", path="/usr/bin:/bin")
    if python is None:
        require(False, "needs PyYAML (pip install pyyaml, or Debian's python3-yaml) to read the manifest")
    done = subprocess.run([python, "-c", "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), "
                           "sys.stdout)"], input=text, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        require(False, f"needs PyYAML to read the manifest ({done.stderr.strip().splitlines()[-1]})")
    return json.loads(done.stdout)


def pod() -> dict:
    return manifest()["spec"]["template"]["spec"]


def container_command(config_dir) -> list[str]:
    """The container's command, its config path pointed at the ConfigMap's source directory."""
    [container] = pod()["containers"]
    assert container["command"][0] == "bpfoom"
    return [arg.replace(CONFIG_MOUNT, str(config_dir)) for arg in container["command"][1:]]


def test_the_container_command_checks_the_configmap_config():
    command = container_command(EXAMPLE)
    assert command[-1] == str(EXAMPLE / "policies.toml")
    done = subprocess.run([sys.executable, "-P", "-m", "bpfoom", *command, "--check"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "2 policies" in done.stdout
    kustomization = (EXAMPLE / "kustomization.yaml").read_text()
    assert "- policies.toml" in kustomization and "- daemonset.yaml" in kustomization


def test_the_pod_gets_host_pids_bpffs_cgroups_and_only_the_needed_capabilities():
    spec = pod()
    assert spec["hostPID"] is True
    [container] = spec["containers"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes[mounts["/sys/fs/bpf"]["name"]]["hostPath"]["path"] == "/sys/fs/bpf"
    assert volumes[mounts["/sys/fs/cgroup"]["name"]]["hostPath"]["path"] == "/sys/fs/cgroup"
    assert volumes[mounts[CONFIG_MOUNT]["name"]]["configMap"]["name"] == "bpfoom-config"
    assert "emptyDir" in volumes[mounts["/run/bpfoom"]["name"]]  # the state `bpfoom status` reads
    assert mounts["/var/log/pods"]["readOnly"] is True  # pod = "ns/name" targets
    assert volumes[mounts["/var/log/pods"]["name"]]["hostPath"]["path"] == "/var/log/pods"
    security = container["securityContext"]
    assert security["privileged"] is False and security["capabilities"]["drop"] == ["ALL"]
    unit = (facts.REPO / "examples" / "systemd" / "bpfoom.service").read_text()
    bounding = next(line for line in unit.splitlines() if line.startswith("CapabilityBoundingSet="))
    assert {f"CAP_{c}" for c in security["capabilities"]["add"]} == set(bounding.split("=")[1].split())
