"""Fixtures for the VM harness's own tests, which boot guests and so run on the host.

The kernel is the current build of third_party/linux (built here if missing,
which takes minutes), or the bzImage named by $BPFOOM_VM_KERNEL.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from bpfoom import vm


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Inside a guest these tests would need nested VMs; they belong to the host run."""
    if os.environ.get("BPFOOM_IN_VM") != "1":
        return
    skip = pytest.mark.skip(reason="boots VMs: runs on the host, not inside the guest")
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def vm_kernel() -> Path:
    named = os.environ.get("BPFOOM_VM_KERNEL")
    return Path(named) if named else vm.default_kernel()
