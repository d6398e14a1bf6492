"""bpfoom.memcg_stats and `bpfoom top` against what cgroupfs shows for the same tree.

stats_test
├── a       memory.max 64M, a task holding 24 MiB of anonymous memory
├── b
│   ├── c   a task holding 8 MiB
│   └── d   empty
└── e       memory.max 16M, one allocation of 32 MiB: an OOM and an OOM kill

Usage and events must equal cgroupfs; anon and file may differ by what the
per-CPU stat caches hold back (both sides flush the same way, but the
periodic flusher may run between the two reads).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import bpfoom
from bpfoom.testing import memory_stat
from oomtest import memory_events, sigkilled

MIB = 1 << 20
# MEMCG_CHARGE_BATCH (64 pages) per CPU may sit unflushed, and the page cache moves.
STAT_SLACK = 2 * MIB
USAGE_SLACK = 1 * MIB


@pytest.fixture
def tree(cgroups, hogs, forker):
    top = cgroups("stats_test")
    groups = {"a": cgroups("stats_test/a", memory_max="64M"), "b": cgroups("stats_test/b"),
              "b/c": cgroups("stats_test/b/c"), "b/d": cgroups("stats_test/b/d"),
              "e": cgroups("stats_test/e", memory_max="16M")}
    for name, mib in (("a", 24), ("b/c", 8)):
        assert hogs(groups[name], mib).wait_for("allocated"), f"{name}'s task could not allocate"
    pid, status = forker(groups["e"]).allocate(32)
    assert sigkilled(status), f"the 32 MiB allocation in a 16M cgroup ended with {status}"
    return top, groups


def test_numbers_match_cgroupfs(tree):
    top, groups = tree
    stats = bpfoom.memcg_stats(top.path)
    by_path = {s.path: s for s in stats}
    assert stats[0].path == str(top.path) and stats[0].depth == 0
    assert set(by_path) == {str(top.path), *(str(cg.path) for cg in groups.values())}
    seen = set()
    for s in stats:  # walk order: a parent before its children
        assert os.path.dirname(s.path) in seen or s.depth == 0
        seen.add(s.path)
    for name, cg in [("", top), *groups.items()]:
        s = by_path[str(cg.path)]
        assert s.cgroup_id == cg.id == os.stat(cg.path).st_ino
        assert s.depth == (name.count("/") + 1 if name else 0), name
        assert abs(s.usage - int(cg.read("memory.current"))) <= USAGE_SLACK, name
        stat = memory_stat(cg)
        assert abs(s.anon - stat["anon"]) <= STAT_SLACK, (name, s.anon, stat["anon"])
        assert abs(s.file - stat["file"]) <= STAT_SLACK, (name, s.file, stat["file"])
        events = memory_events(cg)
        assert (s.oom, s.oom_kill) == (events["oom"], events["oom_kill"]), name
        limit = cg.read("memory.max")
        assert s.limit == (None if limit == "max" else int(limit)), name
        assert s.pressure is not None, f"{name}: PSI is on in the VM, every non-root cgroup has it"
        pressure = {line.split()[0]: dict(pair.split("=") for pair in line.split()[1:])
                    for line in cg.read("memory.pressure").splitlines()}
        assert s.pressure.some_total_us <= int(pressure["some"]["total"])  # ours may be 2 s old
        assert s.pressure.full_total_us <= int(pressure["full"]["total"])
    assert by_path[str(groups["a"].path)].anon >= 24 * MIB
    assert by_path[str(groups["b/c"].path)].anon >= 8 * MIB
    assert by_path[str(groups["b"].path)].usage >= by_path[str(groups["b/c"].path)].usage
    e = by_path[str(groups["e"].path)]
    assert e.oom >= 1 and e.oom_kill == 1
    assert by_path[str(top.path)].oom_kill == 1  # memory.events is hierarchical
    assert memory_events(groups["e"])["oom_kill"] == 1


def test_the_reader_grows_and_sees_the_tree_change(tree):
    top, groups = tree
    with bpfoom.MemcgStatsReader(top, capacity=2) as reader:
        assert reader.capacity == 2
        assert len(reader.read()) == 6
        assert reader.capacity >= 6
        groups["b/d"].remove()
        paths = [s.path for s in reader.read()]
        assert str(groups["b/d"].path) not in paths and len(paths) == 5
    with pytest.raises(bpfoom.ClosedError):
        reader.read()


def test_the_whole_hierarchy_from_the_root(tree):
    top, _ = tree
    stats = bpfoom.memcg_stats("/sys/fs/cgroup")
    assert stats[0].path == "/sys/fs/cgroup" and stats[0].pressure is None  # psi_system, not ours
    assert str(top.path) in {s.path for s in stats}
    with_memcg = [d for d, _, _ in os.walk("/sys/fs/cgroup") if d == "/sys/fs/cgroup"
                  or "memory" in Path(d, "cgroup.controllers").read_text().split()]
    assert sorted(s.path for s in stats) == sorted(with_memcg)


def test_top_once_json_lists_the_tree_largest_first(tree):
    top, groups = tree
    done = subprocess.run([sys.executable, "-m", "bpfoom", "top", "--root", str(top.path),
                           "--once", "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["schema"] == 1 and document["root"] == str(top.path)
    memcgs = document["memcgs"]
    assert [m["usage"] for m in memcgs] == sorted((m["usage"] for m in memcgs), reverse=True)
    assert memcgs[0]["path"] == str(top.path)
    assert memcgs[1]["path"] == str(groups["a"].path)  # 24 MiB: the largest child
    by_path = {m["path"]: m for m in memcgs}
    assert by_path[str(groups["e"].path)]["oom_kill"] == 1
    assert by_path[str(groups["a"].path)]["limit"] == 64 * MIB
    table = subprocess.run([sys.executable, "-m", "bpfoom", "top", "--root", str(top.path),
                            "--once", "--sort", "oom"], capture_output=True, text=True,
                           timeout=120, env={**os.environ, "COLUMNS": "80"})
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert lines[3].split()[0] == "."  # the root holds e's kill too, then e
    assert lines[4].split()[0] == "e"
