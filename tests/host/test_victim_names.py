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
