"""Probes of program types, map types, helpers and kfuncs: facts, never a guess.

Each positive answer is checked against the kernel doing the thing (a map of
that type created, a program of that type loaded by the test objects); an
unprivileged process must get "unknown", never "supported" or "not supported".
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

import bpfoom
from bpfoom import probe_helper, probe_kfunc, probe_map_type, probe_prog_type
import facts
from conftest import require

pytestmark = pytest.mark.usefixtures("bpf_privileges")


def test_supported_types_are_the_ones_the_kernel_loads():
    with bpfoom.BpfObject.open(facts.MAP_KINDS_OBJECT) as obj:
        for name in ("table", "fifo", "lifo"):
            assert probe_map_type(obj.maps[name].type).supported is True
    with bpfoom.BpfObject.open(facts.ATTACH_KINDS_OBJECT) as obj:
        obj.load()
        for program in obj.programs.values():
            answer = probe_prog_type(program.type).supported
            if program.type == "tracing":  # libbpf's probe cannot tell: unknown, never False
                assert answer is not False
            else:
                assert answer is True, program.type
    assert probe_map_type("ringbuf").supported is True
    assert probe_helper("kprobe", "ringbuf_output").supported is True


def test_conclusive_negatives():
    assert probe_helper("socket_filter", "override_return").supported is False
    assert probe_helper("kprobe", "no_such_helper").supported is False
    assert probe_kfunc("bpfoom_no_such_kfunc").supported is False
    assert probe_kfunc("bpf_task_acquire").supported is True


def test_answers_are_cached_and_name_what_was_checked():
    first = probe_prog_type("tracepoint")
    assert probe_prog_type("tracepoint") is first
    assert first.name == "prog_type:tracepoint" and "tracepoint" in first.detail


def test_unknown_names_and_wrong_types_are_refused():
    with pytest.raises(ValueError, match="unknown program type 'kprobes'; known: .*kprobe"):
        probe_prog_type("kprobes")
    with pytest.raises(ValueError, match="unknown map type"):
        probe_map_type("no_such_map")
    with pytest.raises(TypeError):
        probe_map_type(2)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        probe_helper("kprobe", 1)  # type: ignore[arg-type]


PROBE_UNPRIVILEGED = """
import json
from bpfoom import probe_helper, probe_map_type, probe_prog_type
print(json.dumps([f.supported for f in (probe_prog_type("kprobe"), probe_map_type("ringbuf"),
                                        probe_helper("kprobe", "ringbuf_output"))]))
"""


def test_without_privileges_every_answer_is_unknown():
    setpriv = shutil.which("setpriv")
    require(setpriv is not None, "needs setpriv (util-linux) to drop every capability")
    out = subprocess.run([setpriv, "--bounding-set=-all", "--inh-caps=-all", sys.executable,
                          "-c", PROBE_UNPRIVILEGED], capture_output=True, text=True, timeout=120,
                         cwd="/", check=True, env={**os.environ, "PYTHONSAFEPATH": "1"})
    assert json.loads(out.stdout) == [None, None, None], out.stderr
