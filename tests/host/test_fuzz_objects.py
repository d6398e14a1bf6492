"""Untrusted .bpf.o input: truncated and mutated objects through BpfObject.open() and load().

A root daemon loads whatever .bpf.o a config names.  Each input here is a
real object cut short or with bytes overwritten (in the ELF header, the
section headers, BTF, relocations, the struct_ops section), opened and
loaded in a child interpreter; the child must finish every input with a
result or a BpfError, never a crash (a signal) or another exception.  The
run is short and seeded (the same inputs every time); BPFOOM_FUZZ_INPUTS
sets a longer one (the README has the counts of the last long run).
"""
from __future__ import annotations

import json
import os
import random
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import bpfoom
import facts

pytestmark = pytest.mark.usefixtures("bpf_privileges")

SEEDS = (facts.GLOBALS_OBJECT, facts.RINGBUF_OBJECT, facts.TCP_CC_OBJECT)
INPUTS = int(os.environ.get("BPFOOM_FUZZ_INPUTS", "150"))

CHILD = textwrap.dedent("""
    import json, sys
    import bpfoom

    outcomes = {"loaded": 0, "refused": 0}
    for path in open(sys.argv[1]).read().split():
        print(path, flush=True)  # the last line names the input a crash happened on
        try:
            with bpfoom.BpfObject.open(path) as obj:
                obj.load()
            outcomes["loaded"] += 1
        except bpfoom.BpfError:
            outcomes["refused"] += 1
        except Exception as error:
            print("UNEXPECTED", path, type(error).__name__, error, flush=True)
            raise SystemExit(3)
    print("OUTCOMES", json.dumps(outcomes), flush=True)
""")


def sections(data: bytes) -> list[tuple[int, int]]:
    """(offset, size) of each section of a little-endian ELF64 file."""
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    found = []
    for i in range(shnum):
        base = shoff + i * shentsize
        if base + 64 > len(data):
            break
        offset, size = struct.unpack_from("<QQ", data, base + 0x18)
        if size and offset + size <= len(data):
            found.append((offset, size))
    return found


def mutants(count: int, seed: int = 26) -> list[bytes]:
    """Truncations and byte overwrites, aimed at the headers and at every section in turn."""
    rng = random.Random(seed)
    originals = [path.read_bytes() for path in SEEDS]
    out = []
    for n in range(count):
        data = bytearray(originals[n % len(originals)])
        how = n % 4
        if how == 0:  # cut short anywhere
            out.append(bytes(data[:rng.randrange(len(data))]))
            continue
        if how == 1:  # the ELF header or the section header table
            shoff, = struct.unpack_from("<Q", data, 0x28)
            area = (0, 64) if rng.random() < 0.5 else (shoff, len(data) - shoff)
        else:  # inside one section: BTF, relocations, programs, struct_ops data, ...
            area = rng.choice(sections(bytes(data)))
        for _ in range(rng.randint(1, 8)):
            at = area[0] + rng.randrange(max(area[1], 1))
            if at < len(data):
                data[at] = rng.choice((0, 0xFF, rng.randrange(256)))
        out.append(bytes(data))
    return out


def test_mutated_objects_never_crash_the_interpreter(tmp_path: Path):
    paths = []
    for i, data in enumerate(mutants(INPUTS)):
        path = tmp_path / f"input-{i:05d}.bpf.o"
        path.write_bytes(data)
        paths.append(str(path))
    listing = tmp_path / "inputs.txt"
    listing.write_text("\n".join(paths))
    done = subprocess.run([sys.executable, "-c", CHILD, str(listing)], capture_output=True,
                          text=True, timeout=3600, cwd=tmp_path)
    lines = done.stdout.splitlines()
    last = lines[-1] if lines else "(no output)"
    assert done.returncode == 0, (f"the child ended with {done.returncode} on {last}:\n"
                                  f"{done.stderr[-3000:]}")
    outcomes = json.loads(last.removeprefix("OUTCOMES "))
    assert outcomes["loaded"] + outcomes["refused"] == INPUTS
    print(f"fuzz: {INPUTS} inputs, {outcomes}, crashes 0")


def test_a_name_that_is_not_utf8_is_an_object_file_error(tmp_path: Path):
    """Found by the fuzzer: a program name is ELF input, so a bad one is the file's fault."""
    data = facts.GLOBALS_OBJECT.read_bytes()  # the name is in .strtab and in BTF: change both
    (tmp_path / "bad.bpf.o").write_bytes(data.replace(b"mirror_globals\0", b"mir\xffor_globals\0"))
    with pytest.raises(bpfoom.ObjectFileError, match="not UTF-8"):
        bpfoom.BpfObject.open(tmp_path / "bad.bpf.o")


def test_a_struct_ops_member_past_the_struct_end_is_refused_before_libbpf(tmp_path: Path):
    """Found by the fuzzer: libbpf copied such a member out of bounds and crashed (SIGSEGV)."""
    data = bytearray(facts.TCP_CC_OBJECT.read_bytes())
    for at, value in ((1151, 33), (1425, 191), (1693, 255)):  # input 6050 of the seeded run
        data[at] = value
    (tmp_path / "bad.bpf.o").write_bytes(bytes(data))
    child = textwrap.dedent("""
        import sys, bpfoom
        obj = bpfoom.BpfObject.open(sys.argv[1])
        try:
            obj.load()
        except bpfoom.ObjectFileError as error:
            print("refused:", error)
        print("state:", obj.state)
    """)
    done = subprocess.run([sys.executable, "-c", child, str(tmp_path / "bad.bpf.o")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"the child ended with {done.returncode}: {done.stderr[-2000:]}"
    assert "past the struct's" in done.stdout and "state: closed" in done.stdout, done.stdout
