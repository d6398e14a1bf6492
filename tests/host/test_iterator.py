"""Cgroup iterators through attach_cgroup_iter, IterLink.read and mmap_array.

tests/bpf/iter/cgroup_ids.bpf.o writes the id of every cgroup it visits to
its seq output and into an mmapable array; the ids are the inode numbers of
the cgroup directories, which the test reads from the file system itself.
"""
from __future__ import annotations

import errno
import os
import struct

import pytest

import bpfoom
import facts

pytestmark = pytest.mark.usefixtures("bpf_privileges")

CGROUP_IDS_OBJECT = facts.REPO / "tests" / "bpf" / "iter" / "cgroup_ids.bpf.o"


@pytest.fixture
def walker():
    with bpfoom.BpfObject.open(CGROUP_IDS_OBJECT) as obj:
        obj.load()
        yield obj


@pytest.fixture
def tree(cgroup2_dir):
    """cgroup2_dir/{a, a/b, c}, made in that order; the paths, root first."""
    paths = [cgroup2_dir, cgroup2_dir / "a", cgroup2_dir / "a" / "b", cgroup2_dir / "c"]
    for path in paths[1:]:
        path.mkdir()
    yield paths
    for path in reversed(paths[1:]):
        path.rmdir()


def ids(output: bytes) -> list[int]:
    return [value for (value,) in struct.iter_unpack("<Q", output)]


def test_descendants_pre_visits_the_tree_in_pre_order(walker, tree):
    inodes = [os.stat(path).st_ino for path in tree]
    with bpfoom.Cgroup.open(tree[0]) as root:
        link = bpfoom.attach_cgroup_iter(walker.programs["cgroup_ids"], root)
    with link:
        assert isinstance(link, bpfoom.IterLink)
        assert link.info().type == "iter"
        assert ids(link.read()) == inodes
        os.rmdir(tree[3])  # each read() is a new walk: it sees the tree as it is now
        tree[3].mkdir()
        assert ids(link.read()) == [*inodes[:3], os.stat(tree[3]).st_ino]


def test_orders_and_the_mmapped_array(walker, tree):
    inodes = [os.stat(path).st_ino for path in tree]
    program = walker.programs["cgroup_ids"]
    with bpfoom.Cgroup.open(tree[1]) as a:
        with bpfoom.attach_cgroup_iter(program, a, "self_only") as link:
            assert ids(link.read()) == [inodes[1]]
        with bpfoom.attach_cgroup_iter(program, a, "descendants_post") as link:
            assert ids(link.read()) == [inodes[2], inodes[1]]
        with bpfoom.attach_cgroup_iter(program, a, "ancestors_up") as link:
            walked = ids(link.read())
    assert walked[:3] == [inodes[1], inodes[0], os.stat(facts.CGROUP2_ROOT).st_ino]
    with bpfoom.mmap_array(walker.maps["ids"]) as view:
        assert len(view) >= 16 * 8
        assert ids(view[:len(walked) * 8]) == walked


def test_an_int_cgroup_is_an_id_and_a_raw_fd_goes_through_from_fd(walker, tree):
    """As everywhere else in bpfoom, an int cgroup is a cgroup id (what Cgroup.id reports)."""
    inodes = [os.stat(path).st_ino for path in tree]
    program = walker.programs["cgroup_ids"]
    with bpfoom.attach_cgroup_iter(program, inodes[1], "self_only") as link:
        assert ids(link.read()) == [inodes[1]]
    with bpfoom.attach_cgroup_iter(program, tree[3], "self_only") as link:  # a path works too
        assert ids(link.read()) == [inodes[3]]
    with bpfoom.Cgroup.open(tree[2]) as b, bpfoom.Cgroup.from_fd(b.fd) as wrapped:
        with bpfoom.attach_cgroup_iter(program, wrapped, "self_only") as link:
            assert ids(link.read()) == [inodes[2]]


def test_a_walk_larger_than_the_kernel_buffer_fails_with_eopnotsupp(walker, tree):
    walker.bss["padding"] = 4096  # 4 cgroups x 4 KiB + ids fit in 8 pages; 9 do not
    extra = [tree[0] / f"x{i}" for i in range(6)]
    for path in extra:
        path.mkdir()
    try:
        with bpfoom.Cgroup.open(tree[0]) as root:
            with bpfoom.attach_cgroup_iter(walker.programs["cgroup_ids"], root) as link:
                with pytest.raises(bpfoom.NotSupportedError) as caught:
                    link.read()
        assert caught.value.errno == errno.EOPNOTSUPP
        assert "map" in str(caught.value)
    finally:
        for path in extra:
            path.rmdir()


def test_bad_arguments(walker, cgroup2_dir):
    program = walker.programs["cgroup_ids"]
    with pytest.raises(ValueError, match="order"):
        bpfoom.attach_cgroup_iter(program, 0, "sideways")
    with pytest.raises(TypeError):
        bpfoom.attach_cgroup_iter(program, 1.5)  # type: ignore[arg-type]
    with pytest.raises(bpfoom.InvalidValueError):
        bpfoom.attach_cgroup_iter(program, 0)  # not an id: ids are positive
    with bpfoom.BpfObject.open(facts.GLOBALS_OBJECT) as other:
        other.load()
        with pytest.raises(bpfoom.InvalidValueError, match="not an mmapable array"):
            bpfoom.mmap_array(other.maps["counts"])
    with open("/dev/null") as stream:
        with pytest.raises(bpfoom.CgroupError):
            bpfoom.Cgroup.from_fd(stream.fileno())


def test_a_program_that_is_not_an_iterator_is_refused():
    with bpfoom.BpfObject.open(facts.COUNT_CALLS_OBJECT) as obj:
        obj.programs["count_access"].autoload = False
        obj.load()
        with bpfoom.Cgroup.open(facts.CGROUP2_ROOT) as root:
            with pytest.raises(bpfoom.StateError, match="not an iterator"):
                bpfoom.attach_cgroup_iter(obj.programs["count_syscall"], root)


def test_program_attach_iter_takes_the_cgroup_and_order(walker, tree):
    inodes = [os.stat(path).st_ino for path in tree]
    program = walker.programs["cgroup_ids"]
    with program.attach_iter(cgroup=tree[1], order="descendants_post") as link:
        assert isinstance(link, bpfoom.IterLink)
        assert ids(link.read()) == [inodes[2], inodes[1]]
    with pytest.raises(ValueError):
        program.attach_iter(cgroup=tree[1], order="sideways")
