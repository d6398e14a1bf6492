"""Build bpfoom: the cffi extension libbpf_ffi._libbpf with libbpf linked in statically.

Metadata lives in pyproject.toml; this file only adds what it cannot say:
the cffi module, building the patched static libbpf (third_party/libbpf/
prepare.py) before the extension is compiled, and shipping libbpf's headers
for BPF programs next to the policy headers.  No network is used when
third_party/libbpf/src is prepared, which an sdist always is.
"""
import sys
from pathlib import Path

import shutil

from setuptools import setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

sys.path.insert(0, str(Path(__file__).resolve().parent / "third_party" / "libbpf"))
import prepare  # noqa: E402


class BuildExtWithLibbpf(build_ext):
    """Build libbpf.a (static, PIC) first, so the extension can link it."""

    def run(self) -> None:
        prepare.static_library()
        super().run()


# libbpf's headers for BPF programs, shipped with ours so that bpfoom.get_include() is all a
# policy author needs (LGPL-2.1 OR BSD-2-Clause, like the rest of libbpf).
BPF_SIDE_HEADERS = ("bpf_helpers.h", "bpf_helper_defs.h", "bpf_tracing.h", "bpf_core_read.h",
                    "bpf_endian.h")
POLICY_INCLUDE = Path("bpfoom") / "oom" / "include"


class BuildPyWithLibbpfHeaders(build_py):
    """Copy the prepared libbpf's <bpf/...> headers into the package's include/bpf/."""

    def run(self) -> None:
        super().run()
        source = prepare.include_dir() / "bpf"
        # An editable install imports from the source tree, so they go there too (gitignored).
        roots = [Path(self.build_lib)] + ([Path(".")] if self.editable_mode else [])
        for root in roots:
            target = root / POLICY_INCLUDE / "bpf"
            target.mkdir(parents=True, exist_ok=True)
            for name in BPF_SIDE_HEADERS:
                shutil.copyfile(source / name, target / name)


setup(
    cffi_modules=["libbpf_ffi/_build.py:ffibuilder"],
    cmdclass={"build_ext": BuildExtWithLibbpf, "build_py": BuildPyWithLibbpfHeaders},
)
