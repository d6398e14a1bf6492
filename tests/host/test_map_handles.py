"""Maps pinned, unpinned, frozen and opened by id through the object layer's public API.

What the OOM layer needs from the object layer (issue 26) is public there:
each test proves the kernel did it (a pin exists and reads the same map, a
frozen map refuses a write, an id opens the same map).
"""
from __future__ import annotations

import errno

import pytest

import bpfoom
import facts

pytestmark = pytest.mark.usefixtures("bpf_privileges")


@pytest.fixture
def loaded():
    with bpfoom.BpfObject.open(facts.GLOBALS_OBJECT) as obj:
        obj.load()
        yield obj


def test_pin_then_unpin_a_map(loaded, bpffs_dir):
    counts = loaded.maps["counts"]
    counts[3] = 30
    counts.pin(bpffs_dir / "counts")
    with bpfoom.Map.from_pinned(str(bpffs_dir / "counts")) as pinned:
        assert pinned.id == counts.id and pinned[3] == 30
    with pytest.raises(bpfoom.BusyError):
        counts.pin(bpffs_dir / "counts")
    loaded.maps["slots"].pin(bpffs_dir / "slots")
    with pytest.raises(bpfoom.InvalidValueError, match="another BPF object"):
        counts.unpin(bpffs_dir / "slots")
    counts.unpin(bpffs_dir / "counts")
    assert not (bpffs_dir / "counts").exists() and (bpffs_dir / "slots").exists()
    with pytest.raises(bpfoom.PathNotFoundError):
        counts.unpin(bpffs_dir / "counts")


def test_pin_before_load_is_a_state_error(bpffs_dir):
    with bpfoom.BpfObject.open(facts.GLOBALS_OBJECT) as obj:
        with pytest.raises(bpfoom.StateError) as caught:
            obj.maps["counts"].pin(bpffs_dir / "early")
    assert caught.value.errno == errno.EBADFD


def test_a_frozen_map_refuses_writes_from_user_space(loaded):
    counts = loaded.maps["counts"]
    counts[1] = 10
    counts.freeze()
    with pytest.raises(bpfoom.StateError) as caught:
        counts[1] = 11
    assert caught.value.errno == errno.EBADFD
    assert counts[1] == 10


def test_a_map_opened_by_id_is_the_same_map(loaded):
    counts = loaded.maps["counts"]
    counts[5] = 50
    with bpfoom.Map.from_id(counts.id) as by_id:
        assert by_id.info().id == counts.id and by_id[5] == 50
        by_id[6] = 60
    assert counts[6] == 60
    with pytest.raises(bpfoom.NotFoundError):
        bpfoom.Map.from_id(2**31 - 1)


def test_the_object_btf_is_public(loaded):
    assert loaded.btf.find("limits", bpfoom.BtfKind.STRUCT) is not None


def test_flags_btf_and_owner_are_the_maps_own(loaded, bpffs_dir):
    """What iterators, ring buffers and records read through the public Map (issue 26)."""
    rodata = next(m for name, m in loaded.maps.items() if name.endswith(".rodata"))
    assert rodata.flags == rodata.info().flags and rodata.flags & 0x80  # BPF_F_RDONLY_PROG
    counts = loaded.maps["counts"]
    assert counts.flags == counts.info().flags == 0
    with counts.btf() as btf:
        assert btf is loaded.btf
    counts.pin(bpffs_dir / "counts")
    with bpfoom.Map.from_pinned(bpffs_dir / "counts") as pinned:
        assert pinned.owner is not counts.owner and pinned.owner.state == "loaded"
        with pinned.btf() as kernel_copy:  # the creator's BTF, read back from the kernel
            assert kernel_copy is not None and kernel_copy.find("limits", bpfoom.BtfKind.STRUCT)
    assert pinned.owner.state == "closed"
    loaded.close()
    with pytest.raises(bpfoom.ClosedError):
        _ = counts.flags
    with pytest.raises(bpfoom.ClosedError):
        counts.btf()
