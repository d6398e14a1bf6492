"""The VM harness's own logic that needs no guest: its errors and which kernel it picks.

No VM is booted and no kernel is built here: the kernel build is replaced by
a stand-in that records what it was asked for.
"""
from __future__ import annotations

import importlib.util
import inspect
import signal
import sys

import facts
import pytest

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


class _FakeBuild:
    """Stands in for third_party/linux/build.py: records the flavour asked for."""

    class BuildError(Exception):
        pass

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.asked: list[dict] = []

    def build(self, debug=False, *, flavour=None):
        self.asked.append({"debug": debug, "flavour": flavour})
        if flavour not in (None, "normal", "lockdep", "kasan"):
            raise self.BuildError(f"unknown kernel flavour {flavour!r}")

        class Result:
            bzimage = self.tmp_path / f"bzImage-{flavour or ('lockdep' if debug else 'normal')}"
        return Result()


def test_default_kernel_asks_the_build_for_the_flavour(tmp_path, monkeypatch):
    fake = _FakeBuild(tmp_path)
    monkeypatch.setattr(vm, "_load_from_checkout", lambda name: fake)
    assert vm.default_kernel().name == "bzImage-normal"
    assert vm.default_kernel(debug=True).name == "bzImage-lockdep"
    assert vm.default_kernel(flavour="kasan").name == "bzImage-kasan"
    with pytest.raises(vm.VmError, match="unknown kernel flavour 'fast'"):
        vm.default_kernel(flavour="fast")


def test_the_real_build_script_takes_debug_and_flavour():
    """default_kernel() calls build.build(debug=, flavour=): the script must accept both."""
    spec = importlib.util.spec_from_file_location("kernel_build", facts.REPO / "third_party/linux/build.py")
    assert spec is not None and spec.loader is not None
    build = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = build  # its dataclasses look their module up
    spec.loader.exec_module(build)
    assert build.FLAVOURS == ("normal", "lockdep", "kasan")
    for flavour in build.FLAVOURS:
        for fragment in build.config_fragments(flavour):
            assert fragment.is_file(), fragment
    parameters = inspect.signature(build.build).parameters
    assert "debug" in parameters and "flavour" in parameters


def test_the_command_line_passes_the_kernel_choice_on(monkeypatch):
    calls = []
    monkeypatch.setattr(vm, "run", lambda command, **kwargs: calls.append((command, kwargs))
                        or vm.VmRun(0, "", ""))
    assert vm.main(["--flavour", "kasan", "--", "true"]) == 0
    assert vm.main(["--debug", "--", "true"]) == 0
    assert vm.main(["--", "true"]) == 0
    assert [(c, k["flavour"], k["debug"], k["kernel"]) for c, k in calls] == [
        (["true"], "kasan", False, None), (["true"], None, True, None), (["true"], None, False, None)]


def test_the_command_line_refuses_two_kernel_choices(capsys):
    with pytest.raises(SystemExit) as stop:
        vm.main(["--kernel", "/boot/vmlinuz", "--debug", "--", "true"])
    assert stop.value.code == 2
    assert "not allowed with" in capsys.readouterr().err


def test_numa_nodes_split_memory_and_cpus_evenly():
    assert vm.numa_args("2G", 2, 2) == ["--numa", "1024M,cpus=0-0", "--numa", "1024M,cpus=1-1"]
    assert vm.numa_args("2G", 4, 2)[1] == "1024M,cpus=0-1"
    assert vm.numa_args("2G", 2, 0) == []


def test_numa_refuses_what_does_not_split():
    with pytest.raises(vm.VmError, match="split evenly"):
        vm.numa_args("2G", 3, 2)
