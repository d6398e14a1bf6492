"""The image examples/container/build-image makes, run by podman as the DaemonSet runs it: its
container command, the ConfigMap's policies.toml mounted at /etc/bpfoom, the probe's command.

Only what this host's kernel allows (it has no bpf_oom_ops): `--help`, `run --check` and the
probes, no attach.  Needs podman and the image (IMAGE, default the DaemonSet's); both are
optional on a development machine (apt-get install podman; ./scripts/dist;
examples/container/build-image), so the test says which is missing.  No cgroup is made for the
containers (--cgroups=disabled): this host's cgroup v1 hierarchy belongs to its supervisor.
"""
from __future__ import annotations

import os
import shutil
import subprocess

import facts
from conftest import require
from test_kubernetes_example import EXAMPLE, pod

IMAGE = os.environ.get("BPFOOM_IMAGE", "example.invalid/bpfoom:0.1.0")


def podman_run(*command: str, entrypoint: str | None = None) -> subprocess.CompletedProcess:
    """``podman run`` of the image with the pod's mounts that matter here (the ConfigMap)."""
    podman = shutil.which("podman")
    require(podman is not None, "podman (apt-get install podman) to run the image")
    known = subprocess.run([podman, "--cgroup-manager=cgroupfs", "--events-backend=file",
                            "image", "exists", IMAGE], capture_output=True, timeout=120)
    require(known.returncode == 0, f"the image {IMAGE} (./scripts/dist, then "
            "examples/container/build-image)")
    return subprocess.run(
        [podman, "--cgroup-manager=cgroupfs", "--events-backend=file", "run", "--rm",
         "--cgroups=disabled", "--network=none", "--privileged",
         "--volume", f"{EXAMPLE}:/etc/bpfoom:ro",
         *(["--entrypoint", entrypoint] if entrypoint else []), IMAGE, *command],
        capture_output=True, text=True, timeout=300)


def test_the_daemonsets_command_checks_its_config_inside_the_image():
    [container] = pod()["containers"]
    command = container["command"]  # replaces the image's ENTRYPOINT, as Kubernetes does
    assert command[:2] == ["bpfoom", "run"]
    done = podman_run(*command[1:-1], "--check", command[-1], entrypoint=command[0])
    assert done.returncode == 0, done.stderr
    assert "examples" not in done.stdout and "/etc/bpfoom/policies.toml: 2 policies" in done.stdout


def test_the_image_answers_help_and_the_probe_without_a_daemon():
    done = podman_run("--help")  # the ENTRYPOINT is bpfoom
    assert done.returncode == 0 and "bpfoom run" in done.stdout, done.stderr
    [container] = pod()["containers"]
    probe = container["livenessProbe"]["exec"]["command"]
    done = podman_run(*probe[1:], entrypoint=probe[0])
    assert done.returncode == 1, (done.stdout, done.stderr)  # no daemon runs in this container
    assert "live probe failed" in done.stderr, done.stderr


def test_the_wheel_in_the_image_is_this_checkout():
    done = podman_run("--version")
    assert done.returncode == 0, done.stderr
    version = subprocess.run(["python3", "-c", "import tomllib; print(tomllib.load(open("
                              f"'{facts.REPO / 'pyproject.toml'}', 'rb'))['project']['version'])"],
                             capture_output=True, text=True, timeout=60).stdout.strip()
    assert version and version in done.stdout, (version, done.stdout)
