"""The `bpfoom` command, run as a real child process against the running kernel.

Attach, list and detach are proven with the tcp_congestion_ops example (any
kernel with struct_ops has it): the kernel's list of congestion controls
shows whether the command really registered or removed it.  Each test
registers under a name of its own.
"""
from __future__ import annotations

import ctypes
import json
import subprocess
import sys
from pathlib import Path

import pytest

import bpfoom as bpfoom_api
import facts
from conftest import require

PR_CAPBSET_DROP = 24
CAP_PERFMON = 38


def bpfoom(*args: str, preexec=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-P", "-m", "bpfoom", *args], capture_output=True,
                          text=True, timeout=120, preexec_fn=preexec)


def console_script() -> Path:
    return Path(sys.executable).with_name("bpfoom")


def registered(name: str) -> bool:
    return name in facts.available_congestion_control()


def one_line_error(done: subprocess.CompletedProcess) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("bpfoom: "), done.stderr
    return lines[0]


def attach_tcp(name: str, *extra: str) -> subprocess.CompletedProcess:
    return bpfoom("attach", str(facts.TCP_CC_OBJECT), "--map", "bpfoom_demo", "--name", name, *extra)


@pytest.fixture
def cc_name(tcp_struct_ops, bpffs_dir):
    """A unique congestion-control name; whatever is still pinned for it is removed afterwards."""
    name = facts.unique_cc_name()
    default_dir = Path("/sys/fs/bpf/bpfoom")
    made_here = not default_dir.exists()
    yield name
    pin = default_dir / f"{name}@system"
    if pin.exists():
        bpfoom("detach", "--all", "--pin", str(pin))
    if made_here and default_dir.is_dir() and not any(default_dir.iterdir()):
        default_dir.rmdir()  # the CLI's default pin directory, created by this test


def test_help_lists_every_subcommand_with_examples():
    done = bpfoom("--help")
    assert done.returncode == 0
    for command in ("features", "policies", "attach", "detach", "list", "events", "run"):
        assert command in done.stdout
    assert "examples:" in done.stdout
    for command in ("attach", "detach", "list", "events", "run"):
        sub = bpfoom(command, "--help")
        assert sub.returncode == 0, command
        assert "example" in sub.stdout, command


def test_the_console_script_is_installed_and_runs():
    done = subprocess.run([str(console_script()), "features", "--json"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "bpf_oom_ops" in json.loads(done.stdout)


def test_usage_errors_exit_2():
    assert bpfoom().returncode == 2
    assert bpfoom("frobnicate").returncode == 2
    assert bpfoom("detach").returncode == 2  # one of --cgroup/--link/--pin is required
    assert bpfoom("detach", "--link", "abc").returncode == 2
    done = bpfoom("attach", str(facts.TCP_CC_OBJECT), "--set", "no_equals_sign")
    assert done.returncode == 2
    assert "KEY=VALUE" in done.stderr


def test_policies_lists_the_shipped_ones_with_their_tunables():
    done = bpfoom("policies", "--json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["schema"] == 1
    by_name = {entry["name"]: entry for entry in document["policies"]}
    leaf = by_name["largest_leaf"]
    assert leaf["kind"] == "oom"
    assert "bpf_oom_ops" in leaf["requires"]
    assert Path(leaf["path"]).is_file()
    for tunable in leaf["tunables"].values():
        assert {"type", "default", "doc"} <= set(tunable)
    text = bpfoom("policies")
    assert text.returncode == 0 and "largest_leaf" in text.stdout


def test_attach_list_detach_by_pin(cc_name):
    done = attach_tcp(cc_name, "--set", "min_ssthresh=7")
    assert done.returncode == 0, done.stderr
    assert registered(cc_name)
    pin = Path("/sys/fs/bpf/bpfoom") / f"{cc_name}@system"
    assert pin.exists() and str(pin) in done.stdout

    listed = bpfoom("list", "--all", "--json")
    assert listed.returncode == 0, listed.stderr
    document = json.loads(listed.stdout)
    assert document["schema"] == 1
    ours = [e for e in document["attachments"] if e["policy"] == cc_name]
    assert len(ours) == 1
    entry = ours[0]
    assert entry["kind"] == "tcp_congestion_ops"
    assert entry["pin"] == str(pin)
    assert entry["cgroup"] is None and entry["cgroup_id"] == 0
    assert entry["link_id"] in {info.id for info in bpfoom_api.links()}
    table = bpfoom("list", "--all")
    assert cc_name in table.stdout and "system-wide" in table.stdout
    assert cc_name not in bpfoom("list").stdout  # without --all: OOM and PSI policies only

    kept = bpfoom("detach", "--pin", str(pin))  # not an OOM policy: only with --all
    assert kept.returncode == 1
    assert "registers a tcp_congestion_ops" in one_line_error(kept) and "--all" in kept.stderr
    assert registered(cc_name) and pin.exists()
    assert f"bpfoom detach --pin {pin} --all" in done.stdout  # attach said so

    gone = bpfoom("detach", "--all", "--pin", str(pin))
    assert gone.returncode == 0, gone.stderr
    assert not registered(cc_name)
    assert not pin.exists()


def test_attach_json_and_detach_by_link_id(cc_name, bpffs_dir):
    pin = bpffs_dir / "cc"
    done = attach_tcp(cc_name, "--pin", str(pin), "--json")
    assert done.returncode == 0, done.stderr
    attachment = json.loads(done.stdout)["attachment"]
    assert attachment["pin"] == str(pin) and attachment["policy"] == cc_name
    assert registered(cc_name)
    kept = bpfoom("detach", "--link", str(attachment["link_id"]))
    assert kept.returncode == 1 and "EINVAL" in one_line_error(kept) and registered(cc_name)
    gone = bpfoom("detach", "--all", "--link", str(attachment["link_id"]))
    assert gone.returncode == 0, gone.stderr
    assert not registered(cc_name)
    assert not pin.exists()


def test_a_second_attach_of_the_same_name_fails_and_leaves_the_first(cc_name):
    assert attach_tcp(cc_name).returncode == 0
    again = attach_tcp(cc_name, "--pin", "/sys/fs/bpf/bpfoom/other")
    assert again.returncode == 1
    assert "EEXIST" in one_line_error(again)
    assert not Path("/sys/fs/bpf/bpfoom/other").exists()
    assert facts.available_congestion_control().count(cc_name) == 1


@pytest.mark.parametrize("args, words", [
    (["attach", "largest_lef"], ["ENOENT", "did you mean 'largest_leaf'", "bpfoom policies"]),
    (["attach", "/no/such/policy.bpf.o"], ["ENOENT", "check the path"]),
    (["attach", str(facts.TCP_CC_OBJECT)], ["--map", "bpfoom_demo, bpfoom_demo2"]),
    (["attach", str(facts.TCP_CC_OBJECT), "--map", "bpfoom_dem"], ["did you mean 'bpfoom_demo'"]),
    (["attach", str(facts.TCP_CC_OBJECT), "--map", "bpfoom_demo", "--set", "min_sshtresh=3"],
     ["ENOENT", "did you mean 'min_ssthresh'"]),
    (["attach", str(facts.TCP_CC_OBJECT), "--map", "bpfoom_demo", "--set", "min_ssthresh=lots"],
     ["EINVAL", "min_ssthresh", "give an integer (4096, 0x1000) or a size"]),
    (["attach", str(facts.TCP_CC_OBJECT), "--map", "bpfoom_demo", "--set", "min_ssthresh=99999999999"],
     ["EINVAL", "min_ssthresh"]),
    (["attach", str(facts.TCP_CC_OBJECT), "--map", "bpfoom_demo", "--cgroup", "/no/such/cgroup"],
     ["ENOENT", "/no/such/cgroup"]),
    (["attach", str(facts.TCP_CC_OBJECT), "--map", "bpfoom_demo", "--cgroup", "/proc"],
     ["cgroup v2"]),
    (["attach", str(facts.TCP_CC_OBJECT), "--map", "bpfoom_demo", "--pin", "/tmp/not-bpffs"],
     ["ENOENT", "not on a BPF filesystem", "mount -t bpf"]),
    (["detach", "--link", "4000000000"], ["ENOENT", "bpfoom list"]),
    (["detach", "--pin", "/sys/fs/bpf/bpfoom-no-such-pin"], ["ENOENT"]),
    (["detach", "--cgroup", "/no/such/cgroup"], ["ENOENT"]),
    (["run", "/no/such/config.toml"], ["ENOENT", "check the path"]),
])
def test_bad_input_fails_with_one_sentence(tcp_struct_ops, args, words):
    before = facts.available_congestion_control()
    done = bpfoom(*args)
    assert done.returncode == 1, (done.stdout, done.stderr)
    line = one_line_error(done)
    for word in words:
        assert word in line
    assert done.stdout == ""
    assert facts.available_congestion_control() == before


def test_detach_of_a_cgroup_with_nothing_attached(cgroup2_dir):
    done = bpfoom("detach", "--cgroup", str(cgroup2_dir))
    assert done.returncode == 1
    assert "nothing is attached" in one_line_error(done)


def test_cgroup_target_on_a_kernel_without_cgroup_struct_ops(tcp_struct_ops, cgroup2_dir):
    if "cgroup_id" in facts.vmlinux_btf_index()[0].get("bpf_struct_ops_link", set()):
        require(False, "this kernel attaches struct_ops to cgroups; nothing to refuse")
    name = facts.unique_cc_name()
    pin_dir_existed = Path("/sys/fs/bpf/bpfoom").exists()
    done = attach_tcp(name, "--cgroup", str(cgroup2_dir))
    assert done.returncode == 1
    line = one_line_error(done)
    assert "struct_ops_cgroup_attach" in line and "bpfoom features" in line
    assert not registered(name)  # refused before any BPF call: never system-wide by mistake
    assert Path("/sys/fs/bpf/bpfoom").exists() == pin_dir_existed  # nor its pin directory


def _drop_bpf_capabilities() -> None:
    """preexec: drop CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN and CAP_NET_ADMIN from the bounding set,
    so the exec'd child, root or not, runs without them."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (facts.CAP_BPF, CAP_PERFMON, facts.CAP_SYS_ADMIN, facts.CAP_NET_ADMIN):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_missing_privileges_say_what_to_grant(cc_name):
    done = bpfoom("attach", str(facts.TCP_CC_OBJECT), "--map", "bpfoom_demo", "--name", cc_name,
                  preexec=_drop_bpf_capabilities)
    assert done.returncode == 1, done.stdout
    line = one_line_error(done)
    assert "EPERM" in line and "CAP_BPF" in line
    assert not registered(cc_name)
    listed = bpfoom("list", preexec=_drop_bpf_capabilities)
    assert listed.returncode == 1
    assert "EPERM" in one_line_error(listed)


def test_events_without_attached_policies_prints_nothing(bpffs_dir):
    done = bpfoom("events", "--json", "--pin-dir", str(bpffs_dir))
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
