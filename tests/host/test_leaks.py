"""1,000 open/load/attach/detach/close cycles leave fds and memory where they were."""
from __future__ import annotations

import gc

import pytest

import bpfoom
import facts

CYCLES = 1000
WARM_UP = 50
RSS_BUDGET = 5 * 1024 * 1024


def one_cycle(cc_name: str) -> None:
    obj = bpfoom.BpfObject.open(facts.TCP_CC_OBJECT)
    obj.struct_ops["bpfoom_demo"].fields["name"] = cc_name
    obj.load()
    link = obj.struct_ops["bpfoom_demo"].attach()
    link.detach()
    link.close()
    obj.close()


@pytest.mark.usefixtures("tcp_struct_ops")
def test_thousand_cycles_leak_no_fd_and_little_memory():
    cc_name = facts.unique_cc_name()
    for _ in range(WARM_UP):  # let allocators and caches reach their steady state
        one_cycle(cc_name)
    gc.collect()
    fds_before = facts.open_fds()
    rss_before = facts.rss_bytes()
    for _ in range(CYCLES):
        one_cycle(cc_name)
    gc.collect()
    assert facts.open_fds() == fds_before
    growth = facts.rss_bytes() - rss_before
    assert growth < RSS_BUDGET, f"RSS grew by {growth / 2**20:.2f} MiB over {CYCLES} cycles"
    assert cc_name not in facts.available_congestion_control()
