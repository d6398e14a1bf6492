"""`bpfoom top`'s table from a fabricated snapshot (--replay), so its layout is tested
without the memcg kfuncs: 80 columns, order, truncation, policies."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = "/sys/fs/cgroup/work"
MIB = 1 << 20


def memcg(path: str, usage_mib: float, *, oom: int = 0, kills: int = 0, some10: float | None = 0.0,
          policies: tuple[str, ...] = (), cgroup_id: int = 0, limit: int | None = None) -> dict:
    pressure = None if some10 is None else {
        "some_avg10": some10, "some_avg60": 0.0, "some_avg300": 0.0, "some_total_us": 1234,
        "full_avg10": 0.0, "full_avg60": 0.0, "full_avg300": 0.0, "full_total_us": 12}
    return {"path": path, "cgroup_id": cgroup_id, "depth": path.count("/") - ROOT.count("/"),
            "usage": int(usage_mib * MIB), "limit": limit, "anon": int(usage_mib * MIB * 0.75),
            "file": int(usage_mib * MIB * 0.25), "oom": oom, "oom_kill": kills,
            "pressure": pressure, "policies": list(policies)}


LONG = ROOT + "/" + "/".join(["a-rather-long-slice-name.slice"] * 4) + "/leaf-service.scope"
SNAPSHOT = {
    "schema": 1, "root": ROOT, "sort": "usage", "time": 1_700_000_000.0,
    "memcgs": [
        memcg(ROOT, 3000, some10=None, cgroup_id=10, limit=8 << 30),
        memcg(ROOT + "/db", 2048, some10=1.5, oom=3, kills=1, policies=("largest_leaf",),
              cgroup_id=11),
        memcg(ROOT + "/batch", 700, some10=42.25, oom=12345, kills=999_999, cgroup_id=12),
        memcg(LONG, 0.5, some10=0.0, policies=("psi_guard(psi)", "priority"), cgroup_id=13),
    ],
    "attachments": [
        {"link_id": 1, "map_id": 2, "policy": "observe", "kind": "oom", "cgroup": None,
         "cgroup_id": 0, "pin": None},
        {"link_id": 3, "map_id": 4, "policy": "largest_leaf", "kind": "oom", "cgroup": ROOT + "/db",
         "cgroup_id": 11, "pin": None},
    ],
}


def top(tmp_path, *args: str, columns: int = 80, document: object = SNAPSHOT) -> subprocess.CompletedProcess:
    saved = tmp_path / "snapshot.json"
    saved.write_text(json.dumps(document))
    return subprocess.run([sys.executable, "-m", "bpfoom", "top", "--replay", str(saved), *args],
                          capture_output=True, text=True, env={**os.environ, "COLUMNS": str(columns)})


def rows(output: str) -> list[str]:
    return output.splitlines()[3:]


def test_the_table_fits_80_columns_and_keeps_the_leaf_of_long_paths(tmp_path):
    done = top(tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), [len(line) for line in lines]
    assert lines[0].startswith(f"bpfoom top  {ROOT}  4 memcgs  by usage")
    assert lines[1] == "system-wide policy: observe"
    assert lines[2].split() == ["CGROUP", "USAGE", "LIMIT", "ANON", "FILE", "SOME10", "OOM",
                                "KILLS", "POLICY"]
    table = rows(done.stdout)
    assert [row.split()[0] for row in table[:3]] == [".", "db", "batch"]
    assert table[0].split()[1:6] == ["2.9G", "8.0G", "2.2G", "750M", "-"]
    assert table[1].split()[-1] == "largest_leaf"
    assert table[1].split()[5:8] == ["1.50", "3", "1"]
    assert table[2].split()[5:8] == ["42.25", "12k", "1000k"]
    leaf = table[3]
    assert leaf.startswith("…") and "leaf-service.scope" in leaf
    assert "512K" in leaf and leaf.endswith("…")  # two policies do not fit: cut, marked


def test_sorting_by_pressure_and_by_oom(tmp_path):
    by_pressure = rows(top(tmp_path, "--sort", "pressure").stdout)
    assert [row.split()[0] for row in by_pressure] == ["batch", "db", by_pressure[2].split()[0], "."]
    by_oom = rows(top(tmp_path, "--sort", "oom").stdout)
    assert [row.split()[0] for row in by_oom[:2]] == ["batch", "db"]
    as_json = json.loads(top(tmp_path, "--sort", "oom", "--json").stdout)
    assert [m["cgroup_id"] for m in as_json["memcgs"]] == [12, 11, 10, 13]
    assert as_json["schema"] == 1 and as_json["sort"] == "oom"


@pytest.mark.parametrize("columns", [60, 132])
def test_other_widths_use_the_room_there_is(tmp_path, columns):
    lines = top(tmp_path, columns=columns).stdout.splitlines()
    assert all(len(line) <= columns for line in lines)
    leaf = rows("\n".join(lines))[3]
    assert ("a-rather-long" in leaf) == (columns > 100)


def test_a_file_that_is_no_snapshot_is_refused(tmp_path):
    done = top(tmp_path, document={"schema": 99})
    assert done.returncode == 1
    assert "bpfoom top --once --json" in done.stderr
    done = top(tmp_path, "--interval", "-1")
    assert done.returncode == 2 and "positive" in done.stderr
