"""The two kernel interfaces of bpf_oom_ops: told apart from BTF, and what each makes of attach().

Detection reads real BTF: minimal BTF of each shape compiled by clang from
tests/bpf/abi/oom_abi_shapes.c, our v2 kernel's vmlinux when it is cached,
and the running kernel's.  The BPF_LINK_CREATE arguments are computed by the
ABI layer for each interface; its refusals are exercised on the running
kernel with real struct_ops maps and links.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import bpfoom
import facts
from conftest import require

SHAPES = facts.REPO / "tests" / "bpf" / "abi" / "oom_abi_shapes.c"
V2_VMLINUX = Path(os.environ.get("BPFOOM_CACHE") or Path.home() / ".cache" / "bpfoom") \
    / "linux" / "out" / "current" / "vmlinux"
BEFORE, AFTER, LINK = 1 << 3, 1 << 4, 1 << 13  # UAPI BPF_F_BEFORE, BPF_F_AFTER, BPF_F_LINK
V2, NEXT = (next(abi for abi in bpfoom.OOM_ABIS if abi.name == name) for name in ("v2", "next"))


@pytest.fixture(scope="module")
def shape_btf(tmp_path_factory):
    """shape name -> an ELF object whose BTF has that shape."""
    require(shutil.which("clang-19") is not None, "needs clang-19 (apt-get install clang-19)")
    out = tmp_path_factory.mktemp("abi")
    built = {}
    for shape in ("V2", "NEXT", "INTERMEDIATE", "NEXT_NO_QUERY"):
        built[shape] = out / f"{shape.lower()}.o"
        subprocess.run(["clang-19", "-g", "-O2", "-target", "bpf", f"-DSHAPE_{shape}", "-c",
                        str(SHAPES), "-o", str(built[shape])], check=True, timeout=120)
    return built


def detect(path: Path) -> tuple[str | None, str]:
    with bpfoom.Btf.parse(path) as btf:
        abi, why = bpfoom.detect_oom_abi(btf)
    return (abi.name if abi else None), why


def test_each_shape_is_told_apart(shape_btf):
    assert detect(shape_btf["V2"]) == ("v2", (
        "vmlinux BTF has bpf_oom_ops.handle_out_of_memory(struct bpf_oom_ctx *, struct "
        "oom_control *); vmlinux BTF struct bpf_struct_ops_link has cgroup_id"))
    assert detect(shape_btf["NEXT"]) == ("next", (
        "vmlinux BTF has bpf_oom_ops.handle_out_of_memory(struct oom_control *, struct "
        "cgroup *); vmlinux BTF union bpf_attr has query.type_id"))


def test_a_shape_matching_neither_is_unknown_not_guessed(shape_btf):
    name, why = detect(shape_btf["INTERMEDIATE"])
    assert name is None
    assert "(struct oom_control *, struct bpf_struct_ops_link *), which is neither v2 nor next" in why
    name, why = detect(shape_btf["NEXT_NO_QUERY"])
    assert name is None
    assert "(next) but its struct_ops cgroup mechanism is none" in why


def test_our_v2_kernel_is_v2():
    require(V2_VMLINUX.exists(), f"needs our built kernel's vmlinux at {V2_VMLINUX} "
            "(python third_party/linux/build.py builds it)")
    assert detect(V2_VMLINUX)[0] == "v2"


def test_features_report_the_running_kernels_interface():
    require(facts.VMLINUX_BTF.exists(), f"needs kernel BTF at {facts.VMLINUX_BTF}")
    expected, why = detect(facts.VMLINUX_BTF)
    feature = bpfoom.features()["oom_abi"]
    assert feature.value == expected and feature.detail == why
    assert (bpfoom.running_oom_abi() or None) is (None if expected is None
                                                  else {"v2": V2, "next": NEXT}[expected])
    order = bpfoom.features()["struct_ops_cgroup_order"]
    assert order.supported is (expected == "next")
    assert order.value == bpfoom.features()["struct_ops_cgroup_attach"].value


def test_what_link_create_receives_on_v2():
    assert V2.link_create_args(None) == bpfoom.LinkCreateArgs()  # system-wide: no cgroup at all
    assert V2.link_create_args(7) == bpfoom.LinkCreateArgs(relative_fd=7)
    with pytest.raises(bpfoom.NotSupportedError, match="orders them only by the cgroup hierarchy") \
            as caught:
        V2.link_create_args(7, before_fd=9)
    assert caught.value.errno == errno.EOPNOTSUPP
    assert caught.value.feature == "struct_ops_cgroup_order"
    assert not V2.orders and V2.offline_callback and not V2.system_wide_is_root_cgroup


def test_what_link_create_receives_on_next():
    assert NEXT.link_create_args(7) == bpfoom.LinkCreateArgs(target_fd=7)
    assert NEXT.link_create_args(7, before_fd=9) == bpfoom.LinkCreateArgs(
        target_fd=7, relative_fd=9, flags=BEFORE | LINK)
    assert NEXT.link_create_args(7, after_fd=9) == bpfoom.LinkCreateArgs(
        target_fd=7, relative_fd=9, flags=AFTER | LINK)
    with pytest.raises(bpfoom.InvalidValueError, match="not both"):
        NEXT.link_create_args(7, before_fd=9, after_fd=10)
    with pytest.raises(bpfoom.InvalidValueError, match="give cgroup= as well"):
        NEXT.link_create_args(None, after_fd=9)
    assert NEXT.orders and not NEXT.offline_callback and NEXT.system_wide_is_root_cgroup


def test_the_running_kernel_refuses_what_it_cannot_do(demo, cgroup2_dir):
    """Real maps and links: an order or a cgroup the kernel cannot honour attaches nothing."""
    mechanism = bpfoom.CgroupMechanism(bpfoom.features()["struct_ops_cgroup_attach"].value)
    require(mechanism is bpfoom.CgroupMechanism.NONE,
            "needs a kernel whose struct_ops links take no cgroup (this one takes them)")
    demo.obj.load()
    struct_ops_links = {info.id for info in bpfoom.links("struct_ops")}
    with demo.ops.attach() as anchor:
        with pytest.raises(bpfoom.InvalidValueError, match="give cgroup= as well"):
            demo.ops2.attach(before=anchor)
        with pytest.raises(bpfoom.NotSupportedError) as caught:
            demo.ops2.attach(cgroup2_dir, after=anchor)
        assert caught.value.feature == "struct_ops_cgroup_attach"
        assert {info.id for info in bpfoom.links("struct_ops")} == struct_ops_links | {anchor.id}
    assert demo.second not in facts.available_congestion_control()


def test_btf_of_a_missing_or_foreign_file_is_a_specific_error(tmp_path):
    with pytest.raises(bpfoom.PathNotFoundError, match="no such file"):
        bpfoom.Btf.parse(tmp_path / "missing.o")
    text = tmp_path / "text.o"
    text.write_text("not an object\n")
    with pytest.raises(bpfoom.ObjectFileError, match="give an ELF file with a .BTF section"), \
            bpfoom.Btf.parse(text):
        pass


def test_the_command_reports_which_interface_runs():
    done = subprocess.run([sys.executable, "-m", "bpfoom", "features", "--json"], check=True,
                          capture_output=True, text=True, timeout=120)
    reported = json.loads(done.stdout)["oom_abi"]
    assert reported["value"] == bpfoom.features()["oom_abi"].value
    assert reported["detail"] == bpfoom.features()["oom_abi"].detail
