"""Every bad input raises its own exception and leaves nothing behind.

"Nothing behind" is checked by the autouse fixtures (no fd left open, no
congestion control left registered) and, where a link could appear, by
comparing the kernel's struct_ops links before and after.
"""
from __future__ import annotations

import errno

import pytest

import bpfoom
import facts

pytestmark = pytest.mark.usefixtures("bpf_privileges")


def test_missing_file(tmp_path):
    missing = tmp_path / "absent.bpf.o"
    with pytest.raises(bpfoom.NotFoundError) as caught:
        bpfoom.BpfObject.open(missing)
    assert caught.value.errno == errno.ENOENT
    assert isinstance(caught.value, FileNotFoundError)
    assert str(missing) in str(caught.value)


def test_not_an_elf_file(tmp_path):
    text = tmp_path / "notes.bpf.o"
    text.write_text("this is not an ELF object\n")
    with pytest.raises(bpfoom.ObjectFileError):
        bpfoom.BpfObject.open(text)
    with pytest.raises(bpfoom.ObjectFileError):
        bpfoom.BpfObject.open(text.read_bytes())


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_elf(tmp_path, keep):
    whole = facts.TCP_CC_OBJECT.read_bytes()
    truncated = tmp_path / "truncated.bpf.o"
    truncated.write_bytes(whole[: int(len(whole) * keep)])
    with pytest.raises(bpfoom.ObjectFileError):
        bpfoom.BpfObject.open(truncated)
    with pytest.raises(bpfoom.ObjectFileError):
        bpfoom.BpfObject.open(truncated.read_bytes())


def test_empty_bytes():
    with pytest.raises(bpfoom.ObjectFileError):
        bpfoom.BpfObject.open(b"")


def test_object_without_struct_ops():
    with bpfoom.BpfObject.open(facts.GLOBALS_OBJECT) as obj:
        assert len(obj.struct_ops) == 0
        with pytest.raises(bpfoom.ObjectFileError) as caught:
            obj.struct_ops["bpfoom_demo"]
        # also a lookup miss, so `except KeyError` / `except NotFoundError` work
        assert isinstance(caught.value, KeyError) and isinstance(caught.value, bpfoom.NotFoundError)


def test_wrong_map_name():
    with bpfoom.BpfObject.open(facts.GLOBALS_OBJECT) as obj:
        with pytest.raises(bpfoom.NotFoundError) as caught:
            obj.maps["cuonts"]
        assert isinstance(caught.value, KeyError)
        assert "cuonts" in str(caught.value)
        assert "counts" in obj.maps and "cuonts" not in obj.maps


def test_wrong_program_name():
    with bpfoom.BpfObject.open(facts.GLOBALS_OBJECT) as obj:
        with pytest.raises(bpfoom.NotFoundError):
            obj.programs["mirror"]


def test_wrong_struct_ops_name(tcp_struct_ops):
    with bpfoom.BpfObject.open(facts.TCP_CC_OBJECT) as obj:
        with pytest.raises(bpfoom.NotFoundError):
            obj.struct_ops["bpfoom_demo3"]
        assert set(obj.struct_ops) == {"bpfoom_demo", "bpfoom_demo2"}


def test_cgroup_path_that_does_not_exist(cgroup2_dir):
    missing = cgroup2_dir / "no-such-child"
    with pytest.raises(bpfoom.NotFoundError) as caught:
        bpfoom.Cgroup.open(missing)
    assert caught.value.errno == errno.ENOENT


def test_cgroup_v1_path_is_refused(cgroup_v1_memory):
    # Read-only use of the machine's v1 memory hierarchy: open is all we do.
    with pytest.raises(bpfoom.CgroupError) as caught:
        bpfoom.Cgroup.open(cgroup_v1_memory)
    assert caught.value.errno in (errno.ENOTDIR, errno.EINVAL)
    assert "v2" in str(caught.value) or "cgroup2" in str(caught.value)


def test_plain_directory_is_not_a_cgroup(tmp_path):
    with pytest.raises(bpfoom.CgroupError):
        bpfoom.Cgroup.open(tmp_path)


def test_double_pin_to_one_path(demo, bpffs_dir):
    pin = bpffs_dir / "taken"
    demo.obj.load()
    with demo.ops.attach() as first, demo.ops2.attach() as second:
        first.pin(pin)
        with pytest.raises(bpfoom.BusyError) as caught:
            second.pin(pin)
        assert caught.value.errno == errno.EEXIST
        assert second.pinned_path is None
        with bpfoom.Link.from_pinned(pin) as holder:
            assert holder.id == first.id  # the pin still names the first link
        first.unpin()
    assert demo.second not in facts.available_congestion_control()


def test_pin_outside_bpffs_is_refused(demo, tmp_path):
    demo.obj.load()
    with demo.ops.attach() as link:
        with pytest.raises(bpfoom.InvalidValueError, match="BPF filesystem") as caught:
            link.pin(tmp_path / "link")
        assert caught.value.errno == errno.EINVAL
        assert link.pinned_path is None
        assert not (tmp_path / "link").exists()


def test_from_pinned_missing_path(bpffs_dir):
    with pytest.raises(bpfoom.NotFoundError):
        bpfoom.Link.from_pinned(bpffs_dir / "absent")


def test_object_use_after_close():
    obj = bpfoom.BpfObject.open(facts.GLOBALS_OBJECT)
    counts = obj.maps["counts"]
    rodata = obj.rodata
    obj.close()
    obj.close()  # idempotent
    assert obj.state == "closed"
    for use in (obj.load, lambda: obj.maps, lambda: obj.programs, lambda: obj.struct_ops,
                lambda: obj.rodata, lambda: counts.fd, lambda: counts[0], lambda: rodata["ro_u32"]):
        with pytest.raises(bpfoom.ClosedError) as caught:
            use()
        assert caught.value.errno == errno.EBADF


def test_link_use_after_close(demo, bpffs_dir):
    demo.obj.load()
    link = demo.ops.attach()
    link.close()
    for use in (link.info, link.detach, lambda: link.pin(bpffs_dir / "late"),
                lambda: link.update(demo.ops2)):
        with pytest.raises(bpfoom.ClosedError):
            use()
    assert not (bpffs_dir / "late").exists()


def test_cgroup_use_after_close(cgroup2_dir):
    cgroup = bpfoom.Cgroup.open(cgroup2_dir)
    cgroup.close()
    cgroup.close()
    with pytest.raises(bpfoom.ClosedError):
        cgroup.fd
    with pytest.raises(bpfoom.ClosedError):
        cgroup.read("cgroup.procs")


def test_attach_after_object_close_raises(demo):
    demo.obj.load()
    ops = demo.ops
    demo.obj.close()
    with pytest.raises(bpfoom.ClosedError):
        ops.attach()
    assert demo.first not in facts.available_congestion_control()


def test_attach_before_load_is_refused(demo):
    with pytest.raises(bpfoom.StateError):
        demo.ops.attach()
    assert demo.first not in facts.available_congestion_control()
