"""The daemon config's [attach.granularity]: parsed, checked, refused with a sentence."""
from __future__ import annotations

import pytest

from bpfoom.daemon_config import ConfigError, apply_granularity, parse_config

ENTRY = """
[[attach]]
policy = "largest_leaf"
{cgroup}
[attach.granularity]
{settings}
"""


def config(settings: str, cgroup: str = 'cgroup = "/sys/fs/cgroup/batch"'):
    return parse_config(ENTRY.format(cgroup=cgroup, settings=settings))


def test_paths_are_taken_under_the_entry_cgroup_unless_absolute():
    entry, = config('"web" = "task"\n"/sys/fs/cgroup/jobs" = "subtree"').entries
    assert entry.granularity == {"/sys/fs/cgroup/batch/web": "task", "/sys/fs/cgroup/jobs": "subtree"}


def test_a_misspelt_choice_suggests_the_right_one():
    with pytest.raises(ConfigError, match="'tsk', not one of 'task', 'cgroup', 'subtree' "
                                          r"\(did you mean 'task'\?\)"):
        config('"web" = "tsk"')


def test_a_relative_path_needs_the_entry_cgroup():
    with pytest.raises(ConfigError, match="relative but the entry is system-wide"):
        config('"web" = "task"', cgroup="")


def test_granularity_must_be_a_table():
    with pytest.raises(ConfigError, match=r"granularity must be a table"):
        parse_config('[[attach]]\npolicy = "largest_leaf"\ngranularity = "task"\n')


def test_a_granularity_for_an_object_without_one_is_refused():
    entry, = config('"web" = "task"').entries
    with pytest.raises(ConfigError, match="applies only to bpf_oom_ops policies"):
        apply_granularity(None, entry)  # what a non-policy struct_ops object loads as
    plain, = config("").entries
    apply_granularity(None, plain)()  # nothing asked: nothing to refuse, nothing to undo
