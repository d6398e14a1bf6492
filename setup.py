"""Build bpfoom: the cffi extension libbpf_ffi._libbpf with libbpf linked in statically.

Metadata lives in pyproject.toml; this file only adds what it cannot say:
the cffi module, and building the patched static libbpf (third_party/libbpf/
prepare.py) before the extension is compiled.  No network is used when
third_party/libbpf/src is prepared, which an sdist always is.
"""
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

sys.path.insert(0, str(Path(__file__).resolve().parent / "third_party" / "libbpf"))
import prepare  # noqa: E402


class BuildExtWithLibbpf(build_ext):
    """Build libbpf.a (static, PIC) first, so the extension can link it."""

    def run(self) -> None:
        prepare.static_library()
        super().run()


setup(
    cffi_modules=["libbpf_ffi/_build.py:ffibuilder"],
    cmdclass={"build_ext": BuildExtWithLibbpf},
)
