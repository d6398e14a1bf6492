"""The tcp_congestion_ops lifecycle on the running kernel.

Each step is checked against what the kernel shows on its own: the list in
/proc/sys/net/ipv4/tcp_available_congestion_control, the congestion control
a real TCP socket ends up with, and the kernel's link and map ids.
"""
from __future__ import annotations

import gc
import json
import socket
import subprocess
import sys
import textwrap
import warnings

import pytest

import bpfoom
import facts

pytestmark = pytest.mark.usefixtures("tcp_struct_ops")


@pytest.fixture
def demo():
    """The tcp_cc example, opened (not loaded)."""
    obj = bpfoom.BpfObject.open(facts.TCP_CC_OBJECT)
    yield obj
    obj.close()


def link_ids() -> set[int]:
    return {info.id for info in bpfoom.links()}


def test_attach_registers_the_name_and_detach_removes_it(demo):
    assert "bpfoom_demo" not in facts.available_congestion_control()
    demo.load()
    ops = demo.struct_ops["bpfoom_demo"]

    link = ops.attach()
    try:
        assert "bpfoom_demo" in facts.available_congestion_control()
        info = link.info()
        assert info.type == "struct_ops"
        assert info.map_id == ops.id
        assert info.id == link.id
        assert link.id in link_ids()
    finally:
        link.detach()
    assert "bpfoom_demo" not in facts.available_congestion_control()
    link.close()
    assert link.id not in link_ids()


def test_a_tcp_socket_runs_the_bpf_congestion_control(demo):
    demo.load()
    with demo.struct_ops["bpfoom_demo"].attach():
        before = demo.bss["connections_initialized"]
        with socket.create_server(("127.0.0.1", 0)) as server:
            with socket.socket() as client:
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, b"bpfoom_demo")
                client.connect(server.getsockname())
                accepted, _ = server.accept()
                accepted.close()
                in_use = client.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16)
                assert in_use.rstrip(b"\0") == b"bpfoom_demo"
        # demo_init ran in the kernel for the client socket.
        assert demo.bss["connections_initialized"] >= before + 1
    assert "bpfoom_demo" not in facts.available_congestion_control()


def test_both_maps_register_side_by_side(demo):
    demo.load()
    with demo.struct_ops["bpfoom_demo"].attach() as first:
        with demo.struct_ops["bpfoom_demo2"].attach() as second:
            names = facts.available_congestion_control()
            assert "bpfoom_demo" in names and "bpfoom_demo2" in names
            assert first.info().map_id != second.info().map_id
        names = facts.available_congestion_control()
        assert "bpfoom_demo" in names and "bpfoom_demo2" not in names


def test_name_field_set_before_load_is_the_registered_name(demo):
    ops = demo.struct_ops["bpfoom_demo"]
    assert ops.fields["name"] == "bpfoom_demo"
    ops.fields["name"] = "bpfoom_renamed"
    demo.load()
    with ops.attach():
        names = facts.available_congestion_control()
        assert "bpfoom_renamed" in names and "bpfoom_demo" not in names
    assert "bpfoom_renamed" not in facts.available_congestion_control()


def test_fields_refuse_writes_after_load(demo):
    demo.load()
    ops = demo.struct_ops["bpfoom_demo"]
    with pytest.raises(bpfoom.StateError):
        ops.fields["name"] = "bpfoom_renamed"
    assert ops.fields["name"] == "bpfoom_demo"


def test_program_members_are_listed_not_fields(demo):
    ops = demo.struct_ops["bpfoom_demo"]
    assert ops.programs["ssthresh"] == "demo_ssthresh"
    assert "ssthresh" not in ops.fields
    assert set(demo.programs) >= {"demo_init", "demo_ssthresh", "demo_cong_avoid", "demo_undo_cwnd"}


def test_second_attach_of_a_registered_name_is_busy(demo):
    demo.load()
    ops = demo.struct_ops["bpfoom_demo"]
    with ops.attach():
        links_before = link_ids()
        with pytest.raises(bpfoom.BusyError) as caught:
            ops.attach()
        assert caught.value.errno == 17  # EEXIST from tcp_register_congestion_control
        assert link_ids() == links_before
        assert facts.available_congestion_control().count("bpfoom_demo") == 1


def test_closing_an_unpinned_link_detaches(demo):
    demo.load()
    link = demo.struct_ops["bpfoom_demo"].attach()
    link.close()
    assert "bpfoom_demo" not in facts.available_congestion_control()
    link.close()  # idempotent


def test_link_outlives_its_object(demo):
    demo.load()
    link = demo.struct_ops["bpfoom_demo"].attach()
    demo.close()
    assert "bpfoom_demo" in facts.available_congestion_control()
    link.close()
    assert "bpfoom_demo" not in facts.available_congestion_control()


def test_detach_of_a_pinned_link_unregisters(demo, bpffs_dir):
    demo.load()
    with demo.struct_ops["bpfoom_demo"].attach() as link:
        link.pin(bpffs_dir / "link")
        link.detach()
        assert "bpfoom_demo" not in facts.available_congestion_control()
        assert (bpffs_dir / "link").exists()  # the pin holds a detached link
        link.unpin()
    assert not (bpffs_dir / "link").exists()


def test_collecting_an_unclosed_link_detaches_with_a_warning(demo):
    demo.load()
    link = demo.struct_ops["bpfoom_demo"].attach()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        del link
        gc.collect()
    assert any(issubclass(w.category, ResourceWarning) for w in seen)
    assert "bpfoom_demo" not in facts.available_congestion_control()


REOPEN_IN_CHILD = textwrap.dedent("""
    import json, sys
    import bpfoom
    link = bpfoom.Link.from_pinned(sys.argv[1])
    info = link.info()
    link.close()   # a link opened from a pin stays attached when closed
    print(json.dumps({"id": info.id, "map_id": info.map_id, "type": info.type}))
""")

UPDATE_IN_CHILD = textwrap.dedent("""
    import json, sys
    import bpfoom
    with bpfoom.BpfObject.open(sys.argv[2]) as obj:
        second = obj.struct_ops["bpfoom_demo2"]
        # The kernel only swaps a congestion control for one of the same name.
        second.fields["name"] = "bpfoom_demo"
        obj.load()
        with bpfoom.Link.from_pinned(sys.argv[1]) as link:
            link.update(second)
            after = link.info()
            report = {"second_map_id": second.id, "map_id": after.map_id, "id": after.id}
            link.detach()
    print(json.dumps(report))
""")


def run_child(script: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", script, *args],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_pinned_link_is_reopened_updated_and_detached_by_another_process(demo, bpffs_dir):
    pin = bpffs_dir / "demo-link"
    demo.load()
    link = demo.struct_ops["bpfoom_demo"].attach()
    first_map_id = link.info().map_id
    link.pin(pin)
    assert str(link.pinned_path) == str(pin)
    link_id = link.id
    link.close()
    demo.close()
    # Neither the link's nor the object's fds are open now: only the pin keeps it.
    assert "bpfoom_demo" in facts.available_congestion_control()

    seen = run_child(REOPEN_IN_CHILD, str(pin))
    assert seen == {"id": link_id, "map_id": first_map_id, "type": "struct_ops"}
    assert "bpfoom_demo" in facts.available_congestion_control()

    updated = run_child(UPDATE_IN_CHILD, str(pin), str(facts.TCP_CC_OBJECT))
    assert updated["id"] == link_id
    assert updated["map_id"] == updated["second_map_id"] != first_map_id
    assert "bpfoom_demo" not in facts.available_congestion_control()

    with bpfoom.Link.from_pinned(pin) as reopened:
        reopened.unpin()
    assert not pin.exists()


def test_update_to_a_differently_named_map_is_refused(demo):
    demo.load()
    with demo.struct_ops["bpfoom_demo"].attach() as link:
        first_map_id = link.info().map_id
        with pytest.raises(bpfoom.BpfError) as caught:
            link.update(demo.struct_ops["bpfoom_demo2"])
        assert caught.value.errno == 22  # EINVAL: tcp_update_congestion_control wants the same name
        assert link.info().map_id == first_map_id
        names = facts.available_congestion_control()
        assert "bpfoom_demo" in names and "bpfoom_demo2" not in names
