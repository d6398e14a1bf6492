"""BpfObject.open's options (kconfig, btf_custom_path) reach libbpf and, through it, the kernel."""
from __future__ import annotations

import socket

import pytest

import bpfoom
import facts

pytestmark = pytest.mark.usefixtures("bpf_privileges")

KCONFIG_OBJECT = facts.REPO / "tests" / "bpf" / "kconfig.bpf.o"


def run_filter_once(program: "bpfoom.Program") -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        receiver.bind(("127.0.0.1", 0))
        receiver.setsockopt(socket.SOL_SOCKET, facts.SO_ATTACH_BPF, program.fd)
        receiver.settimeout(5)
        sender.sendto(b"k", receiver.getsockname())
        assert receiver.recv(8) == b"k"


def test_kconfig_values_reach_the_program():
    kconfig = "CONFIG_BPFOOM_TEST_FLAG=y\nCONFIG_BPFOOM_TEST_NUMBER=42\n"
    with bpfoom.BpfObject.open(KCONFIG_OBJECT, kconfig=kconfig) as obj:
        obj.load()
        run_filter_once(obj.programs["copy_kconfig"])
        assert obj.bss["seen_flag"] is True
        assert obj.bss["seen_number"] == 42


def test_malformed_kconfig_is_refused():
    with bpfoom.BpfObject.open(KCONFIG_OBJECT, kconfig="CONFIG_BPFOOM_TEST_NUMBER=forty-two\n") as obj:
        with pytest.raises(bpfoom.BpfError):
            obj.load()


def test_explicit_kernel_btf_path_loads_struct_ops(tcp_struct_ops):
    name = facts.unique_cc_name()
    with bpfoom.BpfObject.open(facts.TCP_CC_OBJECT, btf_custom_path=facts.VMLINUX_BTF) as obj:
        obj.struct_ops["bpfoom_demo"].fields["name"] = name
        obj.load()
        with obj.struct_ops["bpfoom_demo"].attach():
            assert name in facts.available_congestion_control()
    assert name not in facts.available_congestion_control()


def test_a_kernel_btf_path_that_is_not_btf_fails_the_load(tmp_path, tcp_struct_ops):
    bogus = tmp_path / "vmlinux.btf"
    bogus.write_bytes(b"not BTF at all")
    with bpfoom.BpfObject.open(facts.TCP_CC_OBJECT, btf_custom_path=bogus) as obj:
        with pytest.raises(bpfoom.ObjectFileError):
            obj.load()
