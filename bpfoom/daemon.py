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
STOPPING=1.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, TextIO

from . import _sd_notify
from ._load import LoadedPolicy, load
from ._pinned_events import EVENTS_SUFFIX, PinnedEvents, pin_events, require_bpffs
from .cgroup import Cgroup
from .daemon_config import Config, ConfigError, Entry, apply_granularity, read_config
from .errors import BpfError, BusyError
from .kill_watch import KillWatcher
from .link import Link

__all__ = ["Daemon", "run_daemon", "check_config"]

POLL_INTERVAL_S = 0.2
# A link update of a struct_ops type without .update: EOPNOTSUPP (or the kernel's ENOTSUPP).
_NO_UPDATE = (errno.EOPNOTSUPP, 524)


class Log:
    """Structured log lines: ``time level event key=value ...`` or one JSON object per line."""

    def __init__(self, stream: TextIO, json_lines: bool) -> None:
        self._stream = stream
        self._json = json_lines

    def __call__(self, level: str, event: str, **fields: Any) -> None:
        now = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        if self._json:
            line = json.dumps({"time": now, "level": level, "event": event, **fields},
                              default=str, sort_keys=False)
        else:
            parts = [f"{key}={_text(value)}" for key, value in fields.items() if value is not None]
            line = " ".join([now, level, event, *parts])
        self._stream.write(line + "\n")
        self._stream.flush()


def _text(value: Any) -> str:
    text = json.dumps(value, default=str) if isinstance(value, (dict, list, tuple)) else str(value)
    return json.dumps(text) if (" " in text or not text) else text


@dataclass
class Running:
    """One attached entry: its config, the object this run loaded, and its link."""

    entry: Entry
    loaded: LoadedPolicy
    link: Link
    pin: Path | None
    live_object: bool  # False: the link still runs the previous run's object
    adopted: bool = False  # pinned by an earlier run
    earlier_events: PinnedEvents | None = None  # the previous run's decisions, when not live

    @property
    def events_pin(self) -> Path | None:
        return None if self.pin is None else Path(f"{self.pin}{EVENTS_SUFFIX}")

    def repin_events(self) -> None:
        """Point the events pin at the decisions of the object the link now runs."""
        if self.events_pin is not None:
            self.events_pin.unlink(missing_ok=True)
            pin_events(self.loaded.object.maps, self.pin)

    def close(self, detach: bool) -> None:
        """Detach and unpin (``detach``), or just drop our references."""
        try:
            if self.earlier_events is not None:
                self.earlier_events.close()
            if detach:
                if not self.link.detached:
                    self.link.detach()
                if self.link.pinned_path is not None:
                    self.link.unpin()
                elif self.pin is not None and self.pin.exists():
                    self.pin.unlink()
                if self.events_pin is not None:
                    self.events_pin.unlink(missing_ok=True)
            self.link.close()
        finally:
            self.loaded.close()


class Daemon:
    """The daemon's state; ``run()`` is the main loop."""

    def __init__(self, config_path: str | os.PathLike, log: Log | None = None) -> None:
        self.config_path = Path(config_path)
        self.config: Config = read_config(self.config_path)
        self.log = log or Log(sys.stderr, False)
        self.running: dict[str, Running] = {}
        self._stop = False
        self._reload = False
        self._watcher: KillWatcher | None = None

    # -- helpers ---------------------------------------------------------------
    def _pin_path(self, config: Config, entry: Entry) -> Path | None:
        return config.pin_dir / entry.id if entry.pin else None

    def _cgroup_id(self, entry: Entry) -> int:
        if entry.cgroup is None:
            return 0
        with Cgroup.open(entry.cgroup) as cgroup:
            return cgroup.id

    def _load(self, entry: Entry) -> LoadedPolicy:
        loaded = load(entry.policy, entry.tunables, map_name=entry.map, register_as=entry.name)
        try:
            apply_granularity(loaded.policy, entry)  # before attach: the first OOM uses it
        except BaseException:
            loaded.close()
            raise
        return loaded

    def _watch(self, entry: Entry, loaded: LoadedPolicy) -> None:
        """Log the policy's decisions (objects without a decision stream have none)."""
        if loaded.policy is None:
            return

        def decision(event: Any) -> None:
            self.log("info", "decision", id=entry.id, **event.to_json())
        loaded.policy.on_event(decision)

    def _attach(self, config: Config, entry: Entry, loaded: LoadedPolicy) -> Running:
        """Attach and pin the link, and the decision events beside it (for a later run)."""
        pin = self._pin_path(config, entry)
        if pin is not None:
            pin.parent.mkdir(parents=True, exist_ok=True)
            Path(f"{pin}{EVENTS_SUFFIX}").unlink(missing_ok=True)  # a stale one of a dead run
        link = loaded.attach(cgroup=entry.cgroup, pin=pin)
        running = Running(entry, loaded, link, pin, True)
        if pin is not None:
            try:
                pin_events(loaded.object.maps, pin)
            except BaseException:
                running.close(detach=True)
                raise
        return running

    def _adopt(self, config: Config, entry: Entry) -> Running | None:
        """Take over the link an earlier run pinned for ``entry``; None if there is none."""
        pin = self._pin_path(config, entry)
        if pin is None or not pin.exists():
            return None
        link = Link.from_pinned(pin)
        try:
            info = link.info()
            if not info.map_id or (info.cgroup_id is not None and info.cgroup_id != self._cgroup_id(entry)):
                self.log("warning", "stale_pin", id=entry.id, pin=pin, link=info.id,
                         why="detached or attached elsewhere; replacing it")
                if info.map_id:
                    link.detach()
                link.unpin()
                link.close()
                return None
            loaded = self._load(entry)
            try:
                link.update(loaded.struct_ops)
                live = True
            except BpfError as exc:
                if exc.errno not in _NO_UPDATE:
                    raise
                live = False
                self.log("warning", "adopted_without_update", id=entry.id, link=info.id,
                         why=f"the kernel cannot switch this link to a new object ({exc}); the "
                         "previous run's object keeps running until a reload changes it")
            running = Running(entry, loaded, link, pin, live, adopted=True)
            if live:
                running.repin_events()
            elif running.events_pin.exists():
                running.earlier_events = PinnedEvents(
                    running.events_pin, lambda event: self.log("info", "decision", id=entry.id,
                                                               **event.to_json()))
            self.log("info", "adopted", id=entry.id, policy=loaded.name, link=info.id, pin=pin,
                     decisions="logged" if live or running.earlier_events else "not available")
            return running
        except BaseException:
            link.close()
            raise

    # -- start and stop ----------------------------------------------------------
    def start(self) -> None:
        """Attach (or adopt) every entry, or nothing."""
        done: list[Running] = []
        current = "-"
        try:
            for entry in self.config.entries:
                current = entry.id
                running = self._adopt(self.config, entry)
                if running is None:
                    loaded = self._load(entry)
                    try:
                        running = self._attach(self.config, entry, loaded)
                    except BaseException:
                        loaded.close()
                        raise
                    self.log("info", "attached", id=entry.id, policy=loaded.name,
                             target=entry.cgroup or "system", link=running.link.id,
                             pin=running.pin)
                done.append(running)
        except BaseException as exc:
            for running in reversed(done):
                running.close(detach=not running.adopted)  # an adopted pin stays as it was
            self.log("error", "start_failed", entry=current, error=str(exc),
                     rolled_back=len(done))
            raise
        for running in done:
            self.running[running.entry.id] = running
            if running.live_object:
                self._watch(running.entry, running.loaded)

    def stop(self) -> None:
        """Detach everything (or leave pinned links, with on_exit = "keep")."""
        keep = self.config.on_exit == "keep"
        for key, running in list(self.running.items()):
            kept = keep and running.pin is not None
            try:
                running.close(detach=not kept)
                self.log("info", "kept" if kept else "detached", id=key, pin=running.pin)
            except BpfError as exc:
                self.log("error", "detach_failed", id=key, error=str(exc))
            del self.running[key]

    # -- reload ------------------------------------------------------------------
    def reload(self) -> bool:
        """Apply the changed configuration, all or nothing; False (logged) if it was refused."""
        try:
            new = read_config(self.config_path)
        except (ConfigError, BpfError) as exc:
            self.log("error", "reload_refused", error=str(exc), kept="previous configuration")
            return False
        settings = ("pin_dir", "on_exit", "log", "log_format")
        if any(getattr(new, name) != getattr(self.config, name) for name in settings):
            self.log("warning", "reload_partial",
                     why="[daemon] settings (pin_dir, on_exit, log, log_format) change only on restart")
        wanted = {entry.id: entry for entry in new.entries}
        undo: list[Callable[[], None]] = []
        prepared: list[LoadedPolicy] = []
        after: list[Callable[[], None]] = []  # commits that cannot fail: run once all succeeded
        changes = 0
        to_add = [entry for entry in new.entries if entry.id not in self.running]
        try:
            for key, running in list(self.running.items()):
                entry = wanted.get(key)
                if entry == running.entry:
                    continue
                changes += 1
                if entry is None or (entry.cgroup, entry.pin) != (running.entry.cgroup, running.entry.pin):
                    self._remove(key, running, undo, after)  # gone, or moved: detach, then attach anew
                    if entry is not None:
                        to_add.append(entry)
                    continue
                if entry.same_program(running.entry) and running.live_object and \
                        self._set_in_place(running, entry, undo):
                    continue
                loaded = self._load(entry)
                prepared.append(loaded)
                self._switch(running, entry, loaded, undo, after)
            for entry in to_add:
                changes += 1
                loaded = self._load(entry)
                prepared.append(loaded)
                running = self._attach(self.config, entry, loaded)
                undo.append(lambda r=running: r.close(detach=True))
                after.append(lambda e=entry, r=running: (
                    self.running.__setitem__(e.id, r), self._watch(e, r.loaded),
                    self.log("info", "attached", id=e.id, policy=r.loaded.name,
                             target=e.cgroup or "system", link=r.link.id, pin=r.pin)))
        except BaseException as exc:
            for step in reversed(undo):
                try:
                    step()
                except BpfError as failure:
                    self.log("error", "rollback_failed", error=str(failure))
            for loaded in prepared:
                loaded.close()
            self.log("error", "reload_failed", error=str(exc), kept="previous configuration")
            if not isinstance(exc, Exception):
                raise
            return False
        for step in after:
            step()
        self.config = Config(new.entries, self.config.pin_dir, self.config.on_exit,
                             self.config.log, self.config.log_format)
        self.log("info", "reloaded", changes=changes)
        return True

    def _set_in_place(self, running: Running, entry: Entry, undo: list) -> bool:
        """Change tunables on the live object; False if one of them cannot change in place."""
        changed = {k: v for k, v in entry.tunables.items() if running.entry.tunables.get(k) != v}
        if set(running.entry.tunables) - set(entry.tunables):
            return False  # a tunable back to its default: only a fresh load knows the default
        if not all(running.loaded.mutable(key) for key in changed):
            return False
        before = {key: running.loaded.current(key) for key in changed}
        old_entry = running.entry

        def restore() -> None:
            for key, value in before.items():
                running.loaded.set(key, value)
            running.entry = old_entry
        undo.append(restore)
        undo.append(apply_granularity(running.loaded.policy, entry, old_entry))
        for key, value in changed.items():
            running.loaded.set(key, _typed(running.loaded, key, value))
        running.entry = entry
        self.log("info", "tunables_set", id=entry.id, **{f"set.{k}": v for k, v in changed.items()})
        return True

    def _switch(self, running: Running, entry: Entry, loaded: LoadedPolicy, undo: list,
                after: list) -> None:
        """Point the entry's link at a newly loaded object: a link update (atomic), or, where
        the kernel cannot update this struct_ops type, detach and attach anew."""
        old_loaded, old_entry, old_link = running.loaded, running.entry, running.link
        try:
            running.link.update(loaded.struct_ops)
            how = "updated"
        except BpfError as exc:
            if exc.errno not in _NO_UPDATE:
                raise
            self._replace(running, loaded)
            how = "replaced"
        running.loaded, running.entry, running.live_object = loaded, entry, True
        running.repin_events()

        def back() -> None:
            if how == "updated":
                running.link.update(old_loaded.struct_ops)
            else:
                self._replace(running, old_loaded)
            running.loaded, running.entry = old_loaded, old_entry
            running.repin_events()
        undo.append(back)

        def finish() -> None:
            if how == "replaced":
                old_link.close()
                self.log("warning", "replaced", id=entry.id, policy=loaded.name,
                         link=running.link.id, why="this kernel cannot update the link of a "
                         f"{loaded.struct_ops.struct_name} in place, so it was detached and "
                         "attached again (briefly, the next handler up decided)")
            else:
                self.log("info", "updated", id=entry.id, policy=loaded.name, link=running.link.id)
            old_loaded.close()
            self._watch(entry, loaded)
        after.append(finish)

    def _replace(self, running: Running, loaded: LoadedPolicy) -> None:
        """Detach the running link, attach ``loaded`` to the same target, move the pin to it."""
        old = running.link
        old.detach()
        try:
            link = loaded.attach(cgroup=running.entry.cgroup, pin=None)
        except BaseException:
            old.close()
            running.link = running.loaded.attach(cgroup=running.entry.cgroup, pin=None)
            raise
        if running.pin is not None:
            if old.pinned_path is not None:
                old.unpin()
            running.pin.unlink(missing_ok=True)
            link.pin(running.pin)
        if running.earlier_events is not None:
            running.earlier_events.close()
            running.earlier_events = None
        running.link = link

    def _remove(self, key: str, running: Running, undo: list, after: list) -> None:
        """Detach an entry that left the config (undo: attach its object again)."""
        running.link.detach()

        def back() -> None:
            running.link.close()
            running.link = running.loaded.attach(cgroup=running.entry.cgroup, pin=None)
            if running.pin is not None:
                running.pin.unlink(missing_ok=True)
                running.link.pin(running.pin)
        undo.append(back)

        def finish() -> None:
            self.running.pop(key)
            running.close(detach=True)
            self.log("info", "detached", id=key, why="removed from the configuration")
        after.append(finish)

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
            _sd_notify.notify(f"READY=1\nSTATUS={len(self.running)} policies attached\nMAINPID={os.getpid()}")
            self.log("info", "ready", attached=len(self.running), pid=os.getpid())
            while not self._stop:
                if self._reload:
                    self._reload = False
                    _sd_notify.reloading()
                    self.reload()
                    _sd_notify.notify(f"READY=1\nSTATUS={len(self.running)} policies attached")
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
                sources.append((running, running.earlier_events.poll))
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


def _typed(loaded: LoadedPolicy, key: str, value: Any) -> Any:
    """A TOML string for a numeric tunable is converted like `--set` text."""
    from ._load import convert_text

    current = loaded.current(key)
    if isinstance(value, str) and current is not None and not isinstance(current, str):
        return convert_text(value, current)
    return value


def check_config(config_path: str | os.PathLike) -> Config:
    """Read CONFIG and check that each entry's policy exists, without loading anything."""
    from ._load import is_known_source

    config = read_config(config_path)
    for entry in config.entries:
        is_known_source(entry.policy, where=f"{config_path} entry {entry.id!r}")
    return config


def run_daemon(config_path: str | os.PathLike) -> int:
    """What ``bpfoom run`` does; returns the exit status."""
    config = read_config(config_path)
    stream = sys.stderr if config.log == "-" else open(config.log, "a", buffering=1)
    try:
        return Daemon(config_path, Log(stream, config.log_format == "json")).run()
    finally:
        if stream is not sys.stderr:
            stream.close()
