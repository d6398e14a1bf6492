"""What each pinned link was attached with, so that a restart can tell whether it runs the config.

A link the kernel cannot switch to a new object (``bpf_oom_ops`` before
BPF_LINK_UPDATE) keeps running the object an earlier run attached.  The
daemon records, per pin, the link's id and a fingerprint of the entry it
runs (policy, the object file's bytes, tunables, granularity) in
``$BPFOOM_STATE_DIR/applied/`` (RuntimeDirectoryPreserve= keeps it across
restarts; it goes with the pins at reboot).  A restart whose entry has the
same fingerprint keeps the running link; any difference, or no record (a
lost state directory, a link pinned by something else), replaces it: the
configuration always applies.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..oom.catalogue import policies
from .config import Entry
from .files import replace_file
from .state import state_dir

__all__ = ["fingerprint", "record", "recorded", "forget"]


def _object_digest(entry: Entry) -> str:
    path = next((info.path for info in policies() if info.name == entry.policy), Path(entry.policy))
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return "unreadable"


def fingerprint(entry: Entry) -> str:
    """What the kernel runs for ``entry``, as one digest: any change in what it decides changes it."""
    text = json.dumps({"policy": entry.policy, "object": _object_digest(entry), "map": entry.map,
                       "name": entry.name, "tunables": entry.tunables,
                       "granularity": entry.granularity, "settings": entry.settings},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _path(pin: Path) -> Path:
    return state_dir() / "applied" / (hashlib.sha256(os.fsencode(pin)).hexdigest()[:32] + ".json")


def record(pin: Path | None, link_id: int, entry: Entry) -> None:
    """Remember that the link pinned at ``pin`` runs ``entry`` (best effort: a record that cannot
    be written only costs a replace at the next restart)."""
    if pin is None:
        return
    target = _path(pin)
    try:
        target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        replace_file(target, json.dumps({"pin": str(pin), "link_id": link_id,
                                         "fingerprint": fingerprint(entry)}), fsync=False)
    except OSError:
        pass


def recorded(pin: Path, link_id: int) -> str | None:
    """The fingerprint recorded for the link ``link_id`` pinned at ``pin``; None if unknown."""
    try:
        found = json.loads(_path(pin).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(found, dict) or found.get("pin") != str(pin) or found.get("link_id") != link_id:
        return None
    return found.get("fingerprint")


def forget(pin: Path | None) -> None:
    if pin is not None:
        _path(pin).unlink(missing_ok=True)
