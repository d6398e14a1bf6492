"""The constants BPF programs need from our patches are in the running kernel's BTF.

A ``#define`` never reaches BTF, so a program built from a vmlinux.h (or a
CO-RE enum relocation) could not spell BPF_PSI_FULL or the length limits;
the series declares them as enums and emits them (BTF_TYPE_EMIT). This reads
/sys/kernel/btf/vmlinux and finds each enumerator with its value.
"""
from __future__ import annotations

import pytest

import bpfoom
from oomtest import BPF_OOM_FLAGS_LAST, BPF_OOM_FLAGS_WAIT_ON_OOM_LOCK, BPF_PSI_FULL

EXPECTED = {
    "bpf_psi_flags": {"BPF_PSI_FULL": BPF_PSI_FULL},
    "bpf_psi_limits": {"BPF_PSI_MAX_TRIGGERS": 1024},
    "bpf_oom_limits": {"BPF_OOM_NAME_MAX_LEN": 64, "BPF_OOM_MESSAGE_MAX_LEN": 64,
                       "BPF_OOM_CONSTRAINT_MAX_LEN": 64},
    "bpf_oom_flags": {"BPF_OOM_FLAGS_WAIT_ON_OOM_LOCK": BPF_OOM_FLAGS_WAIT_ON_OOM_LOCK,
                      "BPF_OOM_FLAGS_LAST": BPF_OOM_FLAGS_LAST},
}


def kernel_enum(name: str) -> dict[str, int] | None:
    """The enumerators of the kernel's `enum name`, or None when its BTF has no such enum."""
    with bpfoom.vmlinux_btf() as btf:
        type_id = btf.find(name, bpfoom.BtfKind.ENUM)
        if type_id is None:
            return None
        return {member.name: member.value for member in btf.type(type_id).members}


@pytest.mark.parametrize("enum", sorted(EXPECTED))
def test_the_enum_is_in_the_kernels_btf_with_its_values(enum: str) -> None:
    assert kernel_enum(enum) == EXPECTED[enum]


def test_the_psi_full_bit_reads_unsigned() -> None:
    """0x80000000 in a 4-byte unsigned enum: a program ORs it into a u32, never a negative."""
    assert (kernel_enum("bpf_psi_flags") or {}).get("BPF_PSI_FULL") == 0x80000000
