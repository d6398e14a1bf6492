"""cffi builder (API mode) for libbpf_ffi._libbpf.

Joins decl/*.h in a fixed order into the cdef and compiles a small C source
against the patched libbpf headers; setup.py links the static libbpf.a (see
third_party/libbpf/prepare.py).  Run by setuptools through ``cffi_modules``.
"""
from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from cffi import FFI  # type: ignore[import-untyped]  # cffi ships no type hints

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
# Order matters: each file uses types declared by the ones before it.
DECL_FILES = ("uapi.h", "btf.h", "bpf.h", "libbpf.h", "callbacks.h", "libc.h")

sys.path.insert(0, str(REPO_ROOT / "third_party" / "libbpf"))
import prepare  # type: ignore[import-not-found]  # noqa: E402  (outside the package, next to the sources)

sys.path.pop(0)

C_SOURCE = r"""
#ifndef _GNU_SOURCE  /* open_by_handle_at; Python.h (pyconfig.h) defines it already */
#define _GNU_SOURCE 1
#endif
#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/vfs.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>

#define LIBBPF_FFI_PACKAGE_VERSION "%(version)s"

static int libbpf_ffi_print(enum libbpf_print_level level, const char *message);

/* The most verbose level passed on; -1 with the hook removed. */
static int libbpf_ffi_print_max_level = -1;

/* libbpf passes a format and a va_list; Python can take neither, so format
 * here (on the stack when short, on the heap when long) and pass the text on.
 */
static int libbpf_ffi_format_and_print(enum libbpf_print_level level,
                                       const char *format, va_list args)
{
    char small[512];
    char *message = small;
    va_list again;
    int length, rc;

    if ((int)level > libbpf_ffi_print_max_level)
        return 0;  /* dropped before formatting: a load emits ~100 debug lines */
    va_copy(again, args);
    length = vsnprintf(small, sizeof(small), format, args);
    if (length >= (int)sizeof(small)) {
        message = malloc((size_t)length + 1);
        if (message)
            vsnprintf(message, (size_t)length + 1, format, again);
        else
            message = small;  /* out of memory: pass the truncated text */
    }
    va_end(again);
    if (length < 0)
        return 0;
    rc = libbpf_ffi_print(level, message);
    if (message != small)
        free(message);
    return rc;
}

static void libbpf_ffi_set_print(int max_level)
{
    libbpf_ffi_print_max_level = max_level;
    libbpf_set_print(max_level >= 0 ? libbpf_ffi_format_and_print : NULL);
}
"""


def package_version() -> str:
    """The project's version, from pyproject.toml (the one place it is written)."""
    with open(REPO_ROOT / "pyproject.toml", "rb") as stream:
        return tomllib.load(stream)["project"]["version"]


def cdef_source() -> str:
    return "\n".join((PACKAGE_DIR / "decl" / name).read_text() for name in DECL_FILES)


def make_builder() -> FFI:
    builder = FFI()
    builder.cdef(cdef_source())
    builder.set_source(
        "libbpf_ffi._libbpf",
        C_SOURCE % {"version": package_version()},
        include_dirs=[str(prepare.include_dir())],
        extra_objects=[str(prepare.static_library_path())],
        libraries=["elf", "z"],
        # keep libbpf's symbols private to the extension: another libbpf
        # loaded into the same process must not bind to ours, nor ours to it
        extra_link_args=["-Wl,--exclude-libs,ALL"],
    )
    return builder


ffibuilder = make_builder()

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
