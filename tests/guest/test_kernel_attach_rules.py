"""Who may attach what (issue 16): struct_ops types opt in to cgroup targets,
and the privilege rule.

- A struct_ops type that did not opt in to cgroup targets (tcp_congestion_ops,
  bpf_psi_ops) gets EOPNOTSUPP for a link naming a cgroup, instead of being
  attached system-wide (bpfoom still probes for kernels without the rule).
- Every bpf_oom_ops and every bpf_psi_ops needs CAP_SYS_ADMIN (issue 22,
  defect 2).  A bpf_oom_ops on one cgroup used to be open to CAP_BPF plus
  write access to the cgroup's directory (what delegating the subtree
  grants), but such a policy is no sandbox: its programs may call
  bpf_task_from_pid() and bpf_send_signal_task() (any task on the host),
  bpf_probe_read_kernel() with CAP_PERFMON, and a sleepable handler may hold
  oom_lock as long as it likes.  One refusal per escape below; replacing a
  policy (BPF_LINK_UPDATE) follows the same rule.
The refused callers are children of the test that dropped capabilities.
"""
from __future__ import annotations

import errno
import os

import pytest

import bpfoom
from kerneltest import (CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN, attach_errno, in_child, open_guard,
                        raw_struct_ops_link)
from oomtest import open_psi_probe

REPO_TCP_CC = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "tcp_cc",
                           "tcp_cc.bpf.o")


@pytest.fixture
def guard():
    """The guard policy, attached once by us so that its map's value is set.

    libbpf sets a struct_ops map's value at the first attach; after that, a
    child's attach is the link creation alone, the step the rule is about.
    """
    obj = open_guard()
    obj.struct_ops["guard_policy"].attach().close()
    yield obj
    obj.close()


def test_a_type_that_did_not_opt_in_refuses_a_cgroup(cgroups):
    cg = cgroups("cc")
    obj = bpfoom.BpfObject.open(REPO_TCP_CC)
    try:
        obj.load()
        ops = obj.struct_ops["bpfoom_demo"]
        ops.attach().close()  # libbpf sets the map's value at the first attach
        map_fd = ops.fd
        fd = raw_struct_ops_link(map_fd, cg.fd)
        if fd >= 0:
            os.close(fd)
        assert fd == -errno.EOPNOTSUPP, f"a tcp_congestion_ops link to a cgroup gave {fd}"
        # The same map attaches system-wide as before.
        fd = raw_struct_ops_link(map_fd)
        assert fd >= 0, f"system-wide tcp_congestion_ops link failed: {fd}"
        os.close(fd)
    finally:
        obj.close()


def test_bpf_psi_ops_refuses_a_cgroup(cgroups):
    cg = cgroups("psi")
    obj = open_psi_probe()
    try:
        ops = obj.struct_ops[next(iter(obj.struct_ops))]
        ops.attach().close()  # libbpf sets the map's value at the first attach
        fd = raw_struct_ops_link(ops.fd, cg.fd)
        if fd >= 0:
            os.close(fd)
        assert fd == -errno.EOPNOTSUPP
    finally:
        obj.close()


def test_system_wide_oom_policy_needs_cap_sys_admin(guard):
    ops = guard.struct_ops["guard_policy"]
    assert in_child(lambda: attach_errno(ops), caps={CAP_BPF}) == errno.EPERM
    assert in_child(lambda: attach_errno(ops)) == 0


def test_psi_ops_need_cap_sys_admin():
    obj = open_psi_probe()
    try:
        ops = obj.struct_ops[next(iter(obj.struct_ops))]
        ops.attach().close()  # sets the map's value: the child only creates the link
        assert in_child(lambda: attach_errno(ops), caps={CAP_BPF}) == errno.EPERM
        assert in_child(lambda: attach_errno(ops), caps={CAP_BPF, CAP_SYS_ADMIN}) == 0
    finally:
        obj.close()


def test_cgroup_policy_with_cap_bpf_on_a_cgroup_it_may_write_is_refused(guard, cgroups):
    """The signal escape: the guard calls bpf_task_from_pid(), which with
    bpf_send_signal_task() reaches any task; a delegated attacher is refused."""
    cg = cgroups("mine")  # owned by root (our uid), mode 0755: writable by us
    ops = guard.struct_ops["guard_policy"]
    assert in_child(lambda: attach_errno(ops, cg), caps={CAP_BPF}) == errno.EPERM
    assert in_child(lambda: attach_errno(ops, cg), caps={CAP_SYS_ADMIN}) == 0


def test_cgroup_policy_with_cap_bpf_and_cap_perfmon_is_refused(guard, cgroups):
    """The kernel-memory escape: CAP_PERFMON lets a program read kernel memory."""
    cg = cgroups("perfmon")
    ops = guard.struct_ops["guard_policy"]
    assert in_child(lambda: attach_errno(ops, cg), caps={CAP_BPF, CAP_PERFMON}) == errno.EPERM


def test_replacing_a_cgroup_policy_needs_cap_sys_admin(guard, cgroups):
    """The stall escape through a link fd handed to a tenant: Link.update() is an attach too
    (the guard's offline handler spins as long as it is told; any handler could)."""
    cg = cgroups("replaced")
    other = open_guard()
    try:
        other.struct_ops["guard_policy"].attach().close()  # libbpf sets the map's value
        with guard.struct_ops["guard_policy"].attach(cgroup=cg) as link:
            def update_errno() -> int:
                try:
                    link.update(other.struct_ops["guard_policy"])
                except OSError as err:
                    return err.errno or -1
                return 0
            assert in_child(update_errno, caps={CAP_BPF, CAP_PERFMON}) == errno.EPERM
            assert link.info().map_id == guard.struct_ops["guard_policy"].id
            assert in_child(update_errno, caps={CAP_SYS_ADMIN}) == 0
    finally:
        other.close()


def test_cgroup_policy_with_cap_bpf_on_a_cgroup_it_may_not_write(guard, cgroups):
    cg = cgroups("theirs")
    os.chown(cg.path, 4242, 4242)  # delegated to someone else
    ops = guard.struct_ops["guard_policy"]
    assert in_child(lambda: attach_errno(ops, cg), caps={CAP_BPF}) == errno.EPERM
    # CAP_SYS_ADMIN may attach anywhere.
    assert in_child(lambda: attach_errno(ops, cg), caps={CAP_SYS_ADMIN}) == 0


def test_cgroup_policy_without_cap_bpf(guard, cgroups):
    cg = cgroups("nocaps")
    ops = guard.struct_ops["guard_policy"]
    assert in_child(lambda: attach_errno(ops, cg), caps=set()) == errno.EPERM
