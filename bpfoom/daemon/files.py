"""Files the daemon keeps for others to read, replaced whole so no reader sees half of one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["replace_file"]


def replace_file(path: str | os.PathLike[str], text: str, *, fsync: bool) -> None:
    """Replace ``path`` with ``text`` (mode 0644) through a temporary file in the same directory
    and a rename; ``fsync``: make the data durable before the rename.  OSError on failure, and
    then no temporary file is left behind."""
    target = Path(path)
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as stream:
            stream.write(text)
            if fsync:
                stream.flush()
                os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
