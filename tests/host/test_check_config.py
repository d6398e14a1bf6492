"""`bpfoom run --check CONFIG`: everything that can be checked without the kernel, every problem
on its own line, exit status 1; a sound config exits 0, even with no capability at all.

Objects are opened (not loaded): a file that is not a BPF object, a missing
struct_ops map, a tunable's name, type (text where a number is wanted) and
range (its C type's) are all found here, before anything reaches the kernel.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


import facts
from conftest import require


def check(path: Path, *prefix: str) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, sys.executable, "-P", "-m", "bpfoom", "run", "--check",
                           str(path)], capture_output=True, text=True, timeout=120)


def problems(done: subprocess.CompletedProcess) -> list[str]:
    assert done.returncode == 1, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert all(line.startswith("bpfoom: [Errno ") for line in lines), done.stderr
    return lines


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policies.toml"
    path.write_text(text)
    return path


def test_a_string_where_a_number_is_wanted_is_an_error(tmp_path):
    config = write(tmp_path, """
[[attach]]
policy = "largest_leaf"
cgroup = "/sys/fs/cgroup/batch"
[attach.tunables]
min_victim_bytes = "sixteen megabytes"
""")
    [line] = problems(check(config))
    assert "EINVAL" in line and "[[attach]] #1" in line
    assert "cannot set tunable 'min_victim_bytes' of policy 'largest_leaf'" in line
    assert "'sixteen megabytes'" in line


def test_every_problem_is_reported_each_on_its_own_line(tmp_path):
    not_bpf = tmp_path / "not_bpf.bpf.o"
    not_bpf.write_text("just text\n")
    config = write(tmp_path, f"""
[daemon]
log_fromat = "json"
pin_dir = "pins"

[[attach]]
id = "types"
policy = "largest_leaf"
[attach.tunables]
min_victim_bytes = -1
exclude_page_cache = 7
victim_wait = 100

[[attach]]
id = "cc"
policy = "{facts.TCP_CC_OBJECT}"
map = "bpfoom_demo"
[attach.tunables]
min_ssthresh = 99999999999
[attach.granularity]
"/sys/fs/cgroup/x" = "task"

[[attach]]
id = "notbpf"
policy = "not_bpf.bpf.o"

[[attach]]
id = "nomap"
policy = "{facts.TCP_CC_OBJECT}"

[[attach]]
id = "targets"
policy = "largest_leaf"
unit = "nginx"

[[attach]]
id = "both"
policy = "largest_leaf"
cgroup = "/sys/fs/cgroup/a"
unit = "a.service"

[[attach]]
id = "pattern"
policy = "largest_leaf"
cgroup = "workload.slice/*.service"

[[attach]]
id = "qos"
policy = "largest_leaf"
kubernetes = {{ qos = "bestefort" }}

[[attach]]
id = "pod"
policy = "largest_leaf"
kubernetes = {{ pod = "Shop/web-0" }}

[[attach]]
id = "uid"
policy = "largest_leaf"
kubernetes = {{ pod_uid = "not-a-uid" }}

[[attach]]
id = "grain"
policy = "largest_leaf"
cgroup = "/sys/fs/cgroup/batch"
[attach.granularity]
"web" = "tsk"
""")
    lines = problems(check(config))
    expected = [
        ("[daemon]", "unknown key 'log_fromat' (did you mean 'log_format'?)"),
        ("[daemon]", "pin_dir = 'pins' must be an absolute path"),
        ("'types'", "takes 0..1125899906842624 (inclusive); -1 is outside that range"),
        ("'types'", "7 does not fit bool"),
        ("'types'", "no tunable 'victim_wait' (did you mean 'victim_wait_ms'?)"),
        ("'cc'", "min_ssthresh"),
        ("'cc'", "takes no per-cgroup granularity"),
        ("'notbpf'", "not a proper ELF object"),
        ("'nomap'", "2 link-based struct_ops maps (bpfoom_demo, bpfoom_demo2); choose one"),
        ("#5", "'nginx' is not a systemd unit with a cgroup"),
        ("#6", "give one target, not cgroup and unit"),
        ("#7", "cgroup = 'workload.slice/*.service' must be an absolute path"),
        ("#8", "qos = 'bestefort' is not one of 'guaranteed', 'burstable', 'besteffort' "
               "(did you mean 'besteffort'?)"),
        ("#9", "'Shop/web-0' is not NAMESPACE/NAME of a pod"),
        ("#10", "'not-a-uid' is not a pod UID"),
        ("#11", "granularity of 'web' is 'tsk'"),
    ]
    for where, words in expected:
        assert [line for line in lines if where in line and words in line], (where, words, lines)
    assert len(lines) == len(expected), lines


def test_a_sound_config_with_every_kind_of_target_passes_without_any_capability(tmp_path):
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        require(False, "needs setpriv (util-linux) to drop every capability")
    config = write(tmp_path, f"""
[daemon]
pin_dir = "/sys/fs/bpf/bpfoom/check"
metrics_file = "/var/lib/node_exporter/textfile_collector/bpfoom.prom"

[[attach]]
id = "fallback"
policy = "largest_leaf"
[attach.tunables]
min_victim_bytes = "0x1000000"          # text is converted as --set converts it

[[attach]]
id = "services"
policy = "largest_leaf"
cgroup = "/sys/fs/cgroup/workload.slice/*.service"
[attach.granularity]
"worker" = "task"                       # under each matching service

[[attach]]
id = "nginx"
policy = "largest_task"
unit = "nginx.service"

[[attach]]
id = "besteffort"
policy = "largest_leaf"
kubernetes = {{ qos = "besteffort" }}

[[attach]]
id = "web"
policy = "largest_leaf"
kubernetes = {{ pod = "shop/web-0", root = "/sys/fs/cgroup" }}

[[attach]]
id = "cc"
policy = "{facts.TCP_CC_OBJECT}"
map = "bpfoom_demo"
name = "checked_cc"
[attach.tunables]
min_ssthresh = 7
""")
    no_capabilities = (setpriv, "--inh-caps=-all", "--bounding-set=-all")
    done = check(config, *no_capabilities)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"{config}: 6 policies, pinned under /sys/fs/bpf/bpfoom/check",
        "  fallback: largest_leaf system-wide",
        "  services: largest_leaf on /sys/fs/cgroup/workload.slice/*.service",
        "  nginx: largest_task on unit nginx.service",
        "  besteffort: largest_leaf on kubernetes qos=besteffort",
        "  web: largest_leaf on kubernetes pod=shop/web-0 under /sys/fs/cgroup",
        f"  cc: {facts.TCP_CC_OBJECT} system-wide",
    ]
