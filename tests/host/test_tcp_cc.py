"""The tcp_congestion_ops lifecycle on the running kernel.

Each step is checked against what the kernel shows on its own: the list in
/proc/sys/net/ipv4/tcp_available_congestion_control, the congestion control
a real TCP socket ends up with, and the kernel's link and map ids.  Each test
registers under names of its own (congestion control names are global to
the machine), set through the struct_ops `name` field before load.
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


def registered() -> list[str]:
    return facts.available_congestion_control()


def link_ids() -> set[int]:
    return {info.id for info in bpfoom.links()}


def test_the_object_declares_its_default_names():
    with bpfoom.BpfObject.open(facts.TCP_CC_OBJECT) as obj:
        assert obj.struct_ops["bpfoom_demo"].fields["name"] == "bpfoom_demo"
        assert obj.struct_ops["bpfoom_demo2"].fields["name"] == "bpfoom_demo2"
        assert obj.struct_ops["bpfoom_demo"].struct_name == "tcp_congestion_ops"


def test_attach_registers_the_name_and_detach_removes_it(demo):
    assert demo.first not in registered()
    demo.obj.load()
    link = demo.ops.attach()
    try:
        assert demo.first in registered()
        info = link.info()
        assert info.type == "struct_ops"
        assert info.map_id == demo.ops.id
        assert info.id == link.id
        assert link.id in link_ids()
    finally:
        link.detach()
    assert demo.first not in registered()
    link.close()
    assert link.id not in link_ids()


def test_a_tcp_socket_runs_the_bpf_congestion_control(demo):
    demo.obj.load()
    with demo.ops.attach():
        before = demo.obj.bss["connections_initialized"]
        with socket.create_server(("127.0.0.1", 0)) as server:
            with socket.socket() as client:
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, demo.first.encode())
                client.connect(server.getsockname())
                accepted, _ = server.accept()
                accepted.close()
                in_use = client.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16)
                assert in_use.rstrip(b"\0") == demo.first.encode()
        # demo_init ran in the kernel for the client socket.
        assert demo.obj.bss["connections_initialized"] >= before + 1
    assert demo.first not in registered()


def test_both_maps_register_side_by_side(demo):
    demo.obj.load()
    with demo.ops.attach() as first:
        with demo.ops2.attach() as second:
            assert demo.first in registered() and demo.second in registered()
            assert first.info().map_id != second.info().map_id
        assert demo.first in registered() and demo.second not in registered()


def test_fields_refuse_writes_after_load(demo):
    demo.obj.load()
    with pytest.raises(bpfoom.StateError):
        demo.ops.fields["name"] = "bpfoom_late"
    assert demo.ops.fields["name"] == demo.first


def test_a_name_too_long_for_the_kernel_is_refused(demo):
    with pytest.raises(bpfoom.InvalidValueError):
        demo.ops.fields["name"] = "x" * 16  # char name[16] needs its NUL
    assert demo.ops.fields["name"] == demo.first


def test_program_members_are_listed_not_fields(demo):
    assert demo.ops.programs["ssthresh"] == "demo_ssthresh"
    assert demo.ops2.programs["cong_avoid"] == "demo_cong_avoid"
    assert "ssthresh" not in demo.ops.fields
    assert set(demo.obj.programs) >= {"demo_init", "demo_ssthresh", "demo_cong_avoid", "demo_undo_cwnd"}


def test_second_attach_of_a_registered_name_is_busy(demo):
    demo.obj.load()
    with demo.ops.attach():
        links_before = link_ids()
        with pytest.raises(bpfoom.BusyError) as caught:
            demo.ops.attach()
        assert caught.value.errno == 17  # EEXIST from tcp_register_congestion_control
        assert link_ids() == links_before
        assert registered().count(demo.first) == 1


def test_closing_an_unpinned_link_detaches(demo):
    demo.obj.load()
    link = demo.ops.attach()
    link.close()
    assert demo.first not in registered()
    link.close()  # idempotent


def test_link_outlives_its_object(demo):
    demo.obj.load()
    link = demo.ops.attach()
    demo.obj.close()
    assert demo.first in registered()
    link.close()
    assert demo.first not in registered()


def test_detach_of_a_pinned_link_unregisters(demo, bpffs_dir):
    demo.obj.load()
    with demo.ops.attach() as link:
        link.pin(bpffs_dir / "link")
        link.detach()
        assert demo.first not in registered()
        assert (bpffs_dir / "link").exists()  # the pin holds a detached link
        link.unpin()
    assert not (bpffs_dir / "link").exists()


def test_collecting_an_unclosed_link_detaches_with_a_warning(demo):
    demo.obj.load()
    link = demo.ops.attach()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        del link
        gc.collect()
    assert any(issubclass(w.category, ResourceWarning) for w in seen)
    assert demo.first not in registered()


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
    pin, object_path, registered_name = sys.argv[1:]
    with bpfoom.BpfObject.open(object_path) as obj:
        second = obj.struct_ops["bpfoom_demo2"]
        # The kernel only swaps a congestion control for one of the same name.
        second.fields["name"] = registered_name
        obj.load()
        with bpfoom.Link.from_pinned(pin) as link:
            link.update(second)
            after = link.info()
            report = {"second_map_id": second.id, "map_id": after.map_id, "id": after.id}
            link.detach()
    print(json.dumps(report))
""")


def run_child(script: str, *args: str) -> dict:
    """Run `script` in a fresh interpreter; -P keeps the current directory (maybe a source tree) off sys.path."""
    done = subprocess.run([sys.executable, "-P", "-c", script, *args],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_pinned_link_is_reopened_updated_and_detached_by_another_process(demo, bpffs_dir):
    pin = bpffs_dir / "demo-link"
    demo.obj.load()
    link = demo.ops.attach()
    first_map_id = link.info().map_id
    link.pin(pin)
    assert str(link.pinned_path) == str(pin)
    link_id = link.id
    link.close()
    demo.obj.close()
    # Neither the link's nor the object's fds are open now: only the pin keeps it.
    assert demo.first in registered()

    seen = run_child(REOPEN_IN_CHILD, str(pin))
    assert seen == {"id": link_id, "map_id": first_map_id, "type": "struct_ops"}
    assert demo.first in registered()

    updated = run_child(UPDATE_IN_CHILD, str(pin), str(facts.TCP_CC_OBJECT), demo.first)
    assert updated["id"] == link_id
    assert updated["map_id"] == updated["second_map_id"] != first_map_id
    assert demo.first not in registered()

    with bpfoom.Link.from_pinned(pin) as reopened:
        reopened.unpin()
    assert not pin.exists()


def test_update_to_a_differently_named_map_is_refused(demo):
    demo.obj.load()
    with demo.ops.attach() as link:
        first_map_id = link.info().map_id
        with pytest.raises(bpfoom.BpfError) as caught:
            link.update(demo.ops2)
        assert caught.value.errno == 22  # EINVAL: tcp_update_congestion_control wants the same name
        assert link.info().map_id == first_map_id
        assert demo.first in registered() and demo.second not in registered()


def test_update_within_one_process(demo):
    demo.obj.load()
    with bpfoom.BpfObject.open(facts.TCP_CC_OBJECT) as other:
        other.struct_ops["bpfoom_demo2"].fields["name"] = demo.first
        other.load()
        replacement = other.struct_ops["bpfoom_demo2"]
        with demo.ops.attach() as link:
            link.update(replacement)
            assert link.info().map_id == replacement.id
            assert demo.first in registered()
    assert demo.first not in registered()
