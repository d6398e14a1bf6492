"""Map element access after the fast path, and batch lookup/update, against the kernel.

tests/bpf/globals.bpf.o has a u32 -> u64 hash map (``counts``), a u32 ->
struct pair array map (``slots``) and a socket filter that increments
``counts[ro_u32]``; running the filter once proves the values read back are
the kernel's, not bytes Python kept.  tests/bpf/ringbuf.bpf.o has a ring
buffer map, a type the kernel cannot batch.
"""
from __future__ import annotations

import errno
import socket
import threading

import pytest

import bpfoom
import facts

pytestmark = pytest.mark.usefixtures("bpf_privileges")


@pytest.fixture
def loaded():
    with bpfoom.BpfObject.open(facts.GLOBALS_OBJECT) as obj:
        obj.rodata["ro_u32"] = 32
        obj.load()
        yield obj


def run_filter_once(obj) -> None:
    """Make the kernel run mirror_globals once (it increments counts[32])."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        receiver.bind(("127.0.0.1", 0))
        receiver.setsockopt(socket.SOL_SOCKET, facts.SO_ATTACH_BPF,
                            obj.programs["mirror_globals"].fd)
        receiver.settimeout(5)
        sender.sendto(b"ping", receiver.getsockname())
        assert receiver.recv(16) == b"ping"


class Index:
    """Not an int, but usable as one (what IntCodec accepts and cffi does not)."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value


def test_fast_path_reads_what_the_kernel_wrote(loaded):
    counts = loaded.maps["counts"]
    counts[32] = 41
    run_filter_once(loaded)
    assert counts[32] == 42
    assert counts[Index(32)] == 42  # takes the codec's path, same element
    counts[Index(5)] = Index(2**64 - 1)
    assert counts[5] == 2**64 - 1


@pytest.mark.parametrize("key,error", [(-1, bpfoom.InvalidValueError), (2**32, bpfoom.InvalidValueError),
                                       (1.0, bpfoom.InvalidTypeError), ("1", bpfoom.InvalidTypeError),
                                       (None, bpfoom.InvalidTypeError)])
def test_fast_path_refuses_bad_keys_like_the_codec(loaded, key, error):
    counts = loaded.maps["counts"]
    with pytest.raises(error) as caught:
        counts[key]
    assert "key of map 'counts'" in str(caught.value)
    with pytest.raises(error):
        counts[key] = 1


@pytest.mark.parametrize("value,error", [(-1, bpfoom.InvalidValueError), (2**64, bpfoom.InvalidValueError),
                                         (0.5, bpfoom.InvalidTypeError),
                                         (b"12345678", bpfoom.InvalidTypeError)])
def test_fast_path_refuses_bad_values_before_the_kernel(loaded, value, error):
    counts = loaded.maps["counts"]
    with pytest.raises(error):
        counts[1] = value
    assert 1 not in counts


def test_fast_path_after_close_raises_closed():
    obj = bpfoom.BpfObject.open(facts.GLOBALS_OBJECT)
    obj.load()
    counts = obj.maps["counts"]
    counts[1] = 2
    assert counts[1] == 2
    obj.close()
    with pytest.raises(bpfoom.ClosedError):
        counts[1]


def test_fast_path_is_safe_against_a_concurrent_close():
    """Readers in threads while another thread closes: values or ClosedError, nothing else."""
    obj = bpfoom.BpfObject.open(facts.GLOBALS_OBJECT)
    obj.load()
    counts = obj.maps["counts"]
    counts[3] = 9
    results: list[object] = []

    def reader() -> None:
        while True:
            try:
                assert counts[3] == 9
            except bpfoom.ClosedError:
                results.append("closed")
                return
            except BaseException as exc:  # noqa: BLE001 - reported below
                results.append(exc)
                return

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for thread in threads:
        thread.start()
    obj.close()
    for thread in threads:
        thread.join(10)
    assert results == ["closed"] * 3


def test_lookup_batch_reads_a_hash_map(loaded):
    counts = loaded.maps["counts"]
    for key in range(40):
        counts[key] = key * 1000
    run_filter_once(loaded)  # counts[32] += 1 in the kernel
    expected = {key: key * 1000 for key in range(40)} | {32: 32001}
    assert dict(counts.lookup_batch()) == expected
    for chunk in (1, 3, 64):  # several calls, the position carried between them
        pairs = counts.lookup_batch(chunk=chunk)
        assert len(pairs) == 40 and dict(pairs) == expected


def test_lookup_batch_of_an_empty_map(loaded):
    assert loaded.maps["counts"].lookup_batch() == []


def test_update_batch_writes_a_hash_map(loaded):
    counts = loaded.maps["counts"]
    assert counts.update_batch({key: 2**64 - 1 - key for key in range(64)}) == 64
    run_filter_once(loaded)
    assert counts[32] == 2**64 - 1 - 32 + 1
    assert counts[63] == 2**64 - 1 - 63
    assert len(counts.keys()) == 64
    assert counts.update_batch([(1, 5), (1, 6)]) == 2  # in order: the last one wins
    assert counts[1] == 6
    assert counts.update_batch([]) == 0


def test_update_batch_reports_a_full_map_with_how_many_were_written(loaded):
    counts = loaded.maps["counts"]
    with pytest.raises(bpfoom.MapFullError) as caught:
        counts.update_batch({key: 1 for key in range(100)})
    assert caught.value.errno == errno.E2BIG
    assert len(counts.keys()) == 64
    assert "the first 64 were written" in str(caught.value)


def test_update_batch_checks_every_element_before_the_kernel(loaded):
    counts = loaded.maps["counts"]
    with pytest.raises(bpfoom.InvalidValueError):
        counts.update_batch({1: 1, 2: -1})
    with pytest.raises(bpfoom.InvalidValueError):
        counts.update_batch({1: 1, 2**32: 1})
    assert counts.lookup_batch() == []
    with pytest.raises(TypeError):
        counts.update_batch([1, 2])


def test_batches_on_an_array_of_structs(loaded):
    slots = loaded.maps["slots"]
    assert slots.update_batch([(0, {"a": 1, "b": -1}), (3, {"a": 2**32 - 1, "b": -2**31})]) == 2
    assert slots.lookup_batch() == [(0, {"a": 1, "b": -1}), (1, {"a": 0, "b": 0}),
                                    (2, {"a": 0, "b": 0}), (3, {"a": 2**32 - 1, "b": -2**31})]
    run_filter_once(loaded)  # slots[0] = {ro_u32, data_s32}
    assert slots.lookup_batch(chunk=1)[0] == (0, {"a": 32, "b": loaded.data["data_s32"]})
    with pytest.raises(bpfoom.InvalidValueError) as caught:
        slots.update_batch({4: {"a": 1, "b": 1}})
    assert caught.value.errno == errno.E2BIG


def test_batches_on_a_ring_buffer_are_refused_with_what_to_do():
    with bpfoom.BpfObject.open(facts.RINGBUF_OBJECT) as obj:
        obj.load()
        ring = next(m for m in obj.maps.values() if m.type == "ringbuf")
        with pytest.raises(bpfoom.BatchNotSupportedError) as caught:
            ring.lookup_batch()
        assert caught.value.errno in (524, errno.EOPNOTSUPP)
        assert isinstance(caught.value, bpfoom.NotSupportedError)
        assert "RingBuffer" in str(caught.value) and "ringbuf" in str(caught.value)


def test_batches_need_a_loaded_object():
    with bpfoom.BpfObject.open(facts.GLOBALS_OBJECT) as obj:
        with pytest.raises(bpfoom.StateError):
            obj.maps["counts"].lookup_batch()
        with pytest.raises(bpfoom.StateError):
            obj.maps["counts"].update_batch({1: 1})
