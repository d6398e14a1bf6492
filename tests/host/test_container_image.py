"""The image examples/container/build-image makes, its entrypoint run as the DaemonSet runs it:
the container's command, the ConfigMap's policies.toml at /etc/bpfoom, the image's environment,
the probe's command.

Only what a kernel without bpf_oom_ops allows (`--help`, `run --check`, the probe), no attach.
Not through `podman run`: on this project's host crun refuses the hybrid cgroup layout ("cgroups
in hybrid mode not supported") and runc would make cgroups in a v1 hierarchy that belongs to
the machine's supervisor.  Instead the image's own file system (`podman create` + `podman
mount`: nothing runs) is entered with chroot in a private mount namespace, with the image's
ENTRYPOINT, Env and the pod's config mount.  Needs root, podman and the image (BPFOOM_IMAGE,
default the DaemonSet's): all optional on a development machine (apt-get install podman;
./scripts/dist; examples/container/build-image), so the test says which is missing.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from collections.abc import Iterator

import pytest

import facts
from conftest import require
from test_kubernetes_example import CONFIG_MOUNT, EXAMPLE, pod

IMAGE = os.environ.get("BPFOOM_IMAGE", "example.invalid/bpfoom:0.1.0")
PODMAN_FLAGS = ("--cgroup-manager=cgroupfs", "--events-backend=file")


def podman(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([shutil.which("podman") or "podman", *PODMAN_FLAGS, *args],
                          capture_output=True, text=True, timeout=300)


class Image:
    """The image's file system, mounted, and its config (Entrypoint, Env)."""

    def __init__(self, root: str, config: dict) -> None:
        self.root, self.config = root, config

    def run(self, command: list[str]) -> subprocess.CompletedProcess:
        """``command`` inside the image as its container would run it, the pod's config at
        /etc/bpfoom (read-only), /proc and /sys as a privileged pod has them."""
        env = ["env", "-i", *self.config.get("Env", [])]
        script = (f"set -e; mount --bind -o ro {shlex.quote(str(EXAMPLE))} "
                  f"{self.root}{CONFIG_MOUNT}; mount -t proc proc {self.root}/proc; "
                  f"mount --rbind /sys {self.root}/sys; "
                  f"exec chroot {self.root} {shlex.join(env + command)}")
        return subprocess.run(["unshare", "--mount", "--propagation", "private", "--fork", "sh",
                               "-c", script], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def image() -> Iterator[Image]:
    require(os.geteuid() == 0, "root (chroot and mounts into the image's file system)")
    require(shutil.which("podman") is not None, "podman (apt-get install podman)")
    require(podman("image", "exists", IMAGE).returncode == 0,
            f"the image {IMAGE} (./scripts/dist, then examples/container/build-image)")
    [inspected] = json.loads(podman("image", "inspect", IMAGE).stdout)
    created = podman("create", "--network=none", IMAGE)
    assert created.returncode == 0, created.stderr
    container = created.stdout.strip()
    try:
        mounted = podman("mount", container)
        assert mounted.returncode == 0, mounted.stderr
        root = mounted.stdout.strip()
        os.makedirs(f"{root}{CONFIG_MOUNT}", exist_ok=True)  # in the container's own layer
        yield Image(root, inspected["Config"])
    finally:
        podman("umount", container)
        podman("rm", "--force", container)


def test_the_daemonsets_command_checks_its_config_inside_the_image(image):
    [container] = pod()["containers"]
    command = container["command"]  # Kubernetes' command replaces the image's ENTRYPOINT
    assert command[:2] == ["bpfoom", "run"] and command[-1] == f"{CONFIG_MOUNT}/policies.toml"
    done = image.run([*command[:-1], "--check", command[-1]])
    assert done.returncode == 0, done.stderr
    assert f"{CONFIG_MOUNT}/policies.toml: 2 policies" in done.stdout, done.stdout


def test_the_images_entrypoint_answers_help_and_the_probe_without_a_daemon(image):
    entrypoint = image.config["Entrypoint"]
    assert entrypoint == ["bpfoom"]
    done = image.run([*entrypoint, "--help"])
    assert done.returncode == 0 and "bpfoom run" in done.stdout, done.stderr
    [container] = pod()["containers"]
    done = image.run(container["livenessProbe"]["exec"]["command"])
    assert done.returncode == 1, (done.stdout, done.stderr)  # no daemon runs here
    assert "live probe failed: no bpfoom daemon runs" in done.stderr, done.stderr


def test_the_wheel_in_the_image_is_this_checkouts_version(image):
    done = image.run([*image.config["Entrypoint"], "--version"])
    assert done.returncode == 0, done.stderr
    with open(facts.REPO / "pyproject.toml", "rb") as project:
        import tomllib
        version = tomllib.load(project)["project"]["version"]
    assert done.stdout.split() == ["bpfoom", version], done.stdout
