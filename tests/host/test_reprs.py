"""Every public object of the object layer has a repr that shows its state, names and
kernel ids (as the kernel reports them in /proc/self/fdinfo), and a closed object's repr
reads nothing freed."""
from __future__ import annotations

import re

import pytest

import bpfoom
import facts

pytestmark = pytest.mark.usefixtures("bpf_privileges")


def kernel_id(fd: int, key: str) -> int:
    return int(facts.fdinfo(fd)[key])


def test_object_program_map_and_globals_through_their_states():
    obj = bpfoom.BpfObject.open(facts.GLOBALS_OBJECT)
    counts, program, rodata = obj.maps["counts"], obj.programs["mirror_globals"], obj.rodata
    assert repr(obj).startswith(f"<BpfObject {str(facts.GLOBALS_OBJECT)!r} open maps=['counts'")
    assert "programs=['mirror_globals']" in repr(obj)
    assert repr(counts) == "<Map 'counts' hash open max_entries=64>"
    assert repr(program) == "<Program 'mirror_globals' section='socket' open>"
    assert repr(rodata).startswith(f"<GlobalSection .rodata of {str(facts.GLOBALS_OBJECT)!r} open: ['ro_s8'")

    obj.load()
    map_id = kernel_id(counts.fd, "map_id")
    prog_id = kernel_id(program.fd, "prog_id")
    assert repr(obj).startswith(f"<BpfObject {str(facts.GLOBALS_OBJECT)!r} loaded ")
    assert repr(counts) == f"<Map 'counts' hash loaded max_entries=64 id={map_id}>"
    assert repr(program) == f"<Program 'mirror_globals' section='socket' loaded id={prog_id}>"
    assert " loaded: " in repr(rodata)

    obj.close()
    assert repr(obj) == f"<BpfObject {str(facts.GLOBALS_OBJECT)!r} closed>"
    assert repr(counts) == "<Map 'counts' hash closed>"
    assert repr(program) == "<Program 'mirror_globals' section='socket' closed>"
    assert " closed: " in repr(rodata)


def test_a_failed_load_says_why_it_is_closed():
    obj = bpfoom.BpfObject.open(facts.REJECTED_OBJECT)
    with pytest.raises(bpfoom.VerifierError):
        obj.load()
    assert repr(obj).endswith(" closed (its load() failed)>")


def test_struct_ops_map_fields_and_link(demo, bpffs_dir):
    ops = demo.ops
    assert repr(ops) == "<StructOpsMap 'bpfoom_demo' struct tcp_congestion_ops open max_entries=1>"
    assert repr(ops.fields).startswith("<StructOpsFields of 'bpfoom_demo': [")
    demo.obj.load()
    assert repr(ops) == (f"<StructOpsMap 'bpfoom_demo' struct tcp_congestion_ops loaded "
                         f"max_entries=1 id={kernel_id(ops.fd, 'map_id')}>")
    link = ops.attach()
    link_id = kernel_id(link.fd, "link_id")
    assert repr(link) == f"<Link struct_ops bpfoom_demo id={link_id} attached>"
    link.pin(bpffs_dir / "link")
    assert repr(link) == (f"<Link struct_ops bpfoom_demo id={link_id} attached pinned at "
                          f"{str(bpffs_dir / 'link')!r}>")
    link.unpin()
    link.detach()
    assert repr(link) == f"<Link struct_ops bpfoom_demo id={link_id} detached>"
    link.close()
    assert repr(link) == f"<Link struct_ops bpfoom_demo id={link_id} closed>"
    demo.obj.close()
    assert repr(ops) == "<StructOpsMap 'bpfoom_demo' struct tcp_congestion_ops closed>"


def test_ring_buffer():
    with bpfoom.BpfObject.open(facts.RINGBUF_OBJECT) as obj:
        obj.load()
        ring = bpfoom.RingBuffer(obj.maps["events"], lambda raw: None)
        assert repr(ring) == "<RingBuffer of map 'events' open>"
        ring.close()
        assert repr(ring) == "<RingBuffer of map 'events' closed>"


def test_features_table_and_feature():
    table = bpfoom.features()
    text = repr(table)
    assert text.startswith("<Features\n") and text.endswith(">")
    lines = text[len("<Features\n"):-1].splitlines()
    assert [line.split()[0] for line in lines] == list(table)
    btf = table["btf"]
    assert repr(btf) == f"<Feature btf: {btf.verdict} ({btf.detail})>"
    for line, feature in zip(lines, table.values()):
        found = f"{feature.value}: " if feature.value else ""  # which mechanism or interface
        assert re.search(rf"\s{re.escape(feature.verdict)}\s+{re.escape(found + feature.detail)}$",
                         line)
