"""The Map API's flags, pops, batch deletes and map reuse, checked against the kernel's maps.

tests/bpf/maps/map_kinds.bpf.o holds a hash, a hash whose value has a spin
lock, a queue, a stack and a hash pinned by name; every assertion reads back
what the kernel holds.
"""
from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path

import pytest

import bpfoom
from bpfoom import MapFlag
import facts

pytestmark = pytest.mark.usefixtures("bpf_privileges")


@pytest.fixture
def obj(bpffs_dir: Path) -> Iterator[bpfoom.BpfObject]:
    with bpfoom.BpfObject.open(facts.MAP_KINDS_OBJECT, pin_root_path=bpffs_dir) as opened:
        opened.load()
        yield opened


def test_noexist_refuses_an_existing_key_with_key_exists_error(obj):
    table = obj.maps["table"]
    table.update(1, 10, MapFlag.NOEXIST)
    with pytest.raises(bpfoom.KeyExistsError) as caught:
        table.update(1, 11, MapFlag.NOEXIST)
    assert caught.value.errno == errno.EEXIST and "NOEXIST" in str(caught.value)
    assert not isinstance(caught.value, KeyError)
    assert table[1] == 10


def test_exist_refuses_a_missing_key_with_key_not_found(obj):
    table = obj.maps["table"]
    with pytest.raises(bpfoom.KeyNotFoundError, match="EXIST"):
        table.update(2, 20, MapFlag.EXIST)
    assert 2 not in table
    table[2] = 20
    table.update(2, 21, MapFlag.EXIST)
    assert table[2] == 21


def test_conflicting_or_foreign_flags_are_refused_before_the_kernel(obj):
    table = obj.maps["table"]
    with pytest.raises(bpfoom.InvalidValueError):
        table.update(3, 30, MapFlag.NOEXIST | MapFlag.EXIST)
    with pytest.raises(bpfoom.InvalidValueError):
        table.update(3, 30, 1 << 10)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        table.update(3, 30, "NOEXIST")  # type: ignore[arg-type]
    with pytest.raises(bpfoom.InvalidValueError):
        table.lookup(3, MapFlag.EXIST)
    assert 3 not in table


def test_lock_flag_writes_and_reads_under_the_values_spin_lock(obj):
    locked = obj.maps["locked"]
    locked.update(7, {"value": 42}, MapFlag.LOCK)
    assert locked.lookup(7, MapFlag.LOCK)["value"] == 42
    with pytest.raises(bpfoom.InvalidValueError, match="spin_lock"):
        obj.maps["table"].update(7, 1, MapFlag.LOCK)
    assert 7 not in obj.maps["table"]


def test_queue_pops_in_order_and_stack_in_reverse(obj):
    fifo, lifo = obj.maps["fifo"], obj.maps["lifo"]
    for value in (1, 2, 3):
        fifo.push(value)
        lifo.push(value)
    assert [fifo.lookup_and_delete() for _ in range(3)] == [1, 2, 3]
    assert [lifo.lookup_and_delete() for _ in range(3)] == [3, 2, 1]
    with pytest.raises(bpfoom.KeyNotFoundError, match="empty"):
        fifo.lookup_and_delete()


def test_full_queue_refuses_a_push_unless_exist_drops_the_oldest(obj):
    fifo = obj.maps["fifo"]
    for value in range(4):
        fifo.push(value)
    with pytest.raises(bpfoom.MapFullError):
        fifo.push(99)
    fifo.push(4, MapFlag.EXIST)
    assert [fifo.lookup_and_delete() for _ in range(4)] == [1, 2, 3, 4]


def test_push_and_keyless_pop_are_for_queues_and_stacks_only(obj):
    with pytest.raises(bpfoom.InvalidValueError, match="queue and stack"):
        obj.maps["table"].push(1)
    with pytest.raises(TypeError):
        obj.maps["table"].lookup_and_delete()
    with pytest.raises(TypeError):
        obj.maps["fifo"].lookup_and_delete(0)


def test_hash_lookup_and_delete_returns_the_value_and_removes_the_key(obj):
    table = obj.maps["table"]
    table[5] = 50
    assert table.lookup_and_delete(5) == 50
    assert 5 not in table
    with pytest.raises(bpfoom.KeyNotFoundError):
        table.lookup_and_delete(5)


def test_delete_batch_deletes_every_key_in_one_call(obj):
    table = obj.maps["table"]
    table.update_batch({k: k * 10 for k in range(6)})
    assert table.delete_batch([0, 2, 4]) == 3
    assert sorted(table.keys()) == [1, 3, 5]
    with pytest.raises(bpfoom.KeyNotFoundError, match="the first 1 were deleted"):
        table.delete_batch([1, 2])
    assert sorted(table.keys()) == [3, 5]
    assert table.delete_batch([]) == 0


def test_map_pinned_by_name_under_pin_root_path_is_reused_by_a_second_object(obj, bpffs_dir):
    shared = obj.maps["shared"]
    assert shared.pin_path == str(bpffs_dir / "shared")
    assert (bpffs_dir / "shared").exists()
    shared[1] = 111
    with bpfoom.BpfObject.open(facts.MAP_KINDS_OBJECT, pin_root_path=bpffs_dir) as second:
        second.load()
        assert second.maps["shared"].id == shared.id
        assert second.maps["shared"][1] == 111
        assert obj.maps["table"].id != second.maps["table"].id


def test_reuse_makes_load_share_an_existing_map(obj, bpffs_dir):
    table = obj.maps["table"]
    table[9] = 90
    other = bpffs_dir / "other"
    other.mkdir()
    with bpfoom.BpfObject.open(facts.MAP_KINDS_OBJECT, pin_root_path=other) as second:
        second.maps["table"].reuse(table)
        second.load()
        assert second.maps["table"].id == table.id and second.maps["table"][9] == 90
    table.pin(bpffs_dir / "table_pin")
    with bpfoom.BpfObject.open(facts.MAP_KINDS_OBJECT, pin_root_path=other) as third:
        third.maps["table"].reuse(bpffs_dir / "table_pin")
        third.load()
        assert third.maps["table"].id == table.id
        with pytest.raises(bpfoom.StateError):
            third.maps["table"].reuse(table)


def test_reuse_of_a_missing_pin_or_wrong_type_is_refused(obj, bpffs_dir):
    with bpfoom.BpfObject.open(facts.MAP_KINDS_OBJECT, pin_root_path=bpffs_dir) as second:
        with pytest.raises(bpfoom.PathNotFoundError):
            second.maps["table"].reuse(bpffs_dir / "missing")
        with pytest.raises(TypeError):
            second.maps["table"].reuse(3)  # type: ignore[arg-type]
