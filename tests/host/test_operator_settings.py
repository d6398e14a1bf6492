"""Settings as operators write them: sizes with suffixes, no bool for a number, a `--help` whose
examples work, and `run --check` finding the configurations that could never run as meant.

Checked without the kernel (`run --check` opens objects, loads nothing), so
this runs anywhere, with or without bpf_oom_ops.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import bpfoom


def bpfoom_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-P", "-m", "bpfoom", *args], capture_output=True,
                          text=True, timeout=120)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policies.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, value", [
    ("16M", 16 << 20), ("16MiB", 16 << 20), ("1.5GiB", 3 << 29), ("64k", 64 << 10),
    ("512", 512), ("0x1000", 4096), ("2G", 2 << 30), ("1T", 1 << 40),
])
def test_sizes_take_suffixes(text, value):
    assert bpfoom.parse_size(text) == value


@pytest.mark.parametrize("text", ["16Q", "M", "1.5", "-4M", "1.5 bytes"])
def test_a_malformed_size_says_what_is_accepted(text):
    with pytest.raises(ValueError, match="K, M, G or T"):
        bpfoom.parse_size(text)


def test_a_config_size_with_a_suffix_passes_the_check(tmp_path):
    config = write(tmp_path, """
[[attach]]
policy = "largest_leaf"
[attach.tunables]
min_victim_bytes = "16M"
""")
    done = bpfoom_cli("run", "--check", str(config))
    assert done.returncode == 0, done.stderr


def test_a_size_takes_a_percentage_of_memory(tmp_path):
    config = write(tmp_path, """
[[attach]]
policy = "largest_leaf"
cgroup = "/sys/fs/cgroup/batch"
[attach.tunables]
min_victim_bytes = "5%"
[[attach]]
policy = "largest_task"
[attach.tunables]
min_victim_bytes = "12.5 %"
""")
    done = bpfoom_cli("run", "--check", str(config))
    assert done.returncode == 0, done.stderr


def test_bad_percentages_are_each_refused_with_what_is_accepted(tmp_path):
    config = write(tmp_path, """
[[attach]]
id = "over"
policy = "largest_leaf"
cgroup = "/sys/fs/cgroup/a"
[attach.tunables]
min_victim_bytes = "150%"
[[attach]]
id = "words"
policy = "largest_task"
cgroup = "/sys/fs/cgroup/b"
[attach.tunables]
min_victim_bytes = "five%"
[[attach]]
id = "zero"
policy = "newest_task"
cgroup = "/sys/fs/cgroup/c"
[attach.tunables]
min_victim_bytes = "0%"
protected_oom_score_adj = "5%"
""")
    done = bpfoom_cli("run", "--check", str(config))
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    accepted = 'is not a percentage of memory: give more than 0 and at most 100'
    for entry, value in (("over", "150%"), ("words", "five%"), ("zero", "0%")):
        assert [line for line in lines if f"(id {entry!r})" in line
                and f"'min_victim_bytes' = {value!r} {accepted}" in line], done.stderr
    assert [line for line in lines if "(id 'zero')" in line and "'protected_oom_score_adj' = "
            "'5%': only sizes (tunables named *_bytes) take a percentage" in line], done.stderr


def test_a_bool_is_refused_for_a_number(tmp_path):
    config = write(tmp_path, """
[[attach]]
policy = "largest_leaf"
[attach.tunables]
min_victim_bytes = true
""")
    done = bpfoom_cli("run", "--check", str(config))
    assert done.returncode == 1
    assert "min_victim_bytes" in done.stderr and "true or false is not a number" in done.stderr
    assert "give an integer (4096, 0x1000, 16M)" in done.stderr, done.stderr


def test_messages_name_kinds_in_words_not_python_type_names(tmp_path):
    """"give a int" was the message: every kind of tunable is asked for in words."""
    config = write(tmp_path, """
[[attach]]
policy = "largest_leaf"
[attach.tunables]
min_victim_bytes = "lots"
protected_oom_score_adj = true
""")
    done = bpfoom_cli("run", "--check", str(config))
    assert done.returncode == 1 and "protected_oom_score_adj" in done.stderr, done.stderr
    assert not re.search(r"\ban? (int|float|str|bool)\b", done.stderr), done.stderr


def test_the_help_examples_use_tunables_that_exist():
    text = bpfoom_cli("--help").stdout
    shipped = {info.name: info for info in bpfoom.policies()}
    used = re.findall(r"bpfoom attach (\w+) .*?--set (\w+)=", text)
    assert used, text
    for policy, tunable in used:
        assert tunable in shipped[policy].tunables, (policy, tunable)


def test_check_reports_every_configuration_that_cannot_run_as_meant(tmp_path):
    config = write(tmp_path, """
[[attach]]
id = "one"
policy = "largest_leaf"
cgroup = "/sys/fs/cgroup/batch"

[[attach]]
id = "two"
policy = "priority"
cgroup = "/sys/fs/cgroup/batch/"

[[attach]]
id = "guard"
policy = "psi_guard"
cgroup = "/sys/fs/cgroup/batch"
""")
    done = bpfoom_cli("run", "--check", str(config))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert any("'two'" in line and "'one'" in line and "both attach a bpf_oom_ops to "
               "/sys/fs/cgroup/batch" in line for line in lines), lines
    assert any("'guard'" in line and "psi_guard" in line and "system-wide" in line
               for line in lines), lines
    assert len(lines) == 2, lines


def test_check_refuses_an_empty_config(tmp_path):
    done = bpfoom_cli("run", "--check", str(write(tmp_path, "[daemon]\nlog_format = 'json'\n")))
    assert done.returncode == 1
    assert "no [[attach]] entry" in done.stderr


def test_attach_and_detach_take_a_unit():
    """`--unit` resolves through systemd; without it, the command says so (not a usage error)."""
    for command in (["attach", "largest_leaf", "--unit", "nginx.service"],
                    ["detach", "--unit", "nginx.service"]):
        done = bpfoom_cli(*command)
        assert done.returncode == 1, done.stderr
        if bpfoom.targets.systemd_running() is not None:  # no systemd here: that is the reason
            assert "systemd" in done.stderr, done.stderr
        assert "unrecognized arguments" not in done.stderr


def test_a_drop_in_directory_adds_entries(tmp_path):
    config = write(tmp_path, '[daemon]\nlog_format = "json"\n\n[[attach]]\nid = "node"\n'
                             'policy = "largest_leaf"\n')
    drop_ins = tmp_path / "policies.d"
    drop_ins.mkdir()
    (drop_ins / "20-batch.toml").write_text('[[attach]]\nid = "batch"\npolicy = "largest_leaf"\n'
                                            'cgroup = "/sys/fs/cgroup/batch"\n')
    (drop_ins / "10-web.toml").write_text('[[attach]]\nid = "web"\npolicy = "priority"\n'
                                          'cgroup = "/sys/fs/cgroup/web"\n')
    (drop_ins / "README").write_text("not a .toml: ignored\n")
    done = bpfoom_cli("run", "--check", str(config))
    assert done.returncode == 0, done.stderr
    assert "3 policies" in done.stdout
    ids = [line.split(":")[0].strip() for line in done.stdout.splitlines()[1:]]
    assert ids == ["node", "web", "batch"]  # the file first, then the drop-ins by name

    (drop_ins / "30-bad.toml").write_text('[daemon]\non_exit = "keep"\n\n[[attach]]\nid = "node"\n'
                                          'policy = "largest_leaf"\ncgroup = "/sys/fs/cgroup/x"\n')
    done = bpfoom_cli("run", "--check", str(config))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert any("30-bad.toml" in line and "only [[attach]]" in line for line in lines), lines
    assert any("'node'" in line and "30-bad.toml" in line for line in lines), lines


def test_dry_run_is_a_setting_of_every_shipped_oom_policy(tmp_path):
    entries = "".join(f'[[attach]]\nid = "{name}"\npolicy = "{name}"\ncgroup = "/sys/fs/cgroup/{name}"\n'
                      'dry_run = true\n' for name in ("largest_leaf", "priority", "largest_task",
                                                      "newest_task"))
    done = bpfoom_cli("run", "--check", str(write(tmp_path, entries)))
    assert done.returncode == 0, done.stderr
    shipped = {info.name: info for info in bpfoom.policies()}
    assert shipped["largest_leaf"].tunables["dry_run"].default is False
    done = bpfoom_cli("run", "--check", str(write(tmp_path, '[[attach]]\npolicy = "largest_leaf"\n'
                                                            'dry_run = "yes"\n')))
    assert done.returncode == 1 and "dry_run must be true or false" in done.stderr


def test_per_cgroup_settings_and_cgroup_paths_pass_the_check(tmp_path):
    config = write(tmp_path, """
[[attach]]
id = "classes"
policy = "priority"
cgroup = "/sys/fs/cgroup/workload"
[attach.cgroup_settings]
"batch" = { priority = -10 }
"db.service" = { priority = 100, protected = true }

[[attach]]
id = "guard"
policy = "psi_guard"
[attach.tunables]
guarded_cgroups = ["/sys/fs/cgroup/workload/web", "/sys/fs/cgroup/workload/db.service"]
guard_children_of = "/sys/fs/cgroup/workload"
""")
    done = bpfoom_cli("run", "--check", str(config))
    assert done.returncode == 0, done.stderr


def test_cgroup_settings_are_refused_where_the_policy_has_none(tmp_path):
    config = write(tmp_path, """
[[attach]]
id = "leaf"
policy = "largest_leaf"
cgroup = "/sys/fs/cgroup/workload"
[attach.cgroup_settings]
"batch" = { priority = "high" }
""")
    done = bpfoom_cli("run", "--check", str(config))
    assert done.returncode == 1
    assert "priority of 'batch' must be an integer" in done.stderr
    config.write_text(config.read_text().replace('"high"', "3"))
    done = bpfoom_cli("run", "--check", str(config))
    assert done.returncode == 1 and "largest_leaf has no cgroup_settings map" in done.stderr
