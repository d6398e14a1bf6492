"""The public classes' instances keep their class's methods reachable.

An instance attribute with a method's name hides that method from every
later caller of the instance (and from a type checker's view of it).
"""
from __future__ import annotations

import os

import pytest

import bpfoom
import facts

pytestmark = pytest.mark.usefixtures("bpf_privileges")


def shadowed(instance: object) -> list[str]:
    """Instance attributes that hide a method, classmethod or property of the instance's class."""
    hidden = []
    for name in vars(instance):
        for klass in type(instance).__mro__:
            if name in vars(klass) and callable(getattr(klass, name, None)):
                hidden.append(f"{type(instance).__name__}.{name}")
    return hidden


def test_no_instance_attribute_hides_a_method():
    with bpfoom.BpfObject.open(facts.COUNT_CALLS_OBJECT) as obj:
        obj.rodata["target_tid"] = os.getpid()
        obj.programs["count_access"].autoload = False
        obj.load()
        program = obj.programs["count_syscall"]
        with program.attach() as link:
            found = shadowed(obj) + shadowed(program) + shadowed(link)
            found += [name for m in obj.maps.values() for name in shadowed(m)]
    assert not found, f"instance attributes hide methods: {found}"
