"""The daemon config's [attach.granularity], checked by `bpfoom run --check`: accepted,
or refused with one sentence naming the entry and what to write instead."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ENTRY = """
[[attach]]
policy = "largest_leaf"
{cgroup}
[attach.granularity]
{settings}
"""


def check(tmp_path: Path, settings: str,
          cgroup: str = 'cgroup = "/sys/fs/cgroup/batch"') -> subprocess.CompletedProcess:
    config = tmp_path / "policies.toml"
    config.write_text(ENTRY.format(cgroup=cgroup, settings=settings))
    return subprocess.run([sys.executable, "-P", "-m", "bpfoom", "run", "--check", str(config)],
                          capture_output=True, text=True, timeout=120)


def test_relative_and_absolute_cgroups_with_each_choice_are_accepted(tmp_path):
    done = check(tmp_path, '"web" = "task"\n"db" = "cgroup"\n"/sys/fs/cgroup/jobs" = "subtree"')
    assert done.returncode == 0, done.stderr


def test_a_misspelt_choice_suggests_the_right_one(tmp_path):
    done = check(tmp_path, '"web" = "tsk"')
    assert done.returncode == 1
    message, = done.stderr.splitlines()
    assert "granularity of 'web' is 'tsk', not one of 'task', 'cgroup', 'subtree' " \
           "(did you mean 'task'?)" in message


def test_a_relative_cgroup_needs_the_entry_cgroup(tmp_path):
    done = check(tmp_path, '"web" = "task"', cgroup="")
    assert done.returncode == 1
    assert "relative but the entry is system-wide; give an absolute cgroup path" in done.stderr


def test_granularity_must_be_a_table(tmp_path):
    config = tmp_path / "policies.toml"
    config.write_text('[[attach]]\npolicy = "largest_leaf"\ngranularity = "task"\n')
    done = subprocess.run([sys.executable, "-P", "-m", "bpfoom", "run", "--check", str(config)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "granularity must be a table ([attach.granularity])" in done.stderr
