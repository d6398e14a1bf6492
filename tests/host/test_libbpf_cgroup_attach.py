"""Our libbpf's bpf_map__attach_cgroup_opts() (patch 0003), called from C on the running kernel.

The host kernel (and our v2 kernel) ignore BPF_LINK_CREATE's target_fd for
struct_ops and would register a tcp_congestion_ops system-wide.  The call must
notice (the link reports cgroup id 0), undo it and fail with EOPNOTSUPP, so
nothing of the map stays attached; a kernel with the generic mechanism refuses
the type (EINVAL) itself.
"""
from __future__ import annotations

import errno
import re
import shutil
import subprocess
import sys

import pytest

import bpfoom
import facts
from conftest import require

SOURCE = facts.REPO / "tests" / "libbpf" / "attach_cgroup_opts.c"
PREPARE = facts.REPO / "third_party" / "libbpf" / "prepare.py"


def _prepared(what: str) -> str:
    done = subprocess.run([sys.executable, str(PREPARE), what], capture_output=True, text=True,
                          timeout=600, check=True)
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def program(tmp_path_factory) -> str:
    """The C caller, compiled against the prepared headers and linked with our libbpf.a."""
    require(shutil.which("gcc") is not None, "needs gcc to build the C caller of libbpf")
    binary = tmp_path_factory.mktemp("libbpf") / "attach_cgroup_opts"
    subprocess.run(["gcc", "-Wall", "-Werror", "-O1", f"-I{_prepared('include')}", str(SOURCE),
                    _prepared("static"), "-lelf", "-lz", "-o", str(binary)],
                   check=True, capture_output=True, text=True, timeout=300)
    return str(binary)


def test_the_symbol_is_in_its_own_version_node():
    version_script = (facts.REPO / "third_party" / "libbpf" / "src" / "src" / "libbpf.map").read_text()
    node = re.search(r"^BPFOOM_NEXT \{(.*?)\} BPFOOM_1\.0\.0;", version_script, re.MULTILINE | re.DOTALL)
    assert node is not None and "bpf_map__attach_cgroup_opts;" in node.group(1)
    released = version_script[:node.start()]
    assert "bpf_map__attach_cgroup_opts" not in released


def test_a_kernel_that_ignores_the_cgroup_gets_nothing_attached(program, tcp_struct_ops,
                                                                cgroup2_dir):
    # Where links take the cgroup in target_fd, the kernel itself refuses a type that did
    # not opt in; elsewhere (the host, our v2 kernel) it ignores target_fd.
    mechanism = bpfoom.CgroupMechanism(bpfoom.features()["struct_ops_cgroup_attach"].value)
    refused = errno.EINVAL if mechanism is bpfoom.CgroupMechanism.TARGET_FD else errno.EOPNOTSUPP
    name = facts.unique_cc_name()
    done = subprocess.run([program, str(facts.TCP_CC_OBJECT), "bpfoom_demo", name,
                           str(cgroup2_dir)], check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    results = {case: (int(code), int(link), int(left)) for case, code, link, left in
               re.findall(r"^(\w+) errno=(\d+) link=(\d) left=(\d+)$", done.stdout, re.MULTILINE)}
    assert results == {
        "cgroup": (refused, 0, 0),  # on the host: attached system-wide by the kernel, then undone
        "both_relatives": (errno.EINVAL, 0, 0),  # an anchor by fd and by id at once
        "bad_fd": (errno.EBADF, 0, 0),
    }, done.stdout + done.stderr
    if refused == errno.EOPNOTSUPP:
        assert "the kernel does not attach struct_ops to a cgroup" in done.stderr
    assert name not in facts.available_congestion_control()
