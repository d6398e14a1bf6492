"""The daemon's output: one structured line per event, ``text`` or ``json``.

A line that cannot be written (a full disk under a file log, a closed
stderr) is reported on stderr and dropped: logging is never a reason to stop
the daemon, whose exit would detach every policy it keeps attached.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from typing import Any, TextIO

__all__ = ["Log"]


class Log:
    """Structured log lines: ``time level event key=value ...`` or one JSON object per line."""

    def __init__(self, stream: TextIO, json_lines: bool) -> None:
        self._stream = stream
        self._json = json_lines
        self.failed_writes = 0  # lines lost since the last one written

    def __call__(self, level: str, event: str, **fields: Any) -> None:
        now = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        if self._json:
            line = json.dumps({"time": now, "level": level, "event": event, **fields},
                              default=str, sort_keys=False)
        else:
            parts = [f"{key}={_text(value)}" for key, value in fields.items() if value is not None]
            line = " ".join([now, level, event, *parts])
        try:
            self._stream.write(line + "\n")
            self._stream.flush()
        except (OSError, ValueError) as exc:  # ValueError: the stream was closed
            self._lost(exc)
            return
        if self.failed_writes:
            self._report(f"bpfoom: the log is written again; {self.failed_writes} lines were lost")
            self.failed_writes = 0

    def close(self) -> None:
        """Close the stream unless it is stderr; lines that still cannot be written are lost."""
        if self._stream is sys.stderr:
            return
        try:
            self._stream.close()
        except OSError as exc:  # the buffered lines could not be flushed
            self._lost(exc)

    def _lost(self, exc: BaseException) -> None:
        """Say so on stderr once per run of failures (stderr may be the broken stream too)."""
        if not self.failed_writes:
            self._report(f"bpfoom: cannot write the log ({exc}); the policies stay attached, "
                         "log lines are dropped until writing works again")
        self.failed_writes += 1

    def _report(self, message: str) -> None:
        try:
            sys.stderr.write(message + "\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass


def _text(value: Any) -> str:
    text = json.dumps(value, default=str) if isinstance(value, (dict, list, tuple)) else str(value)
    return json.dumps(text) if (" " in text or not text) else text
