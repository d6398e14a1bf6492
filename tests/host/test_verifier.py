"""A program the verifier rejects: the error carries the kernel's log, nothing stays loaded."""
from __future__ import annotations

import errno

import pytest

import bpfoom
import facts

pytestmark = pytest.mark.usefixtures("bpf_privileges")


def test_rejection_surfaces_the_verifier_log():
    with bpfoom.BpfObject.open(facts.REJECTED_OBJECT) as obj:
        with pytest.raises(bpfoom.VerifierError) as caught:
            obj.load()
    error = caught.value
    assert error.errno == errno.EACCES
    assert "invalid access to map value, value_size=8 off=64 size=8" in error.log
    assert "read_past_value" in str(error)
    assert isinstance(error, OSError)


def bpf_fds() -> list[str]:
    return sorted(t for t in facts.open_fds().values() if t.startswith("anon_inode:bpf"))


def test_a_failed_load_leaves_no_map_or_program_open():
    before = bpf_fds()
    with bpfoom.BpfObject.open(facts.REJECTED_OBJECT) as obj:
        with pytest.raises(bpfoom.VerifierError):
            obj.load()
        assert obj.state != "loaded"
        assert bpf_fds() == before  # even while the object is still open


def test_verifier_log_on_success_when_asked():
    with bpfoom.BpfObject.open(facts.GLOBALS_OBJECT) as obj:
        obj.load(log_level=2)
        log = obj.programs["mirror_globals"].log
    assert "processed" in log and "insns" in log
