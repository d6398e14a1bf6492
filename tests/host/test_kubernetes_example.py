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
    # the state `bpfoom status` reads, and what each kept link runs: outlives the pod
    assert volumes[mounts["/run/bpfoom"]["name"]]["hostPath"]["path"] == "/run/bpfoom"
    assert mounts["/var/log/pods"]["readOnly"] is True  # pod = "ns/name" targets
    assert volumes[mounts["/var/log/pods"]["name"]]["hostPath"]["path"] == "/var/log/pods"
    security = container["securityContext"]
    assert security["privileged"] is False and security["capabilities"]["drop"] == ["ALL"]
    unit = (facts.REPO / "examples" / "systemd" / "bpfoom.service").read_text()
    bounding = next(line for line in unit.splitlines() if line.startswith("CapabilityBoundingSet="))
    assert {f"CAP_{c}" for c in security["capabilities"]["add"]} == set(bounding.split("=")[1].split())


def test_the_daemonset_lands_only_on_nodes_with_the_kernel_and_is_probed():
    spec = pod()
    assert spec["nodeSelector"] == {"feature.node.kubernetes.io/bpfoom.bpf_oom_ops": "true"}
    assert spec["automountServiceAccountToken"] is False
    [container] = spec["containers"]
    for probe in ("readinessProbe", "livenessProbe"):
        command = container[probe]["exec"]["command"]
        assert command[:3] == ["bpfoom", "status", "--json"], command
    assert container["livenessProbe"]["exec"]["command"][3:] == ["--probe", "live"]
    assert container["readinessProbe"]["exec"]["command"][3:] == ["--probe", "ready"]
    annotations = manifest()["spec"]["template"]["metadata"]["annotations"]
    [port] = container["ports"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port["containerPort"])
    assert annotations["prometheus.io/path"] == "/metrics"
    listen = [arg for arg in container["command"] if arg.startswith("--metrics-listen=")]
    assert listen == [f"--metrics-listen=0.0.0.0:{port['containerPort']}"]


def test_the_image_the_daemonset_names_is_the_one_the_build_script_makes():
    [container] = pod()["containers"]
    script = (facts.REPO / "examples" / "container" / "build-image").read_text()
    assert f'IMAGE="${{IMAGE:-{container["image"]}}}"' in script
    containerfile = (facts.REPO / "examples" / "container" / "Containerfile").read_text()
    assert 'ENTRYPOINT ["bpfoom"]' in containerfile


def test_the_pod_security_level_and_the_uninstall_are_documented():
    text = (EXAMPLE / "daemonset.yaml").read_text()
    assert "pod-security.kubernetes.io/enforce: privileged" in text
    operators = (facts.REPO / "docs" / "operators.md").read_text()
    assert "### Uninstalling" in operators and "/sys/fs/bpf/bpfoom/daemon" in operators


def rendered(directory) -> list[dict]:
    """What `kubectl apply -k directory` would apply (kubectl's built-in kustomize, offline)."""
    kubectl = shutil.which("kubectl")
    require(kubectl is not None, "kubectl (its built-in kustomize renders the example offline)")
    done = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    python = shutil.which("python3", path="/usr/bin:/bin")
    parsed = subprocess.run([python, "-c", "import json, sys, yaml; json.dump(list("
                             "yaml.safe_load_all(sys.stdin)), sys.stdout)"], input=done.stdout,
                            capture_output=True, text=True, timeout=60)
    require(parsed.returncode == 0, "PyYAML (Debian's python3-yaml) to read kubectl's output")
    return json.loads(parsed.stdout)


def test_kubernetes_events_are_opt_in_with_rbac_a_token_and_the_node_name(tmp_path):
    base = {item["kind"]: item for item in rendered(EXAMPLE)}
    assert "ServiceAccount" not in base
    assert base["DaemonSet"]["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    events = {item["kind"]: item for item in rendered(EXAMPLE.parent / "kubernetes-events")}
    spec = events["DaemonSet"]["spec"]["template"]["spec"]
    assert spec["automountServiceAccountToken"] is True
    assert spec["serviceAccountName"] == events["ServiceAccount"]["metadata"]["name"] == "bpfoom"
    [container] = spec["containers"]
    assert {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}} in \
        container["env"]
    assert container["securityContext"]["capabilities"]["add"] == ["BPF", "PERFMON", "SYS_ADMIN"]
    [rule] = events["ClusterRole"]["rules"]
    assert rule["resources"] == ["events"] and "create" in rule["verbs"]
    subject = events["ClusterRoleBinding"]["subjects"][0]
    assert (subject["name"], subject["namespace"]) == ("bpfoom", "kube-system")
    # The switch in policies.toml, uncommented, checks out.
    text = (EXAMPLE / "policies.toml").read_text()
    assert '\n# kubernetes_events = "in-cluster"\n' in text
    config = tmp_path / "policies.toml"
    config.write_text(text.replace('\n# kubernetes_events = "in-cluster"\n',
                                   '\nkubernetes_events = "in-cluster"\n'))
    done = subprocess.run([sys.executable, "-P", "-m", "bpfoom", "run", "--check", str(config)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
