"""The VM harness's own logic that needs no guest: its errors and which kernel it picks.

No VM is booted and no kernel is built here: the kernel build is replaced by
a stand-in that records what it was asked for.
"""
from __future__ import annotations

import signal

from bpfoom.testing import vm


def test_vm_error_keeps_the_output_and_the_kernel_log():
    err = vm.VmError("timed out", "the command's output", "the guest's dmesg")
    assert str(err) == "timed out"
    assert err.output == "the command's output"
    assert err.kernel_log == "the guest's dmesg"
    assert isinstance(err, RuntimeError)


def test_vm_interrupted_names_the_signal():
    stopped = vm.VmInterrupted(signal.SIGTERM)
    assert stopped.signum == signal.SIGTERM
    assert "SIGTERM" in str(stopped)
    assert not isinstance(stopped, Exception)  # like KeyboardInterrupt: not swallowed by except Exception
