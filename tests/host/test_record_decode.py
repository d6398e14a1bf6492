"""Decision records decode to what their bytes say, whatever the bytes.

Records of plain members are decoded in one struct.unpack_from and a
generated expression (bpfoom/bpf/btf.py); this test reads random records
with an independent decoder written from policy_event.h's layout (offsets
as the C compiler places them) and compares every field a DecisionEvent
reports.  tests/host/test_prog_test_run.py checks records the kernel wrote.
"""
from __future__ import annotations

import random
import struct

import pytest

import bpfoom

SIZE = 728  # sizeof(struct policy_event), schema 2
CANDIDATE = struct.Struct("<QQQiiII")  # struct policy_candidate, 40 bytes, from offset 184
EXCLUSIONS = struct.Struct("<II4Q4i")  # struct policy_exclusions, 56 bytes, from offset 504
ACTIONS = {1: "killed", 2: "waiting", 3: "declined", 4: "dry_run", 5: "cgroup_offline",
           6: "declared_oom"}


def random_record(chooser: random.Random) -> bytes:
    raw = bytearray(chooser.randbytes(SIZE))
    struct.pack_into("<HHHH", raw, 0, 2, SIZE, chooser.choice(list(ACTIONS)), chooser.randrange(12))
    struct.pack_into("<I", raw, 88, chooser.randrange(20))  # nr_pids
    struct.pack_into("<I", raw, 176, chooser.randrange(9))  # nr_candidates
    for slot in range(4):  # exclusion counts, some above the 4 ids kept
        struct.pack_into("<I", raw, 504 + slot * EXCLUSIONS.size, chooser.randrange(7))
    name = chooser.choice([b"largest_leaf\0", b"x" * 31 + b"\0", b"\xff\xfe\0"])
    raw[8:8 + len(name)] = name
    return bytes(raw)


@pytest.mark.parametrize("seed", range(40))
def test_every_field_is_what_the_bytes_say(seed):
    data = random_record(random.Random(seed))
    event = bpfoom.DecisionEvent.from_bytes(data)
    action, reason = struct.unpack_from("<HH", data, 4)
    time_ns, scope, oom, victim, usage = struct.unpack_from("<5Q", data, 40)
    error, candidates, nr_pids = struct.unpack_from("<iII", data, 80)
    pids = struct.unpack_from("<16i", data, 96)
    granularity_cgroup, oom_group, nr_candidates = struct.unpack_from("<QQI", data, 160)
    assert event.policy == data[8:40].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
    assert event.action == ACTIONS[action]
    assert (event.monotonic_ns, event.scope_cgroup_id, event.oom_cgroup_id,
            event.victim_cgroup_id, event.usage_bytes) == (time_ns, scope, oom, victim, usage)
    assert event.error == (-error if error else None)
    assert (event.candidates, event.nr_pids) == (candidates, nr_pids)
    assert event.pids == pids[:nr_pids]
    assert (event.granularity_cgroup_id, event.oom_group_cgroup_id) == (granularity_cgroup,
                                                                        oom_group)
    expected = []
    for slot in range(min(nr_candidates, 8)):
        cgroup_id, used, rank, pid, priority, flags, _ = CANDIDATE.unpack_from(
            data, 184 + slot * CANDIDATE.size)
        expected.append((cgroup_id, pid, used, rank, priority, bool(flags & 1)))
    assert [(c.cgroup_id, c.pid, c.usage_bytes, c.rank, c.priority, c.protected)
            for c in event.considered] == expected
    for slot, why in enumerate(("unkillable", "protected", "oom_victim", "below_minimum")):
        count, _, *rest = EXCLUSIONS.unpack_from(data, 504 + slot * EXCLUSIONS.size)
        cgroup_ids, excluded_pids = rest[:4], rest[4:]
        assert event.excluded[why].count == count
        assert event.excluded[why].first == tuple(zip(cgroup_ids, excluded_pids))[:count]


def test_a_short_record_is_refused_not_misread():
    data = random_record(random.Random(1))
    with pytest.raises(bpfoom.InvalidValueError):
        bpfoom.DecisionEvent.from_bytes(data[:SIZE - 8])
