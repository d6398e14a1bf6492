"""``bpfoom run CONFIG``: keep a configuration of policies attached.

* Start: the configuration is checked as ``run --check`` checks it, then
  every target is resolved (:mod:`.resolve`): each entry attaches to the
  cgroups its target names now (a pattern or Kubernetes target: one
  attachment per matching cgroup).  Those are attached and pinned, or none
  is (the first failure rolls back what this start attached).  A target
  that resolves to nothing yet (a cgroup that does not exist, a pattern
  without a match, a unit that does not run) is *pending*: said in the log,
  the STATUS= line, ``bpfoom status`` and the metrics, and attached when it
  appears; it never holds the other entries back.  An entry that can never
  attach on this kernel with these privileges (:mod:`.preflight`) is
  *failed*, never pending nor retried: the daemon runs degraded (STATUS=
  "degraded: ...", ``bpfoom status``, ``bpfoom_protected`` 0), or exits 1
  when no entry can attach.  A pin left by an earlier run is re-adopted
  instead of attaching a second time: the link is switched to this run's
  freshly loaded object (a link update, atomic); where the kernel cannot
  update that struct_ops type, it is kept if it runs this configuration (its
  recorded fingerprint, :mod:`.applied`) and replaced otherwise, the
  protection gap logged; pins no entry owns any more are removed.
* Running: one wait (epoll) over every event source: the policies'
  decisions and every OOM kill on the machine (a
  :class:`~bpfoom.kill_watch.KillWatcher`) are written as log lines
  (``text`` or ``json``); the cgroup hierarchy is watched (inotify), so a
  cgroup a target names that appears is attached and one that goes is
  detached.  An attach that fails then is retried with a bounded
  exponential backoff (1 s, 2 s, 4 s, ... at most 60 s), as is a unit
  systemd could not be asked about.
* SIGHUP: the configuration is checked and resolved again, and the
  difference is planned in full before anything changes, then applied all
  or nothing: tunables living in ``.data``/``.bss`` change in place, other
  changes load a new object and switch the link to it with a link update,
  attachments that are no longer wanted are detached, new ones attached.
  A struct_ops type whose kernel side cannot update links (``bpf_oom_ops``
  in our kernel) is detached and attached again instead, logged as
  "replaced": not atomic, the next handler up decides in between.  Pins
  follow: none ever names a detached link, whatever fails.
* SIGTERM/SIGINT: everything is detached and unpinned, unless
  ``on_exit = "keep"``, which leaves pinned policies attached for the next run.

Under systemd (``NOTIFY_SOCKET`` set) it reports READY=1 once attached,
RELOADING=1 with MONOTONIC_USEC= when a reload starts and READY=1 when it
ended (``Type=notify-reload``), and STOPPING=1, each with a STATUS= line
saying how many policies are attached and pending or, after a refused
reload, why it was refused.  A log, metrics or state file that cannot be
written is reported and never detaches anything.

The pieces: :mod:`.config` reads the file, :mod:`.resolve` finds the
cgroups, :mod:`.plan` computes what a reload changes, :mod:`.apply` changes
it (with undo), :mod:`.log` writes the lines, :mod:`.state` the state file;
this module holds the signals and the loop.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from . import sd_notify as _sd_notify
from ..bpf.errors import BpfError, BusyError
from ..bpf.waiter import SourceSet
from ..oom.attachments import attached
from ..oom.kill_watch import KillWatcher
from ..oom.pinned_events import require_bpffs
from ..oom.targets import CgroupWatcher
from .apply import Applier, Running
from .config import Config, Entry, check_config, read_config
from .hook import KillHook
from .kube_events import ApiServer, KubeEvents
from .journal import Journal
from .log import Log
from .metrics import Metrics
from .plan import plan_reload
from .preflight import is_permanent, never_attaches
from .resolve import Pending, Resolver
from .state import remove_state, write_state
from .serve import MetricsServer
from .victim import KnownCgroups, describe

__all__ = ["Daemon", "run_daemon", "backoff", "RETRY_FIRST_S", "RETRY_MAX_S"]

RETRY_FIRST_S = 1.0  # the first retry of a failed attach comes this long after it...
RETRY_MAX_S = 60.0  # ...each next one twice as late, at most this late
METRICS_EVERY_S = 2.0  # the metrics file is rewritten at most this often
RESCAN_S = 5.0  # without a cgroup watcher (inotify refused), targets are resolved this often


def backoff(attempt: int) -> float:
    """Seconds before retrying after failure number ``attempt`` (1, 2, ...): 1, 2, 4 ... 60."""
    return min(RETRY_FIRST_S * 2 ** (max(attempt, 1) - 1), RETRY_MAX_S)


@dataclass(frozen=True)
class Failed:
    """A configured entry (or one attachment of it) that can never attach on this kernel."""

    entry: str  # the configured entry's id
    target: str
    why: str
    attachment: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"entry": self.entry, "target": self.target, "why": self.why,
                "attachment": self.attachment}


@dataclass
class Retry:
    """An attachment whose attach failed: tried again at ``due`` (time.monotonic())."""

    entry: Entry | None  # None: the units systemd could not be asked about
    attempts: int
    due: float
    error: str


class Daemon:
    """The daemon's state; ``run()`` is the main loop."""

    def __init__(self, config_path: str | os.PathLike[str], log: Log | None = None,
                 metrics_listen: str | None = None) -> None:
        self.config_path = Path(config_path)
        self.config: Config = check_config(self.config_path)
        self.log = log or Log(sys.stderr, False)
        self.attached = Applier(self.config.pin_dir, self.log, self._on_decision)
        self.failed: dict[str, Failed] = {}  # entry or attachment id -> why it never attaches
        self._failed_logged: set[Failed] = set()
        self.resolver = Resolver(self._possible(self.config.entries),
                                 pod_log_dir=self.config.pod_log_dir)
        self.pending: list[Pending] = []
        self.known_cgroups = KnownCgroups()  # names a victim whose cgroup went before its kill
        self.retries: dict[str, Retry] = {}
        self.reload_error: str | None = None  # why the last reload was refused
        self.reloads = 0  # reloads finished (applied or refused): `bpfoom reload` waits for it
        self.metrics = Metrics()
        self.metrics.init(_policy_names(self.config.entries),
                          [entry.id for entry in self.config.entries])
        self.metrics_listen = metrics_listen
        self._server: MetricsServer | None = None
        self.journal = self._journal()
        self.hook = KillHook(list(self.config.kill_hook), self.log,
                             self.config.kill_hook_interval) if self.config.kill_hook else None
        self.kube_events = self._kube_events()
        self._stop = False
        self._reload = False
        self._ready = False
        self._watcher: KillWatcher | None = None
        self._cgroups: CgroupWatcher | None = None
        self._rescan_due: float | None = None  # without a cgroup watcher
        self._unit_retry: Retry | None = None
        self._sources: SourceSet | None = None
        self._sources_of: tuple = ()
        self._metrics_due: float | None = None
        self._metrics_written = 0.0
        self._failing: set[str] = set()  # "metrics", "state": reported once until they work again
        self._status_sent: str | None = None
        self._pending_logged: set[tuple] = set()
        self._published: dict[str, Any] | None = None

    @property
    def running(self) -> dict[str, Running]:
        return self.attached.running

    # -- events ----------------------------------------------------------------------
    # Each event's JSON form is built once, for the log line and the metrics both.
    def _on_decision(self, entry_id: str, event: Any) -> None:
        fields = event.to_json()
        victim = describe(fields.get("victim_cgroup_id") or 0, pod_log_dir=self.config.pod_log_dir,
                          known=self.known_cgroups.paths)
        level = "warning" if fields.get("action") == "killed" else "info"
        self.log(level, "decision", id=entry_id, **fields, **victim)
        self._journal_event(event, {**fields, **victim}, entry_id)
        self._observe(event, fields)

    def _on_kill(self, event: Any) -> None:
        fields = event.to_json()
        logged = dict(fields)
        kind = logged.pop("kind")
        victim = describe(fields["victim_cgroup_id"], pod_log_dir=self.config.pod_log_dir,
                          known=self.known_cgroups.paths) \
            if kind == "kill" else {}
        self.log("info" if kind == "oom_no_kill" else "warning", kind, **logged, **victim)
        self._journal_event(event, {**fields, **victim})
        if kind == "kill" and self.hook is not None:
            self.hook.run({**logged, **victim})
        if kind == "kill" and self.kube_events is not None:
            self.kube_events.post({**logged, **victim})
        self._observe(event, fields)

    def _kube_events(self) -> KubeEvents | None:
        """The Event poster if configured; a pod that cannot reach its API server says so once
        and runs on without Events (the policies matter more)."""
        where = self.config.kubernetes_events
        if where == "off":
            return None
        try:
            return KubeEvents(ApiServer.in_cluster() if isinstance(where, str) else where, self.log)
        except (ValueError, OSError) as exc:  # OSError: a CA file that does not load
            self.log("warning", "kube_events_off", why=str(exc))
            return None

    def _journal(self) -> Journal | None:
        """The journal writer: under systemd (JOURNAL_STREAM, "auto"), or at a configured socket."""
        where = self.config.journal
        if where == "off" or (where == "auto" and not (os.environ.get("JOURNAL_STREAM")
                                                        and Journal.available())):
            return None
        return Journal() if where == "auto" else Journal(where)

    def _journal_event(self, event: Any, fields: dict[str, Any], entry_id: str | None = None
                       ) -> None:
        if self.journal is None:
            return
        where = fields.get("victim_unit") or fields.get("victim_cgroup")
        pod = fields.get("victim_pod")
        message = str(event) + (f" ({fields['victim_namespace']}/{pod})" if pod else
                                f" ({where})" if where else "")
        try:
            if not self.journal.event(event, entry_id, fields, message):
                self._failed("journal", "journal_not_written", OSError("the journal is busy"))
            else:
                self._recovered("journal")
        except (OSError, ValueError) as exc:
            self._failed("journal", "journal_not_written", exc)

    def _observe(self, event: Any, fields: dict[str, Any] | None = None) -> None:
        try:
            self.metrics.observe(event, fields)
        except (TypeError, KeyError, ValueError) as exc:  # an event of another schema
            self.log("warning", "not_counted", error=str(exc))
        if self.config.metrics_file is not None and self._metrics_due is None:
            self._metrics_due = max(time.monotonic(), self._metrics_written + METRICS_EVERY_S)

    # -- start, reload, stop -----------------------------------------------------------
    def start(self) -> None:
        """Attach (or adopt) every attachment the targets resolve to now, or nothing; the
        targets that resolve to nothing yet are pending."""
        if self.config.entries and not self.resolver.entries:
            error = BpfError(errno.EOPNOTSUPP, "no configured entry can attach here: " + "; ".join(
                f"{item.entry}: {item.why}" for item in self.failed.values()))
            self.log("error", "start_failed", entry="-", error=str(error), rolled_back=0)
            _sd_notify.notify(f"STATUS={' '.join(str(error).split())}")
            raise error
        self._watch_cgroups()  # before resolving: what appears from now on is seen
        wanted, pending = self.resolver.resolve()
        self.attached.start(wanted.values())
        self.known_cgroups.remember(r.entry.cgroup for r in self.running.values() if r.entry.cgroup)
        self._remove_orphans(pending)
        self._schedule_units()
        self._set_pending(pending)

    def stop(self) -> None:
        """Detach everything (or leave pinned links, with on_exit = "keep")."""
        self.attached.stop(keep=self.config.on_exit == "keep")

    def sync(self) -> None:
        """Resolve the targets again: attach what appeared (or is due for a retry), detach
        what went.  Each attachment on its own: a failure is retried, never rolled back."""
        now = time.monotonic()
        try:
            wanted, pending = self.resolver.resolve()
        except BpfError as exc:
            self.log("error", "resolve_failed", error=str(exc))
            return
        for key in list(self.running):
            if key not in wanted or self.running[key].entry != wanted[key]:
                self.attached.detach_one(key, "its cgroup is gone" if key not in wanted
                                         else "its target now resolves to another cgroup")
        for key in [key for key in self.retries if key not in wanted]:
            del self.retries[key]
        for key in [key for key, item in self.failed.items()
                    if item.attachment is not None and key not in wanted]:
            del self.failed[key]  # its cgroup went: nothing to report any more
        for key, entry in wanted.items():
            if key in self.running or (key in self.failed and self.failed[key].attachment):
                continue
            retry = self.retries.get(key)
            if retry is not None and retry.entry == entry and retry.due > now:
                continue
            try:
                self.attached.attach_one(entry)
            except OSError as exc:
                self.metrics.attach_failed(entry.configured_id)
                if is_permanent(exc):
                    self.retries.pop(key, None)
                    self._fail(Failed(entry.configured_id, entry.cgroup or "system", str(exc), key))
                    continue
                attempts = retry.attempts + 1 if retry is not None and retry.entry == entry else 1
                delay = backoff(attempts)
                self.retries[key] = Retry(entry, attempts, now + delay, str(exc))
                self.log("warning", "attach_failed", id=key, entry=entry.configured_id,
                         target=entry.cgroup or "system", error=str(exc), attempt=attempts,
                         retry_in=delay)
            else:
                self.retries.pop(key, None)
        self.known_cgroups.remember(r.entry.cgroup for r in self.running.values() if r.entry.cgroup)
        self._remove_orphans(pending)
        self._set_pending(pending)

    def _remove_orphans(self, pending: list[Pending]) -> None:
        """Remove the pins nothing configured owns, and pending entries' pins on links the
        kernel detached (a kept link whose cgroup went).  A pending entry's attached pin stays:
        a unit systemd cannot tell about yet may well run, its policy attached by the previous
        run; adopted once the target resolves.  A failed entry's too: the configuration still
        names it."""
        keep = {item.entry for item in pending} | set(self.failed) | set(self.retries)
        self.attached.remove_orphans(keep=keep)

    def reload(self) -> bool:
        """Apply the changed configuration, all or nothing; False (logged, and kept in
        ``reload_error``) if it was refused."""
        self.reload_error = None
        failed_before, self.failed = self.failed, {}
        try:
            new = check_config(self.config_path)
            resolver = Resolver(self._possible(new.entries), pod_log_dir=self.config.pod_log_dir)
            wanted, _ = resolver.resolve()
        except BpfError as exc:
            self.failed = failed_before
            self.log("error", "reload_refused", error=str(exc), kept="previous configuration")
            self.reload_error = str(exc)
            return False
        # Attachments already failing stay out of the all-or-nothing change: retried after it.
        waiting = {key: entry for key, entry in wanted.items()
                   if key not in self.running and key in self.retries}
        changing = {key: entry for key, entry in wanted.items() if key not in waiting}
        plan = plan_reload(self.running, changing, self.config, new)
        if plan.restart_only:
            self.log("warning", "reload_partial",
                     why=f"[daemon] settings ({', '.join(plan.restart_only)}) change only on restart")
        try:
            self.attached.apply(plan)
        except Exception as exc:
            self.failed = failed_before
            self.log("error", "reload_failed", error=str(exc), kept="previous configuration")
            self.reload_error = str(exc)
            return False
        self.config = replace(self.config, entries=new.entries)
        self.metrics.init(_policy_names(new.entries), [entry.id for entry in new.entries])
        self.resolver = resolver
        now = time.monotonic()
        # a changed entry is tried at once, its backoff starting over; the others keep theirs
        self.retries = {key: Retry(waiting[key], 0, now, retry.error)
                        if retry.entry != waiting[key] else retry
                        for key, retry in self.retries.items() if key in waiting}
        self._watch_cgroups()
        self._unit_retry = None
        self._schedule_units()
        self.sync()
        self.log("info", "reloaded", changes=len(plan.steps))
        return True

    def _possible(self, entries: tuple[Entry, ...]) -> list[Entry]:
        """The entries that may attach here; the others are recorded (and logged) as failed."""
        possible = []
        for entry in entries:
            why = never_attaches(entry)
            if why is None:
                possible.append(entry)
            else:
                self._fail(Failed(entry.id, str(entry.target), why))
        return possible

    def _fail(self, item: Failed) -> None:
        self.failed[item.attachment or item.entry] = item
        if item not in self._failed_logged:
            self._failed_logged.add(item)
            self.log("error", "failed", id=item.entry, target=item.target, why=item.why,
                     attachment=item.attachment, retried="never: it cannot work on this kernel "
                     "with these privileges")

    def status(self) -> str:
        """systemd's STATUS= line: what failed, is attached and pending, and a refused reload."""
        count = len(self.running)
        attached = f"{count} {'policy' if count == 1 else 'policies'} attached"
        if self.pending:
            shown = "; ".join(f"{p.entry}: {p.why}" for p in self.pending[:3])
            more = f"; and {len(self.pending) - 3} more" if len(self.pending) > 3 else ""
            attached += f", {len(self.pending)} pending ({shown}{more})"
        if self.failed:
            items = list(self.failed.values())
            shown = "; ".join(f"{f.attachment or f.entry}: {f.why}" for f in items[:3])
            more = f"; and {len(items) - 3} more" if len(items) > 3 else ""
            attached = f"degraded: {len(items)} failed ({shown}{more}); {attached}"
        if self.reload_error is not None:
            attached = f"reload failed, previous configuration kept ({attached}): {self.reload_error}"
        return " ".join(attached.split())  # one line: the protocol is line-based

    # -- targets ---------------------------------------------------------------------
    def _watch_cgroups(self) -> None:
        """Watch what the targets' resolution depends on (a new watcher when that changed)."""
        patterns = self.resolver.patterns()
        if self._cgroups is not None and list(self._cgroups.patterns) == patterns:
            return
        if self._cgroups is not None:
            self._cgroups.close()
            self._cgroups = None
        self._rescan_due = None
        if not patterns:
            return
        try:
            self._cgroups = CgroupWatcher(patterns)
        except OSError as exc:
            self.log("error", "cgroups_not_watched", error=str(exc),
                     why=f"targets are resolved again every {RESCAN_S:.0f} s instead")
            self._rescan_due = time.monotonic() + RESCAN_S

    def _schedule_units(self) -> None:
        """Retry the units systemd could not be asked about, with backoff."""
        unresolved = self.resolver.units_unresolved
        if not unresolved:
            self._unit_retry = None
        elif self._unit_retry is None:
            self._unit_retry = Retry(None, 1, time.monotonic() + backoff(1), ", ".join(unresolved))

    def _retry_units(self) -> None:
        retry = self._unit_retry
        if retry is None:
            return
        changed = self.resolver.refresh_units()
        if self.resolver.units_unresolved:
            self._unit_retry = Retry(None, retry.attempts + 1,
                                     time.monotonic() + backoff(retry.attempts + 1), retry.error)
        else:
            self._unit_retry = None
        if changed:
            self._watch_cgroups()
            self.sync()

    def _set_pending(self, pending: list[Pending]) -> None:
        now = time.monotonic()
        self.pending = pending + [
            Pending(retry.entry.configured_id, retry.entry.cgroup or "system", retry.error,
                    attachment=key, retry_in=round(max(0.0, retry.due - now), 1))
            for key, retry in self.retries.items() if retry.entry is not None]
        seen = set()
        for item in self.pending:
            key = (item.entry, item.target, item.attachment, item.why)
            seen.add(key)
            if key not in self._pending_logged:
                self.log("warning", "pending", id=item.entry, target=item.target, why=item.why,
                         attachment=item.attachment, retry_in=item.retry_in)
        self._pending_logged = seen
        self._publish()

    # -- what others read: STATUS=, the state file, the metrics ------------------------
    def _state(self) -> dict[str, Any]:
        return {
            "config": str(self.config_path), "pin_dir": str(self.config.pin_dir),
            "status": self.status(), "reload_error": self.reload_error, "reloads": self.reloads,
            "attachments": [{"id": key, "entry": running.entry.configured_id,
                             "target": running.entry.cgroup or "system",
                             "link_id": running.link.id,
                             "pin": None if running.pin is None else str(running.pin)}
                            for key, running in self.running.items()],
            "pending": [item.to_json() for item in self.pending],
            "failed": [item.to_json() for item in self.failed.values()],
        }

    def _publish(self) -> None:
        """Write what changed: the state file, the gauges, STATUS= (nothing if nothing did:
        a busy cgroup tree wakes the daemon often)."""
        state = self._state()
        if state == self._published:
            return
        self._published = state
        try:
            write_state(os.getpid(), state)
            self._recovered("state")
        except OSError as exc:
            self._failed("state", "state_not_written", exc)
        self.metrics.set_pending(self.pending)
        self.metrics.set_protected(self._protected())
        if self.config.metrics_file is not None or self._server is not None:
            try:
                self.metrics.set_attached(attached())
            except OSError as exc:  # the link list needs CAP_SYS_ADMIN
                self._failed("attached", "attached_not_counted", exc)
            else:
                self._recovered("attached")
            if self.config.metrics_file is not None:
                self._metrics_due = time.monotonic()
        if self._ready:
            self._notify_status()

    def _protected(self) -> dict[str, bool]:
        """Configured entry id -> whether all it resolves to now is attached (and something is)."""
        ids = [entry.id for entry in self.config.entries]
        attached = {running.entry.configured_id for running in self.running.values()}
        waiting = {item.entry for item in self.pending} | {item.entry for item in self.failed.values()}
        return {entry: entry in attached and entry not in waiting for entry in ids}

    def _notify_status(self) -> None:
        status = self.status()
        if status != self._status_sent:
            _sd_notify.notify(f"STATUS={status}")
            self._status_sent = status

    def _write_metrics(self) -> None:
        self._metrics_due = None
        self._metrics_written = time.monotonic()
        if self.config.metrics_file is None:
            return
        try:
            self.metrics.write(self.config.metrics_file)
            self._recovered("metrics")
        except OSError as exc:
            self._failed("metrics", "metrics_not_written", exc)

    def _failed(self, what: str, event: str, exc: BaseException) -> None:
        if what not in self._failing:
            self._failing.add(what)
            self.log("error", event, error=str(exc), why="reported once until it works again; "
                     "the policies stay attached")

    def _recovered(self, what: str) -> None:
        if what in self._failing:
            self._failing.discard(what)
            self.log("info", f"{what}_written_again")

    # -- main loop -----------------------------------------------------------------
    def request_stop(self, *_: Any) -> None:
        self._stop = True

    def request_reload(self, *_: Any) -> None:
        self._reload = True

    def run(self) -> int:
        """Start, then wait on every event source until SIGTERM/SIGINT; reload on SIGHUP."""
        lock = self._lock_pin_dir()
        wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        previous_wakeup = signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
        previous = {sig: signal.signal(sig, handler) for sig, handler in (
            (signal.SIGTERM, self.request_stop), (signal.SIGINT, self.request_stop),
            (signal.SIGHUP, self.request_reload))}
        try:
            if self.metrics_listen:
                self._server = MetricsServer(self.metrics, self.metrics_listen)
                self.log("info", "metrics_served", url=f"http://{self.metrics_listen}/metrics",
                         via=self._server.via)
            self.start()
            self._watch_kills()
            self._status_sent = self.status()
            _sd_notify.notify(f"READY=1\nSTATUS={self._status_sent}\nMAINPID={os.getpid()}")
            self._ready = True
            self.log("warning" if self.failed else "info", "ready", attached=len(self.running),
                     pending=len(self.pending), failed=len(self.failed), pid=os.getpid())
            while not self._stop:
                if self._reload:
                    self._reload = False
                    _sd_notify.reloading(f"reloading {self.config_path}")
                    self._ready = False  # the reload's outcome goes with its READY=1, not before
                    self.metrics.reloaded(self.reload())
                    self.reloads += 1
                    self._publish()
                    self._status_sent = self.status()
                    _sd_notify.notify(f"READY=1\nSTATUS={self._status_sent}")
                    self._ready = True
                    continue
                self._wait_once(wake_read)
            _sd_notify.notify("STOPPING=1")
            return 0
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(previous_wakeup)
            for fd in (wake_read, wake_write):
                os.close(fd)
            if self._sources is not None:
                self._sources.close()
            if self._cgroups is not None:
                self._cgroups.close()
            if self._watcher is not None:
                self._watcher.close()
                self._watcher = None
            if self.hook is not None:
                self.hook.close()
            if self.kube_events is not None:
                self.kube_events.close()
            if self._server is not None:
                self._server.close()
            if self.journal is not None:
                self.journal.close()
            self.stop()
            remove_state(os.getpid())
            os.close(lock)

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
        self._watcher.on_event(self._on_kill)
        self.metrics.set_kill_watcher(True)

    def _readers(self) -> dict[Any, Any]:
        """key -> event source (``fileno()``, ``poll(0)``) of everything to wait on now."""
        readers: dict[Any, Any] = {}
        if self._watcher is not None:
            readers["kill_watcher"] = self._watcher
        if self._cgroups is not None:
            readers["cgroups"] = self._cgroups
        for key, running in self.running.items():
            if running.live_object and running.loaded.policy is not None:
                readers[("entry", key)] = running.loaded.policy
            elif running.earlier_events is not None:
                readers[("entry", key)] = running.earlier_events
        return readers

    def _source_set(self, wake: int, readers: dict[Any, Any]) -> SourceSet:
        """The SourceSet of ``readers`` (made anew only when they or their fds changed)."""
        signature = tuple((key, id(reader), _fd_of(reader)) for key, reader in readers.items())
        if self._sources is None or signature != self._sources_of:
            if self._sources is not None:
                self._sources.close()
            self._sources = SourceSet()
            self._sources.add("wake", wake)
            for key, reader in readers.items():
                self._sources.add(key, reader.fileno)
            self._sources_of = signature
        return self._sources

    def _timeout(self) -> float | None:
        """Seconds until the next timed job (a retry, the metrics file, a rescan); None: none."""
        due = [retry.due for retry in self.retries.values()]
        due += [when for when in (self._metrics_due, self._rescan_due) if when is not None]
        if self._unit_retry is not None:
            due.append(self._unit_retry.due)
        for job in (self.hook, self.kube_events):
            when = job.due() if job is not None else None
            if when is not None:
                due.append(when)
        return None if not due else max(0.0, min(due) - time.monotonic())

    def _wait_once(self, wake: int) -> None:
        """One wait on every source, then whatever became ready or due."""
        readers = self._readers()
        for key in self._source_set(wake, readers).wait(self._timeout()):
            if key == "wake":
                _drain(wake)
            elif key == "cgroups":
                if self._cgroups is not None and self._cgroups.changes(0):
                    self.sync()
                    return  # the readers may have changed; the others are still readable
            elif key in readers:
                try:
                    readers[key].poll(0)
                except BpfError as exc:  # e.g. a record of another schema: report, keep running
                    self.log("error", "events_unreadable",
                             id=key[1] if isinstance(key, tuple) else key, error=str(exc))
            if self._stop or self._reload:
                return
        if self.hook is not None:
            self.hook.reap()
        if self.kube_events is not None:
            self.kube_events.reap()
        now = time.monotonic()
        if self._unit_retry is not None and self._unit_retry.due <= now:
            self._retry_units()
        if self._rescan_due is not None and self._rescan_due <= now:
            self._rescan_due = now + RESCAN_S
            self.sync()
        elif any(retry.due <= now for retry in self.retries.values()):
            self.sync()
        if self._metrics_due is not None and self._metrics_due <= time.monotonic():
            self._write_metrics()


def _policy_names(entries: Any) -> list[str]:
    """The shipped policies' names (what kill events carry; an object's is known once loaded)."""
    return [entry.policy for entry in entries
            if not entry.policy.endswith(".o") and os.sep not in entry.policy]


def _fd_of(reader: Any) -> int | None:
    try:
        return reader.fileno()
    except (NotImplementedError, AttributeError):
        return None


def _drain(fd: int) -> None:
    """Empty the signal wakeup pipe (the handlers have set their flags already)."""
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


def run_daemon(config_path: str | os.PathLike[str], metrics_listen: str | None = None) -> int:
    """What ``bpfoom run`` does; returns the exit status."""
    config = read_config(os.fspath(config_path))  # the log settings; Daemon checks the rest
    stream = sys.stderr if config.log == "-" else open(config.log, "a", buffering=1)
    log = Log(stream, config.log_format == "json")
    try:
        return Daemon(config_path, log, metrics_listen).run()
    finally:
        log.close()
