"""Whether an entry can ever attach on this kernel, asked before the first attempt.

A missing struct_ops type, a kernel that cannot attach struct_ops to a
cgroup, or a process without the right to call bpf() does not change while
the daemon runs: retrying would only report protection that never comes.
Such an entry is *failed*, with the reason, never *pending*.  Only
conclusive probes count: a feature the kernel could not be asked about is
left to the attach itself.
"""

from __future__ import annotations

import errno

from ..oom.features import POLICY_KINDS, features
from .config import Entry, struct_ops_type

__all__ = ["never_attaches", "is_permanent", "PERMANENT_ERRNOS"]

# Attach errors that retrying cannot cure on this kernel and with these privileges:
# no such struct_ops / cgroup attach (ENOTSUPP, EOPNOTSUPP), no right to do it.
PERMANENT_ERRNOS = (524, errno.EOPNOTSUPP, errno.EPERM, errno.EACCES, errno.ENOSYS)


def is_permanent(exc: BaseException) -> bool:
    """An attach failure that the same attach on this kernel can only meet again."""
    return isinstance(exc, OSError) and exc.errno in PERMANENT_ERRNOS


def never_attaches(entry: Entry) -> str | None:
    """Why ``entry`` can never attach here (a sentence saying what to do), or None."""
    found = features()
    syscall = found["bpf_syscall"]
    if syscall.supported is False:
        return f"this process may not use bpf(): {syscall.detail}"
    struct_name = struct_ops_type(entry)
    if struct_name in POLICY_KINDS and found[struct_name].supported is False:
        return (f"this kernel has no {struct_name} ({found[struct_name].detail}); boot a kernel "
                "with the BPF OOM interface (`bpfoom features` shows what is missing)")
    cgroup_attach = found["struct_ops_cgroup_attach"]
    if entry.target.kind != "system" and cgroup_attach.supported is False:
        return (f"this kernel cannot attach a struct_ops to a cgroup (struct_ops_cgroup_attach: "
                f"{cgroup_attach.detail}); attach system-wide or boot a kernel that can")
    return None
