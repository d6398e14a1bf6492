"""A victim's cgroup is named without CAP_DAC_READ_SEARCH.

The shipped unit and the DaemonSet grant CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN only;
opening a cgroup by id (open_by_handle_at) needs CAP_DAC_READ_SEARCH, and the unit's
seccomp filter (@system-service) does not list that call.  Kill lines, the journal and
Kubernetes Events still name the victim's cgroup, unit and pod.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from bpfoom import daemon
from conftest import require

DESCRIBE = """
import json, sys
from bpfoom import Cgroup
from bpfoom.daemon.victim import describe
cgroup_id = int(sys.argv[1])
try:
    Cgroup.from_id(cgroup_id).close()
    refused = False
except PermissionError:
    refused = True
print(json.dumps({"refused": refused, "described": describe(cgroup_id)}))
"""


def test_a_victim_is_named_without_cap_dac_read_search(cgroup2_dir: Path):
    setpriv = shutil.which("setpriv")
    require(setpriv is not None, "needs setpriv (util-linux) to drop CAP_DAC_READ_SEARCH")
    unit = cgroup2_dir / "shop.service"
    unit.mkdir()
    try:
        cgroup_id = os.stat(unit).st_ino
        done = subprocess.run(
            [str(setpriv), "--bounding-set=-dac_read_search", "--inh-caps=-dac_read_search",
             sys.executable, "-c", DESCRIBE, str(cgroup_id)],
            capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert result["refused"], "the kernel let open_by_handle_at through: the test proves nothing"
        assert result["described"] == {"victim_cgroup": str(unit), "victim_unit": "shop.service"}
    finally:
        unit.rmdir()


def test_a_cgroup_gone_before_its_kill_is_read_is_named_if_the_daemon_attached_there(
        cgroup2_dir: Path):
    unit, other = cgroup2_dir / "app.service", cgroup2_dir / "other.service"
    unit.mkdir()
    other.mkdir()
    known = daemon.KnownCgroups()
    known.remember([unit, cgroup2_dir / "not-there"])
    unit_id, other_id = os.stat(unit).st_ino, os.stat(other).st_ino
    unit.rmdir()  # systemd removes a unit's cgroup once its process died
    other.rmdir()
    assert not unit.exists()
    assert daemon.describe(unit_id, known=known.paths) == {"victim_cgroup": str(unit),
                                                    "victim_unit": "app.service"}
    assert daemon.describe(other_id, known=known.paths) == {}  # never attached there: gone is gone
    assert daemon.describe(unit_id) == {}


def test_known_cgroups_keep_the_latest(cgroup2_dir: Path):
    paths = [cgroup2_dir / f"c{n}" for n in range(3)]
    for path in paths:
        path.mkdir()
    try:
        known = daemon.KnownCgroups(limit=2)
        known.remember(paths)
        known.remember(paths[:1])  # seen again: the newest
        assert sorted(known.paths.values()) == [str(paths[0]), str(paths[2])]
    finally:
        for path in paths:
            path.rmdir()
