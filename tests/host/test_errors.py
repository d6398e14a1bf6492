"""Errors carry an errno, a sentence saying what to do, and the builtin they resemble."""
from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

import bpfoom
import facts
from conftest import require


def test_error_text_names_errno_and_says_what_to_do(tmp_path):
    with pytest.raises(bpfoom.PathNotFoundError) as caught:
        bpfoom.BpfObject.open(tmp_path / "absent.bpf.o")
    error = caught.value
    assert error.errno == errno.ENOENT
    assert str(error).startswith(f"[Errno {errno.ENOENT} ENOENT] ")
    assert len(error.strerror.split()) >= 4  # a sentence, not a bare code
    assert error.log is None


def test_every_state_error_carries_an_errno_its_documentation_names():
    """StateError's doc lists EBADFD (wrong side of load), EINVAL (never fits), EDEADLK, EBUSY."""
    import ast

    allowed = {"EBADFD", "EINVAL", "EDEADLK", "EBUSY"}
    wrong = []
    for path in sorted((facts.REPO / "bpfoom").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "StateError":
                code = node.args[0] if node.args else None
                name = code.attr if isinstance(code, ast.Attribute) else ast.unparse(code)
                if name not in allowed:
                    wrong.append(f"{path.relative_to(facts.REPO)}:{node.lineno}: {name}")
    assert not wrong, f"StateError raised with an errno its doc does not name: {wrong}"


def test_the_hierarchy_matches_builtins():
    assert issubclass(bpfoom.BpfError, OSError)
    assert issubclass(bpfoom.PermissionDeniedError, PermissionError)
    assert issubclass(bpfoom.PathNotFoundError, FileNotFoundError)
    assert issubclass(bpfoom.PathNotFoundError, bpfoom.NotFoundError)
    for name in ("MapNotFoundError", "ProgramNotFoundError", "VariableNotFoundError",
                 "KeyNotFoundError"):
        cls = getattr(bpfoom, name)
        assert issubclass(cls, KeyError) and issubclass(cls, bpfoom.NotFoundError)
        assert not issubclass(cls, FileNotFoundError), f"except FileNotFoundError would swallow {name}"
    assert issubclass(bpfoom.ClosedError, ValueError)
    assert issubclass(bpfoom.InvalidValueError, ValueError)
    assert issubclass(bpfoom.StateError, RuntimeError)
    for name in ("NotSupportedError", "BusyError", "ObjectFileError", "VerifierError", "CgroupError"):
        assert issubclass(getattr(bpfoom, name), bpfoom.BpfError)


def test_a_missing_map_key_is_a_key_error_not_a_missing_file(bpf_privileges):
    with bpfoom.BpfObject.open(facts.GLOBALS_OBJECT) as obj:
        obj.load()
        try:
            obj.maps["counts"][12345]
        except FileNotFoundError:
            pytest.fail("a missing map key was caught as a missing file")
        except KeyError as error:
            assert isinstance(error, bpfoom.KeyNotFoundError) and error.errno == errno.ENOENT
        with pytest.raises(KeyError):
            del obj.maps["counts"][12345]


def test_missing_paths_are_missing_files(tmp_path, bpf_privileges):
    for missing in (lambda: bpfoom.BpfObject.open(tmp_path / "absent.bpf.o"),
                    lambda: bpfoom.Link.from_pinned(tmp_path / "absent")):
        with pytest.raises(FileNotFoundError) as caught:
            missing()
        assert isinstance(caught.value, bpfoom.PathNotFoundError)


def test_state_errors_carry_a_state_errno(bpf_privileges):
    with bpfoom.BpfObject.open(facts.GLOBALS_OBJECT) as obj:
        with pytest.raises(bpfoom.StateError) as caught:
            obj.maps["counts"][1]
        assert caught.value.errno == errno.EBADFD
        assert not isinstance(caught.value, PermissionError)


def load_without_privileges(image: bytes) -> dict:
    """Fork; the child drops to nobody and asks the kernel to load a program; report what it got."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        os.close(read_end)
        outcome = {"kind": "loaded"}
        try:
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            with bpfoom.BpfObject.open(image) as obj:
                obj.load()
        except bpfoom.BpfError as error:
            outcome = {"kind": type(error).__name__, "errno": error.errno, "text": str(error)}
        except BaseException as error:  # report anything else too, then exit
            outcome = {"kind": type(error).__name__, "text": str(error)}
        os.write(write_end, json.dumps(outcome).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        report = reader.read()
    os.waitpid(pid, 0)
    return json.loads(report)


def test_unprivileged_load_is_permission_denied(bpf_privileges):
    if Path("/proc/sys/kernel/unprivileged_bpf_disabled").read_text().strip() == "0":
        require(False, "unprivileged BPF is enabled here; a non-root load may succeed")
    outcome = load_without_privileges(facts.GLOBALS_OBJECT.read_bytes())
    assert outcome["kind"] == "PermissionDeniedError", outcome
    assert outcome["errno"] == errno.EPERM
    assert "root" in outcome["text"] or "CAP_" in outcome["text"]
