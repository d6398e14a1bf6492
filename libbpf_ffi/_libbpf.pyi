# The compiled cffi extension (libbpf_ffi/_build.py): its ffi and lib are made at build time from
# the declarations in decl/*.h, so a type checker can know them only as Any.
from typing import Any

ffi: Any
lib: Any
