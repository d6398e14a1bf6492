"""``bpfoom run CONFIG``: keep a configuration of policies attached.

* Start: every ``[[attach]]`` entry is attached and pinned, or none is (the
  first failure rolls back what this start attached).  A pin left by an
  earlier run is re-adopted instead of attaching a second time: the link is
  switched to this run's freshly loaded object (a link update, atomic), or
  kept as it is where the kernel cannot update that struct_ops type.
* Running: each policy's decisions are written as log lines (``text`` or
  ``json``, one object per line), and so is every OOM kill on the machine,
  whoever made it (a :class:`~bpfoom.kill_watch.KillWatcher`: events "kill",
  "oom_no_kill", "overrun" with the fields of ``bpfoom events --json``).
  Where the watcher cannot run, one "kills_not_watched" warning says why.
* SIGHUP: the configuration is read again and only the difference is
  applied, all or nothing: tunables living in ``.data``/``.bss`` change in
  place, other changes load a new object and switch the link to it with a
  link update, entries that left the config are detached, new ones attached.
  A struct_ops type whose kernel side cannot update links (``bpf_oom_ops``
  in our kernel) is detached and attached again instead, logged as
  "replaced": not atomic, the next handler up decides in between.
* SIGTERM/SIGINT: everything is detached and unpinned, unless
  ``on_exit = "keep"``, which leaves pinned policies attached for the next run.

Under systemd (``NOTIFY_SOCKET`` set) it reports READY=1, RELOADING=1 and
STOPPING=1, with a STATUS= line that says how many policies are attached or,
after a refused reload, why it was refused.

The pieces: :mod:`.config` reads the file, :mod:`.plan` computes what a
reload changes, :mod:`.apply` changes it (with undo), :mod:`.log` writes the
lines; this module holds the signals and the loop.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from . import sd_notify as _sd_notify
from ..bpf.errors import BpfError, BusyError
from ..oom.kill_watch import KillWatcher
from ..oom.pinned_events import require_bpffs
from .apply import Applier, Running
from .config import Config, ConfigError, read_config
from .log import Log
from .plan import plan_reload

__all__ = ["Daemon", "run_daemon"]

POLL_INTERVAL_S = 0.2


class Daemon:
    """The daemon's state; ``run()`` is the main loop."""

    def __init__(self, config_path: str | os.PathLike, log: Log | None = None) -> None:
        self.config_path = Path(config_path)
        self.config: Config = read_config(self.config_path)
        self.log = log or Log(sys.stderr, False)
        self.attached = Applier(self.config.pin_dir, self.log, self._log_decision)
        self.reload_error: str | None = None  # why the last reload was refused
        self._stop = False
        self._reload = False
        self._watcher: KillWatcher | None = None

    @property
    def running(self) -> dict[str, Running]:
        return self.attached.running

    def _log_decision(self, entry_id: str, event: Any) -> None:
        self.log("info", "decision", id=entry_id, **event.to_json())

    # -- start, reload, stop -----------------------------------------------------------
    def start(self) -> None:
        """Attach (or adopt) every entry, or nothing."""
        self.attached.start(self.config.entries)

    def stop(self) -> None:
        """Detach everything (or leave pinned links, with on_exit = "keep")."""
        self.attached.stop(keep=self.config.on_exit == "keep")

    def reload(self) -> bool:
        """Apply the changed configuration, all or nothing; False (logged, and kept in
        ``reload_error``) if it was refused."""
        self.reload_error = None
        try:
            new = read_config(self.config_path)
        except (ConfigError, BpfError) as exc:
            self.log("error", "reload_refused", error=str(exc), kept="previous configuration")
            self.reload_error = str(exc)
            return False
        plan = plan_reload(self.running, self.config, new)
        if plan.restart_only:
            self.log("warning", "reload_partial",
                     why=f"[daemon] settings ({', '.join(plan.restart_only)}) change only on restart")
        try:
            self.attached.apply(plan)
        except Exception as exc:
            self.log("error", "reload_failed", error=str(exc), kept="previous configuration")
            self.reload_error = str(exc)
            return False
        self.config = replace(self.config, entries=new.entries)
        self.log("info", "reloaded", changes=len(plan.steps))
        return True

    def status(self) -> str:
        """systemd's STATUS= line: what is attached, and a refused reload."""
        attached = f"{len(self.running)} policies attached"
        if self.reload_error is None:
            return attached
        why = " ".join(self.reload_error.split())  # one line: the protocol is line-based
        return f"reload failed, previous configuration kept ({attached}): {why}"

    # -- main loop -----------------------------------------------------------------
    def request_stop(self, *_: Any) -> None:
        self._stop = True

    def request_reload(self, *_: Any) -> None:
        self._reload = True

    def run(self) -> int:
        """Start, then poll decisions until SIGTERM/SIGINT; reload on SIGHUP."""
        lock = self._lock_pin_dir()
        previous = {sig: signal.signal(sig, handler) for sig, handler in (
            (signal.SIGTERM, self.request_stop), (signal.SIGINT, self.request_stop),
            (signal.SIGHUP, self.request_reload))}
        try:
            self.start()
            self._watch_kills()
            _sd_notify.notify(f"READY=1\nSTATUS={self.status()}\nMAINPID={os.getpid()}")
            self.log("info", "ready", attached=len(self.running), pid=os.getpid())
            while not self._stop:
                if self._reload:
                    self._reload = False
                    _sd_notify.reloading()
                    self.reload()
                    _sd_notify.notify(f"READY=1\nSTATUS={self.status()}")
                self._poll()
            _sd_notify.notify("STOPPING=1")
            return 0
        finally:
            if self._watcher is not None:
                self._watcher.close()
                self._watcher = None
            self.stop()
            os.close(lock)
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _lock_pin_dir(self) -> int:
        """Hold an exclusive lock on pin_dir: two daemons on the same pins would fight over them."""
        require_bpffs(self.config.pin_dir)
        self.config.pin_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.config.pin_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise BusyError(errno.EBUSY, f"another bpfoom daemon runs with pin_dir "
                            f"{str(self.config.pin_dir)!r}; stop it, or give this configuration "
                            "its own pin_dir") from None
        return fd

    def _watch_kills(self) -> None:
        """Log every OOM kill on the machine; without a watcher, say why once and go on."""
        try:
            self._watcher = KillWatcher()
        except BpfError as exc:
            self.log("warning", "kills_not_watched", error=str(exc))
            return

        def kill(event: Any) -> None:
            fields = event.to_json()
            self.log("warning" if fields["kind"] == "overrun" else "info", fields.pop("kind"),
                     **fields)
        self._watcher.on_event(kill)

    def _poll(self) -> None:
        sources = []
        if self._watcher is not None:
            sources.append((None, lambda ms: self._watcher.poll(ms / 1000)))
        for running in self.running.values():
            if running.live_object and running.loaded.policy is not None:
                sources.append((running, lambda ms, r=running: r.loaded.policy.poll(ms / 1000)))
            elif running.earlier_events is not None:
                sources.append((running, lambda ms, r=running: r.earlier_events.poll(ms / 1000)))
        if not sources:
            time.sleep(POLL_INTERVAL_S)
            return
        share_ms = int(POLL_INTERVAL_S * 1000) // len(sources)
        for running, poll in sources:
            try:
                poll(share_ms)
            except BpfError as exc:  # e.g. a record of another schema: report, keep running
                self.log("error", "events_unreadable",
                         id=running.entry.id if running else "kill_watcher", error=str(exc))


def run_daemon(config_path: str | os.PathLike) -> int:
    """What ``bpfoom run`` does; returns the exit status."""
    config = read_config(config_path)
    stream = sys.stderr if config.log == "-" else open(config.log, "a", buffering=1)
    log = Log(stream, config.log_format == "json")
    try:
        return Daemon(config_path, log).run()
    finally:
        log.close()
