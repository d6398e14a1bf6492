"""cgroup v2 handles, and the refusal to attach struct_ops to a cgroup on this kernel.

Only a child of the cgroup2 mount at /sys/fs/cgroup/unified is ever created
or written; the machine's v1 hierarchies are never touched.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

import bpfoom
import facts
from conftest import require


def kernel_supports_cgroup_struct_ops() -> bool:
    """Spec section 1: such kernels give struct bpf_struct_ops_link a cgroup_id member."""
    return bpfoom.features()["struct_ops_cgroup_attach"].supported is True


def test_create_reports_kernel_facts(cgroup2_dir):
    path = cgroup2_dir / "child"
    with bpfoom.Cgroup.create(path) as cgroup:
        assert path.is_dir()
        assert Path(cgroup.path) == path
        assert cgroup.id == os.stat(path).st_ino
        assert cgroup.procs == []
        assert cgroup.fd >= 0
        cgroup.write("cgroup.max.depth", "3")
        assert cgroup.read("cgroup.max.depth").strip() == "3"
        assert (path / "cgroup.max.depth").read_text().strip() == "3"
        cgroup.remove()
    assert not path.exists()


def test_create_existing_needs_exist_ok(cgroup2_dir):
    with pytest.raises(bpfoom.CgroupError) as caught:
        bpfoom.Cgroup.create(cgroup2_dir)
    assert caught.value.errno == errno.EEXIST
    with bpfoom.Cgroup.create(cgroup2_dir, exist_ok=True) as cgroup:
        assert cgroup.id == os.stat(cgroup2_dir).st_ino


def test_open_reads_procs(cgroup2_dir):
    with bpfoom.Cgroup.open(cgroup2_dir) as cgroup:
        assert cgroup.procs == []
        assert cgroup.read("cgroup.procs") == ""


def test_child_creates_a_nested_cgroup(cgroup2_dir):
    with bpfoom.Cgroup.open(cgroup2_dir) as parent:
        with parent.child("inner") as inner:
            assert Path(inner.path) == cgroup2_dir / "inner"
            inner.remove()
    assert not (cgroup2_dir / "inner").exists()


@pytest.mark.parametrize("form", ["str", "path", "cgroup", "id", "from_fd"])
def test_cgroup_targeted_attach_is_not_supported_here(demo, cgroup2_dir, form):
    if kernel_supports_cgroup_struct_ops():
        require(False, "this kernel supports cgroup-targeted struct_ops; the refusal cannot be observed")
    demo.obj.load()
    with bpfoom.Cgroup.open(cgroup2_dir) as cgroup:
        target = {"str": str(cgroup2_dir), "path": cgroup2_dir, "cgroup": cgroup, "id": cgroup.id,
                  "from_fd": "from_fd"}[form]
        if target == "from_fd":
            target = bpfoom.Cgroup.from_fd(cgroup.fd)
        with pytest.raises(bpfoom.NotSupportedError) as caught:
            demo.ops.attach(cgroup=target)
        if form == "from_fd":
            target.close()
    assert caught.value.feature == "struct_ops_cgroup_attach"
    assert caught.value.errno in (errno.EOPNOTSUPP, 524)
    # It must never fall through to a system-wide attach: no link uses the map, no name registered.
    assert [info for info in bpfoom.links() if info.map_id == demo.ops.id] == []
    assert demo.first not in facts.available_congestion_control()


def test_from_id_opens_the_cgroup_with_that_id(cgroup2_dir):
    expected = os.stat(cgroup2_dir).st_ino
    with bpfoom.Cgroup.from_id(expected) as cgroup:
        assert cgroup.id == expected
        assert Path(cgroup.path) == cgroup2_dir
        assert os.path.samestat(os.fstat(cgroup.fd), os.stat(cgroup2_dir))


def test_from_fd_duplicates_a_raw_fd(cgroup2_dir):
    raw = os.open(cgroup2_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with bpfoom.Cgroup.from_fd(raw) as cgroup:
            assert cgroup.fd != raw and cgroup.id == os.stat(cgroup2_dir).st_ino
            assert Path(cgroup.path) == cgroup2_dir
        os.fstat(raw)  # still open: it stayed the caller's
    finally:
        os.close(raw)


def test_an_int_cgroup_is_an_id_never_an_fd(demo, cgroup2_dir):
    """attach() and set_granularity() read an int the same way: as the id Cgroup.id reports."""
    demo.obj.load()
    gone = cgroup2_dir / "gone"
    gone.mkdir()
    gone_id = os.stat(gone).st_ino
    gone.rmdir()
    with pytest.raises(bpfoom.NotFoundError, match=f"no cgroup with id {gone_id}"):
        demo.ops.attach(cgroup=gone_id)
    with pytest.raises(bpfoom.NotFoundError):
        bpfoom.Cgroup.from_id(gone_id)
    with pytest.raises(ValueError):
        demo.ops.attach(cgroup=0)
    for wrong in (True, 1.5, b"/sys/fs/cgroup"):
        with pytest.raises(TypeError, match="Cgroup.from_fd"):
            demo.ops.attach(cgroup=wrong)
    assert [info for info in bpfoom.links() if info.map_id == demo.ops.id] == []


def test_cgroup_repr_shows_path_id_and_state(cgroup2_dir):
    cgroup = bpfoom.Cgroup.open(cgroup2_dir)
    assert repr(cgroup) == f"<Cgroup {str(cgroup2_dir)!r} id={os.stat(cgroup2_dir).st_ino} open>"
    cgroup.close()
    assert repr(cgroup) == f"<Cgroup {str(cgroup2_dir)!r} closed>"
