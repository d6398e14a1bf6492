"""Maps opened from pins (Map.from_pinned) and the pinned-events reader built on them.

The pins are the ones `bpfoom attach` leaves for a policy that reports decisions: the
writer (tests/bpf/oom/decisions_from_tcp_cc.bpf.o, a tcp_congestion_ops that sends one
policy_event.h decision per connection it starts) gets its `events` ring buffer pinned
as `<pin>_events` and its drop counter (an array of one __u64, with BTF) as
`<pin>_events_dropped`, so this runs on any kernel with struct_ops.
"""
from __future__ import annotations

import errno
import os
import selectors
import threading

import pytest

import bpfoom
import facts
from decisions_writer import attached_writer, connect_with

CONNECTIONS = 12  # a one-page ring holds 5 decisions
@pytest.fixture
def writer(tcp_struct_ops, bpffs_dir):
    """The decisions writer attached by `bpfoom attach`, its link and event pins in bpffs_dir."""
    with attached_writer(bpffs_dir) as attached:
        yield attached


def run_in_thread(target) -> tuple[threading.Thread, list]:
    """Start ``target()`` in a thread; ``outcome`` gets what it returned or raised."""
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(target())
        except BaseException as error:  # noqa: BLE001 - reported to the test
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


# -- Map.from_pinned -----------------------------------------------------------------

def test_a_pinned_map_opens_with_the_kernels_metadata_and_btf_typed_elements(writer):
    with bpfoom.Map.from_pinned(writer.dropped) as counter:
        assert (counter.name, counter.type) == ("events_dropped", "array")
        assert (counter.key_size, counter.value_size, counter.max_entries) == (4, 8, 1)
        assert counter.info().id == counter.id and counter.fd >= 0
        assert counter[0] == 0 and counter.items() == [(0, 0)]  # ints: typed from the BTF
        assert counter.get(1, "none") == "none" and 1 not in counter
        with pytest.raises(bpfoom.KeyNotFoundError):
            counter[1]
        assert f"pinned at {str(writer.dropped)!r} loaded" in repr(counter)

        connect_with(writer.name, CONNECTIONS)  # nobody reads the ring: it overflows
        lost = counter[0]
        assert 0 < lost < CONNECTIONS  # what the BPF program counted, read through the pin


def test_a_pinned_map_owns_its_fd_and_raises_closed_error_after_close(writer):
    counter = bpfoom.Map.from_pinned(writer.dropped)
    counter.close()
    counter.close()  # idempotent
    assert counter.closed and repr(counter).endswith("closed>")
    for use in (lambda: counter[0], lambda: counter.fd, counter.keys, lambda: counter.key_size):
        with pytest.raises(bpfoom.ClosedError) as caught:
            use()
        assert caught.value.errno == errno.EBADF
    with pytest.raises(bpfoom.ClosedError):
        with counter:
            pass
    assert writer.dropped.exists()  # closing our fd leaves the pin
    with bpfoom.Map.from_pinned(writer.dropped) as again:
        assert again[0] == 0


def test_a_pinned_map_cannot_be_resized(writer):
    with bpfoom.Map.from_pinned(writer.dropped) as counter:
        with pytest.raises(bpfoom.StateError) as caught:
            counter.max_entries = 2
        assert caught.value.errno == errno.EBADFD


def test_a_missing_pin_is_path_not_found(bpffs_dir):
    with pytest.raises(bpfoom.PathNotFoundError) as caught:
        bpfoom.Map.from_pinned(bpffs_dir / "nothing_here")
    assert caught.value.errno == errno.ENOENT
    assert isinstance(caught.value, FileNotFoundError)
    assert "nothing is pinned there" in str(caught.value)


def test_a_pin_that_is_not_a_map_is_refused(writer):
    with pytest.raises(bpfoom.InvalidValueError) as caught:
        bpfoom.Map.from_pinned(writer.link)  # a struct_ops link
    assert caught.value.errno == errno.EINVAL and "not a map" in str(caught.value)
    with pytest.raises(bpfoom.InvalidValueError) as caught:
        bpfoom.Map.from_pinned(writer.link.parent)
    assert caught.value.errno == errno.EISDIR


def test_a_path_off_bpffs_is_refused_as_no_pin(tmp_path, bpf_privileges):
    plain = tmp_path / "plain"
    plain.write_text("")
    with pytest.raises(bpfoom.InvalidValueError) as caught:
        bpfoom.Map.from_pinned(plain)
    assert caught.value.errno == errno.EINVAL and "BPF filesystem" in str(caught.value)


def test_a_view_of_an_objects_map_closes_only_with_its_object(bpf_privileges):
    with bpfoom.BpfObject.open(facts.GLOBALS_OBJECT) as obj:
        obj.load()
        counts = obj.maps["counts"]
        with pytest.raises(bpfoom.StateError):
            counts.close()
        with pytest.raises(bpfoom.StateError):
            with counts:
                pass
        counts[1] = 2
        assert counts[1] == 2 and not counts.closed
    assert counts.closed


# -- RingBuffer over a pinned map ----------------------------------------------------

def test_closing_a_pinned_map_wakes_a_ring_buffer_blocked_on_it(writer):
    events = bpfoom.Map.from_pinned(writer.events)
    ring = bpfoom.RingBuffer(events, lambda raw: None)
    thread, outcome = run_in_thread(lambda: ring.poll(None))
    assert facts.blocked_in_poll(thread), f"poll(None) did not wait: {outcome}"
    events.close()
    thread.join(2)
    assert not thread.is_alive(), "poll(None) still blocked 2 s after the map's close()"
    assert len(outcome) == 1 and isinstance(outcome[0], bpfoom.ClosedError), outcome
    assert ring.closed


# -- PinnedEvents --------------------------------------------------------------------

def test_pinned_events_decode_decisions_then_report_what_the_ring_lost(writer):
    connect_with(writer.name, CONNECTIONS)
    with bpfoom.PinnedEvents(writer.events) as reader:
        events = list(reader.events(timeout=0.5))
        decisions = [e for e in events if isinstance(e, bpfoom.DecisionEvent)]
        assert decisions and all((d.policy, d.action) == ("tcp_decisions", "declined")
                                 for d in decisions)
        overrun = events[-1]
        assert isinstance(overrun, bpfoom.OverrunEvent) and events.count(overrun) == 1
        assert overrun.source == "writer"
        assert overrun.lost == overrun.total_lost == CONNECTIONS - len(decisions)
        assert reader.events_dropped == overrun.lost


def test_pinned_events_without_a_counter_pin_still_decode(writer):
    writer.dropped.unlink()  # as pins made before the counter was pinned
    connect_with(writer.name, 2)
    received: list = []
    with bpfoom.PinnedEvents(writer.events, received.append) as reader:
        assert reader.poll(5) == 2
        assert reader.events_dropped == 0
    assert [(e.policy, e.action) for e in received] == [("tcp_decisions", "declined")] * 2


def test_close_from_another_thread_ends_a_blocked_pinned_poll(writer):
    reader = bpfoom.PinnedEvents(writer.events)
    thread, outcome = run_in_thread(lambda: reader.poll(None))
    assert facts.blocked_in_poll(thread), f"poll(None) did not wait: {outcome}"
    reader.close()
    thread.join(30)  # at once; the bound only keeps a regression from hanging the run
    assert not thread.is_alive(), "poll(None) still blocked 30 s after close()"
    assert len(outcome) == 1 and isinstance(outcome[0], bpfoom.ClosedError), outcome
    with pytest.raises(bpfoom.ClosedError):
        reader.poll(0)


def test_close_from_another_thread_ends_pinned_events_iteration(writer):
    connect_with(writer.name, 1)
    reader = bpfoom.PinnedEvents(writer.events)
    first = threading.Event()
    got: list = []

    def iterate() -> list:
        for event in reader.events():
            got.append(event)
            first.set()
        return got

    thread, outcome = run_in_thread(iterate)
    assert first.wait(5), f"the waiting decision never came: {outcome}"
    assert facts.blocked_in_poll(thread), f"events() ended by itself: {outcome}"
    reader.close()
    thread.join(2)
    assert not thread.is_alive(), "events() still blocked 2 s after close()"
    assert outcome == [got] and len(got) == 1  # a clean end, after what had arrived


def test_pinned_events_fileno_is_readable_when_decisions_wait(writer):
    reader = bpfoom.PinnedEvents(writer.events)
    with reader, selectors.DefaultSelector() as selector:
        selector.register(reader.fileno(), selectors.EVENT_READ)
        assert selector.select(timeout=0) == []
        connect_with(writer.name, 2)
        assert [key.fd for key, _ in selector.select(timeout=5)] == [reader.fileno()]
        assert len(list(reader.events(timeout=0.2))) == 2
        assert selector.select(timeout=0) == []
        selector.unregister(reader.fileno())
    with pytest.raises(bpfoom.ClosedError):
        reader.fileno()
    assert os.path.exists(writer.events)  # the reader only closed its own fds
