"""Decisions explained: the candidates a policy ranked, with the sizes the kernel reports,
what it excluded and why, read from the event stream, the history and `bpfoom explain`."""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import bpfoom
from bpfoom.testing import memory_stat
from oomtest import sigkilled
from policytest import collect, holders, kills, overrun
from policytest import load_policy  # noqa: F401 (a fixture)

MIB = 1 << 20

# Joins the cgroup, writes MiB of page cache (a tmpfs file: shmem, which
# the memcg counts as file pages and, without swap, cannot reclaim), exits.
_CACHE_WRITER = r"""
import sys
procs, path, mib = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(procs, "w") as f:
    f.write(str(__import__("os").getpid()))
with open(path, "wb") as f:
    for _ in range(mib):
        f.write(b"c" * (1 << 20))
"""


def write_page_cache(cg: bpfoom.Cgroup, directory: Path, mib: int) -> None:
    subprocess.run([sys.executable, "-S", "-c", _CACHE_WRITER, str(cg.path / "cgroup.procs"),
                    str(directory / "cache"), str(mib)], check=True, timeout=120)


def test_an_explanation_lists_the_real_candidates(load_policy, cgroups, hogs, kernel_log):
    """Three leaves, one with page cache: ranked by usage minus cache, sizes as memory.current says."""
    policy = load_policy("largest_leaf")
    top = cgroups("explain", memory_max="96M")
    leaves = {name: cgroups(f"explain/{name}") for name in ("big", "mid", "cached", "alloc")}
    policy.attach(cgroup=top)
    cache_dir = Path(tempfile.mkdtemp(prefix="bpfoom-cache-"))
    subprocess.run(["mount", "-t", "tmpfs", "bpfoom-cache", str(cache_dir)], check=True)
    try:
        write_page_cache(leaves["cached"], cache_dir, 12)
        started = holders(hogs, leaves, {"big": 30, "mid": 20, "cached": 16})
        # By usage `cached` (28 MiB) is larger than `mid`; without its page cache (16 MiB) smaller.
        before = {name: (int(leaves[name].read("memory.current")), memory_stat(leaves[name])["file"])
                  for name in ("big", "mid", "cached")}
        assert before["cached"][1] >= 11 * MIB, f"the page cache was not charged: {before}"
        allocator = overrun(hogs, leaves["alloc"], 24)
        assert sigkilled(started["big"].wait_dead())
        decision, = kills(collect(policy, kills))

        assert decision.victim_cgroup_id == leaves["big"].id
        assert decision.candidates == 3
        assert [c.cgroup_id for c in decision.considered] == [
            leaves[name].id for name in ("big", "mid", "cached")]
        for name, candidate in zip(("big", "mid", "cached"), decision.considered):
            current, file = before[name]
            assert candidate.pid == 0
            assert abs(candidate.usage_bytes - current) <= 2 * MIB, (name, candidate, before)
            assert abs(candidate.rank - (current - file)) <= 2 * MIB, (name, candidate, before)
        cached = decision.considered[2]
        assert cached.usage_bytes - cached.rank >= 11 * MIB  # its page cache did not count
        assert decision.usage_bytes == decision.considered[0].rank
        unkillable = decision.excluded["unkillable"]
        assert (unkillable.count, unkillable.first) == (1, ((leaves["alloc"].id, allocator.pid),))
        assert all(e.count == 0 for why, e in decision.excluded.items() if why != "unkillable")
        assert (decision.granularity, decision.granularity_cgroup_id) == ("cgroup", 0)
        assert decision.oom_group_cgroup_id == 0
        assert decision.to_json()["excluded"]["unkillable"]["first"] == [
            {"cgroup_id": leaves["alloc"].id, "pid": allocator.pid}]

        # The history holds the same decision (then perhaps waits for the victim), read
        # without consuming anything.
        history = policy.decisions()
        assert decision in history
        assert all(e.action == "waiting" for e in history[history.index(decision) + 1:])

        # `bpfoom explain` renders it, from another process.
        shown = subprocess.run([sys.executable, "-P", "-m", "bpfoom", "explain", "--json"],
                               capture_output=True, text=True, timeout=300)
        assert shown.returncode == 0, shown.stderr
        document = json.loads(shown.stdout)
        shown_kills = [d["decision"] for d in document["decisions"]
                       if d["attachment"]["cgroup_id"] == top.id and d["decision"]["action"] == "killed"]
        assert shown_kills == [{**decision.to_json(), "time": shown_kills[0]["time"]}]
        text = subprocess.run([sys.executable, "-P", "-m", "bpfoom", "explain", "--last", "16"],
                              capture_output=True, text=True, timeout=300)
        assert text.returncode == 0, text.stderr
        for name in ("big", "mid", "cached"):
            assert str(leaves[name].path) in text.stdout, text.stdout
        assert "1 unkillable" in text.stdout and f"pid {allocator.pid}" in text.stdout
        assert "rule largest_leaf" in text.stdout

        # Neither took the decision from the event stream: a second OOM's event still follows.
        allocator.stop()
        overrun(hogs, leaves["alloc"], 56)  # 20 + 28 + 56 MiB > 96: `mid` ranks above `cached`
        assert sigkilled(started["mid"].wait_dead())
        again, = kills(collect(policy, kills))
        assert again.victim_cgroup_id == leaves["mid"].id
    finally:
        (cache_dir / "cache").unlink(missing_ok=True)
        subprocess.run(["umount", str(cache_dir)], check=True)
        cache_dir.rmdir()

