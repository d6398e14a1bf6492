"""Attach, replace and detach the daemon's entries, undoing a change that fails halfway.

Every entry is attached with its link pinned at ``pin_dir/<id>`` and its
decision events pinned beside it (``<id>.events``), so a later run re-adopts
the link and ``bpfoom events`` reads the decisions.  Whatever happens, a pin
names the link that runs the entry, and the events pin the object that link
runs.
"""

from __future__ import annotations

import errno
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from ..bpf.cgroup import Cgroup
from ..bpf.errors import BpfError
from ..bpf.link import Link
from ..oom.loader import LoadedPolicy, convert_text, load
from ..oom.pinned_events import EVENTS_SUFFIX, PinnedEvents, pin_events, unpin_events

_DROPPED_SUFFIX = "_dropped"  # after an events pin's name (pinned_events.pin_events)
from . import applied
from .config import Entry, apply_granularity
from .settings import apply_settings, resolved_tunables
from .log import Log
from .plan import Plan, Step

__all__ = ["Running", "Applier"]

# A link update of a struct_ops type without .update: EOPNOTSUPP (or the kernel's ENOTSUPP).
_NO_UPDATE = (errno.EOPNOTSUPP, 524)

Undo = Callable[[], None]


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
    gap_s: float | None = None  # the last replace's protection gap (detach to attach)

    @property
    def events_pin(self) -> Path | None:
        return None if self.pin is None else Path(f"{self.pin}{EVENTS_SUFFIX}")

    def repin_events(self) -> None:
        """Point the events pin at the decisions of the object the link now runs."""
        if self.pin is not None:
            unpin_events(self.pin)
            pin_events(self.loaded.object.maps, self.pin)

    def pin_link(self) -> None:
        """Point the entry's pin at its current link (replacing what was pinned there)."""
        if self.pin is not None:
            self.pin.unlink(missing_ok=True)
            self.link.pin(self.pin)

    def close(self, detach: bool) -> None:
        """Detach and unpin (``detach``), or just drop our references.

        The pins go even when the detach fails (a link whose cgroup is gone,
        say): with the pin and our fd gone the kernel drops the link anyway,
        and no pin is left naming a link nobody runs.  The failure is raised
        after.
        """
        failure: BpfError | None = None
        try:
            if self.earlier_events is not None:
                self.earlier_events.close()
            if detach:
                if not self.link.detached:
                    try:
                        self.link.detach()
                    except BpfError as exc:
                        failure = exc
                self.unpin()
            self.link.close()
        finally:
            self.loaded.close()
        if failure is not None:
            raise failure

    def unpin(self) -> None:
        """Remove the link's pin and the events pins beside it."""
        if self.link.pinned_path is not None:
            self.link.unpin()
        elif self.pin is not None and self.pin.exists():
            self.pin.unlink()
        if self.pin is not None:
            unpin_events(self.pin)
        applied.forget(self.pin)

    def record(self) -> None:
        """Remember what the pinned link runs (see :mod:`.applied`)."""
        applied.record(self.pin, self.link.id, self.entry)


class Applier:
    """The entries this daemon keeps attached, and every change made to them."""

    def __init__(self, pin_dir: Path, log: Log,
                 on_decision: Callable[[str, Any], None]) -> None:
        self.pin_dir = pin_dir
        self.log = log
        self.on_decision = on_decision
        self.running: dict[str, Running] = {}

    # -- one entry -------------------------------------------------------------------
    def _pin_path(self, entry: Entry) -> Path | None:
        return self.pin_dir / entry.id if entry.pin else None

    def _load(self, entry: Entry) -> LoadedPolicy:
        loaded = load(entry.policy, resolved_tunables(entry, log=self.log), map_name=entry.map,
                      register_as=entry.name)
        try:
            apply_granularity(loaded.policy, entry)  # before attach: the first OOM uses it
            apply_settings(loaded, entry, None, self.log)
        except BaseException:
            loaded.close()
            raise
        return loaded

    def _watch(self, entry: Entry, loaded: LoadedPolicy) -> None:
        """Report the policy's decisions (objects without a decision stream have none)."""
        if loaded.policy is not None:
            loaded.policy.on_event(lambda event: self.on_decision(entry.id, event))

    def _attach(self, entry: Entry, loaded: LoadedPolicy) -> Running:
        """Attach and pin the link, and the decision events beside it (for a later run)."""
        pin = self._pin_path(entry)
        if pin is not None:
            pin.parent.mkdir(parents=True, exist_ok=True)
            unpin_events(pin)  # stale ones of a dead run
        link = loaded.attach(cgroup=entry.cgroup, pin=pin)
        running = Running(entry, loaded, link, pin, True)
        if pin is not None:
            try:
                pin_events(loaded.object.maps, pin)
            except BaseException:
                running.close(detach=True)
                raise
        running.record()
        return running

    def _log_attached(self, running: Running) -> None:
        entry = running.entry
        self.log("info", "attached", id=entry.id, policy=running.loaded.name,
                 target=entry.cgroup or "system", link=running.link.id, pin=running.pin,
                 **({"entry": entry.origin} if entry.origin else {}))

    def _adopt(self, entry: Entry) -> Running | None:
        """Take over the link an earlier run pinned for ``entry``; None if there is none."""
        pin = self._pin_path(entry)
        if pin is None or not pin.exists():
            return None
        link = Link.from_pinned(pin)
        try:
            info = link.info()
            if not info.map_id or (info.cgroup_id is not None and info.cgroup_id != _cgroup_id(entry)):
                self.log("warning", "stale_pin", id=entry.id, pin=pin, link=info.id,
                         why="detached or attached elsewhere; replacing it")
                if info.map_id:
                    link.detach()
                link.unpin()
                link.close()
                return None
            loaded = self._load(entry)
            # A link that runs what the configuration asks for is kept as it is (its pinned
            # decisions and the state of its maps with it); any other gets the new object.
            live = applied.recorded(pin, info.id) != applied.fingerprint(entry)
            if live:
                try:
                    link.update(loaded.struct_ops)
                except BpfError as exc:
                    if exc.errno not in _NO_UPDATE:
                        loaded.close()
                        raise
                    return self._replace_adopted(entry, loaded, link, pin, exc)
            running = Running(entry, loaded, link, pin, live, adopted=True)
            if live:
                running.repin_events()
                running.record()
            elif (events_pin := running.events_pin) is not None and events_pin.exists():
                running.earlier_events = PinnedEvents(
                    events_pin, lambda event: self.on_decision(entry.id, event))
            self.log("info", "adopted", id=entry.id, policy=loaded.name, link=info.id, pin=pin,
                     how="updated" if live else "kept: it runs this configuration already",
                     decisions="logged" if live or running.earlier_events else "not available")
            return running
        except BaseException:
            link.close()
            raise

    def _replace_adopted(self, entry: Entry, loaded: LoadedPolicy, link: Link, pin: Path,
                         refused: BpfError) -> Running:
        """The pinned link runs another configuration (or one nobody recorded) and cannot be
        updated: detach it and attach ``loaded``, measuring how long nothing protected."""
        old_id = link.id
        started = time.monotonic()
        link.detach()
        link.unpin()
        unpin_events(pin)
        applied.forget(pin)
        try:
            running = self._attach(entry, loaded)
        except BaseException:
            loaded.close()
            raise
        gap = time.monotonic() - started
        running.adopted, running.gap_s = True, gap
        link.close()
        self.log("warning", "replaced", id=entry.id, policy=loaded.name, link=running.link.id,
                 previous_link=old_id, gap_ms=round(gap * 1000, 3),
                 why="the pinned link ran another configuration (or one not recorded) and this "
                 f"kernel cannot switch it to a new object ({refused.strerror}); it was detached "
                 "and the configured object attached (in between, the next handler up decided)")
        return running

    def _bring_up(self, entry: Entry) -> Running:
        """Adopt the link an earlier run pinned for ``entry``, or load and attach it."""
        running = self._adopt(entry)
        if running is None:
            loaded = self._load(entry)
            try:
                running = self._attach(entry, loaded)
            except BaseException:
                loaded.close()
                raise
            self._log_attached(running)
        return running

    # -- start and stop --------------------------------------------------------------
    def start(self, entries: Iterable[Entry]) -> None:
        """Attach (or adopt) every entry, or nothing."""
        done: list[Running] = []
        current = "-"
        try:
            for entry in entries:
                current = entry.id
                done.append(self._bring_up(entry))
        except BaseException as exc:
            for running in reversed(done):
                running.close(detach=not running.adopted)  # an adopted pin stays as it was
            self.log("error", "start_failed", entry=current, error=str(exc), rolled_back=len(done))
            raise
        for running in done:
            self.running[running.entry.id] = running
            if running.live_object:
                self._watch(running.entry, running.loaded)

    def attach_one(self, entry: Entry) -> Running:
        """Attach one entry outside a reload (a cgroup that appeared); nothing stays on failure."""
        running = self._bring_up(entry)
        self.running[entry.id] = running
        if running.live_object:
            self._watch(entry, running.loaded)
        return running

    def detach_one(self, key: str, why: str) -> None:
        """Detach one entry outside a reload (its cgroup went); a failure is logged, the pins go."""
        running = self.running.pop(key)
        try:
            running.close(detach=True)
        except BpfError as exc:
            self.log("warning", "detach_failed", id=key, error=str(exc),
                     why="the pins are removed all the same: the kernel drops the link")
        self.log("info", "detached", id=key, why=why)

    def remove_orphans(self, keep: Iterable[str] = ()) -> None:
        """Remove the pins in pin_dir no running entry owns: left by an earlier run for an entry
        that left the configuration, or a cgroup that went meanwhile.  ``keep`` (pending and
        failed entries) keep theirs while the link is attached; one the kernel detached (its
        cgroup went) names nothing the entry could use again, and would fail readiness."""
        if not self.pin_dir.is_dir():
            return
        kept = set(keep) - set(self.running)
        names = {path.name for path in self.pin_dir.iterdir()}
        for name in sorted(names):
            base = name.removesuffix(_DROPPED_SUFFIX).removesuffix(EVENTS_SUFFIX)
            if base in self.running or (base != name and base in names):
                continue  # ours, or the events of a link pin handled below
            path = self.pin_dir / name
            if base != name:  # events pins without their link pin
                if base not in kept:
                    path.unlink(missing_ok=True)
                continue
            try:
                link = Link.from_pinned(path)
            except BpfError:
                continue  # not a link: not ours to touch
            try:
                with link:
                    info = link.info()
                    if base in kept and info.map_id:
                        continue
                    if info.map_id:
                        link.detach()
                    link.unpin()
                unpin_events(path)
                applied.forget(path)
            except BpfError as exc:
                self.log("warning", "orphan_not_removed", pin=path, error=str(exc))
                continue
            if base in kept:
                self.log("warning", "stale_pin", id=base, pin=path, link=info.id,
                         why="the kernel detached this link (its cgroup is gone); the pin is "
                         "removed and the entry waits for its target")
            else:
                self.log("info", "orphan_removed", pin=path, link=info.id,
                         was_attached=bool(info.map_id),
                         why="no configured entry owns this pin now")

    def stop(self, keep: bool) -> None:
        """Detach everything (``keep``: leave the pinned links attached for the next run)."""
        for key, running in list(self.running.items()):
            kept = keep and running.pin is not None
            try:
                running.close(detach=not kept)
                self.log("info", "kept" if kept else "detached", id=key, pin=running.pin)
            except BpfError as exc:
                self.log("error", "detach_failed", id=key, error=str(exc))
            del self.running[key]

    # -- a reload ----------------------------------------------------------------------
    def apply(self, plan: Plan) -> None:
        """Carry out ``plan``, all or nothing: on failure every step taken is undone and the
        error raised.  Objects are loaded before anything attached changes."""
        prepared: dict[str, LoadedPolicy] = {}
        undo: list[Undo] = []
        after: list[Undo] = []  # commits that cannot fail: run once all steps succeeded
        try:
            for step in plan.loads():
                prepared[step.id] = self._load(step.wanted)
            for step in plan.steps:
                self._step(step, prepared, undo, after)
        except BaseException:
            for back in reversed(undo):
                try:
                    back()
                except BpfError as failure:
                    self.log("error", "rollback_failed", error=str(failure))
            for loaded in prepared.values():
                loaded.close()
            raise
        for commit in after:
            commit()

    def _step(self, step: Step, prepared: dict[str, LoadedPolicy], undo: list[Undo],
              after: list[Undo]) -> None:
        if step.action == "remove":
            self._remove(step.id, self.running[step.id], undo, after)
        elif step.action == "retune":
            self._retune(self.running[step.id], step.wanted, step.tunables, undo)
        elif step.action == "switch":
            self._switch(self.running[step.id], step.wanted, prepared[step.id], undo, after)
        else:
            self._add(step.wanted, prepared[step.id], undo, after)

    def _add(self, entry: Entry, loaded: LoadedPolicy, undo: list[Undo], after: list[Undo]) -> None:
        running = self._attach(entry, loaded)
        undo.append(lambda: running.close(detach=True))

        def commit() -> None:
            self.running[entry.id] = running
            self._watch(entry, loaded)
            self._log_attached(running)
        after.append(commit)

    def _retune(self, running: Running, entry: Entry, changed: dict[str, Any],
                undo: list[Undo]) -> None:
        """Change tunables (and granularity) on the live object."""
        before = {key: running.loaded.current(key) for key in changed}
        old_entry = running.entry

        def restore() -> None:
            for key, value in before.items():
                running.loaded.set(key, value)
            running.entry = old_entry
        undo.append(restore)
        undo.append(apply_granularity(running.loaded.policy, entry, old_entry))
        undo.append(apply_settings(running.loaded, entry, old_entry, self.log))
        resolved = resolved_tunables(entry, log=self.log)
        for key in changed:
            running.loaded.set(key, _typed(running.loaded, key, resolved[key]))
        running.entry = entry
        running.record()
        self.log("info", "tunables_set", id=entry.id, **{f"set.{k}": v for k, v in changed.items()})

    def _switch(self, running: Running, entry: Entry, loaded: LoadedPolicy, undo: list[Undo],
                after: list[Undo]) -> None:
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
                replacement = running.link
                self._replace(running, old_loaded)
                replacement.close()  # both detached by now: only our fds go
                old_link.close()
            running.loaded, running.entry = old_loaded, old_entry
            running.repin_events()
        undo.append(back)

        def commit() -> None:
            running.record()
            if how == "replaced":
                old_link.close()
                self.log("warning", "replaced", id=entry.id, policy=loaded.name,
                         link=running.link.id, gap_ms=round((running.gap_s or 0) * 1000, 3),
                         why="this kernel cannot update the link of a "
                         f"{loaded.struct_ops.struct_name} in place, so it was detached and "
                         "attached again (briefly, the next handler up decided)")
            else:
                self.log("info", "updated", id=entry.id, policy=loaded.name, link=running.link.id)
                old_loaded.release(running.link)  # the link now runs `loaded`: the entry owns it
            old_loaded.close()
            self._watch(entry, loaded)
        after.append(commit)

    def _replace(self, running: Running, loaded: LoadedPolicy) -> None:
        """Detach the running link, attach ``loaded`` to the same target, move the pin to it.

        If ``loaded`` cannot attach, the running object is attached again and the pin
        moved to that new link: the pin never names a detached link."""
        old = running.link
        started = time.monotonic()
        old.detach()
        if old.pinned_path is not None:
            old.unpin()
        try:
            link = loaded.attach(cgroup=running.entry.cgroup, pin=None)
        except BaseException:
            old.close()
            running.link = running.loaded.attach(cgroup=running.entry.cgroup, pin=None)
            running.pin_link()
            raise
        running.gap_s = time.monotonic() - started
        running.link = link
        running.pin_link()
        if running.earlier_events is not None:
            running.earlier_events.close()
            running.earlier_events = None

    def _remove(self, key: str, running: Running, undo: list[Undo], after: list[Undo]) -> None:
        """Detach an entry that left the config, and unpin it at once (undo: attach its object
        again and pin that link): no pin ever names the detached link."""
        running.link.detach()
        if running.link.pinned_path is not None:
            running.link.unpin()
        elif running.pin is not None:
            running.pin.unlink(missing_ok=True)

        def back() -> None:
            running.link.close()
            running.link = running.loaded.attach(cgroup=running.entry.cgroup, pin=None)
            running.pin_link()
        undo.append(back)

        def commit() -> None:
            self.running.pop(key)
            running.close(detach=True)
            self.log("info", "detached", id=key, why="removed from the configuration")
        after.append(commit)


def _cgroup_id(entry: Entry) -> int:
    if entry.cgroup is None:
        return 0
    with Cgroup.open(entry.cgroup) as cgroup:
        return cgroup.id


def _typed(loaded: LoadedPolicy, key: str, value: Any) -> Any:
    """A TOML string for a numeric tunable is converted like `--set` text."""
    current = loaded.current(key)
    if isinstance(value, str) and current is not None and not isinstance(current, str):
        return convert_text(value, current)
    return value
