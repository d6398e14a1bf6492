"""OOM policies and PSI handlers: load one by name or path, attach it, watch its decisions.

A *policy* is a BPF object with one link-based struct_ops map of type
``bpf_oom_ops`` (an :class:`OomPolicy`) or ``bpf_psi_ops`` (a
:class:`PsiHandler`).  Names are looked up in the catalogue
(:mod:`bpfoom.oom.catalogue`: the shipped policies and
``$BPFOOM_POLICY_PATH``), which also says what tunables each one takes; the
ranges a policy declares (policy_meta.h) hold at load and for :meth:`set`::

    with bpfoom.OomPolicy.load("largest_leaf", min_victim_bytes=1 << 20) as policy:
        policy.attach(cgroup="/sys/fs/cgroup/workload")
        for event in policy.events(timeout=60):
            print(event)

Decisions arrive as :class:`~bpfoom.events.DecisionEvent` from the policy's
``events`` ring buffer (include/policy_event.h), each with its
explanation; :meth:`OomPolicy.decisions` re-reads the last 16 without
consuming them.  What dies once a victim is chosen is set per cgroup with
:meth:`OomPolicy.set_granularity` (include/policy_granularity.h).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any, ClassVar, Self

from .attachments import Attachment, attached
from ..bpf.cgroup import Cgroup, CgroupTarget
from ..bpf.lifecycle import Closeable
from ..bpf.errors import InvalidValueError, ObjectFileError, StateError
from ..bpf.event_stream import EventStream
from ..bpf.globals import GlobalSection
from ..bpf.map import Map
from .catalogue import PolicyInfo, policy_info, policy_map
from .events import DROPPED_MAP, GRANULARITIES, DecisionEvent, decision_layout, events_map
from .kill_events import OverrunEvent
from .decisions import DECISIONS_MAP, read_decisions
from .abi import attach_target
from .features import features, running_oom_abi
from .records import RecordLayout
from .tunables import Tunables, load_object, suggest
from ..bpf.link import Link
from ..bpf.struct_ops import StructOpsMap
from ..bpf.object import BpfObject
from ..bpf.ringbuf import RingBuffer

__all__ = ["OomPolicy", "PsiHandler", "Attachment", "attached", "GRANULARITIES", "HANDLERS"]

GRANULARITY_MAP = "granularity"


# -- loaded handlers ------------------------------------------------------------

class _Handler(Closeable, EventStream[DecisionEvent | OverrunEvent]):
    """What OomPolicy and PsiHandler share: load, attach, decision events, tunables, close."""

    kind: ClassVar[str]
    struct_name: ClassVar[str]

    def __init__(self, obj: BpfObject, ops: StructOpsMap, info: PolicyInfo | None,
                 tunables: Tunables) -> None:
        """Use :meth:`load` (or :func:`bpfoom.oom.loader.load`): both go through load_object."""
        super().__init__()
        self.object = obj
        self.info = info
        self._ops = ops
        self._tunables = tunables
        self._links: list[Link] = []
        self._ring: RingBuffer | None = None
        self._layout: RecordLayout | None = None
        self._init_stream()

    @classmethod
    def load(cls, name_or_path: str | os.PathLike[str], *, ring_size: int | None = None,
             **tunables: Any) -> Self:
        """Open a catalogued policy (by name) or any policy object (by path), set tunables, load it.

        Tunables are checked before anything reaches the kernel: an unknown
        name raises VariableNotFoundError suggesting the close match, a bad
        value or one outside the range the object declares InvalidValueError.
        On a kernel without this handler's struct_ops type NotSupportedError
        names the missing feature.
        ``ring_size`` sizes the decision ring buffer (bytes, a power-of-two
        number of pages); decisions it has no room for are reported as an
        :class:`~bpfoom.OverrunEvent`, never dropped silently.
        """
        info, path = cls._resolve(name_or_path)

        def pick(obj: BpfObject) -> StructOpsMap:
            kind, ops = policy_map(obj, path)
            if kind != cls.kind:
                other = HANDLERS[kind].__name__
                raise ObjectFileError(errno.EINVAL, f"{path} holds a {ops.struct_name}, not a "
                                      f"{cls.struct_name}; load it with bpfoom.{other}")
            return ops

        def prepare(obj: BpfObject, ops: StructOpsMap) -> None:
            if ring_size is not None:
                events_map(obj, info.name if info else str(path)).max_entries = ring_size
            features().require(cls.struct_name)

        label = repr(info.name) if info is not None else repr(str(path))
        obj, ops, known = load_object(path, label, pick, tunables, prepare=prepare,
                                      only_declared=info is not None)
        return cls(obj, ops, info, known)

    @classmethod
    def _resolve(cls, name_or_path: str | os.PathLike[str]) -> tuple[PolicyInfo | None, Path]:
        text = os.fspath(name_or_path)
        if isinstance(text, str) and os.sep not in text and not text.endswith(".o"):
            info = policy_info(text)
            if info.kind != cls.kind:
                other = HANDLERS[info.kind].__name__
                raise InvalidValueError(errno.EINVAL, f"{text!r} is a policy of kind {info.kind!r}; load it "
                                        f"with bpfoom.{other}.load({text!r})")
            return info, info.path
        return None, Path(os.fsdecode(text))

    def _section_of(self, name: str, *, write_after_load: bool) -> GlobalSection:
        section = self._tunables.section(name)
        if write_after_load and section.section == ".rodata":
            raise StateError(errno.EBADFD, f"tunable {name!r} of {self.name} is read-only once "
                             f"loaded; pass it to {type(self).__name__}.load(..., {name}=...)")
        return section

    # -- identity -------------------------------------------------------------
    @property
    def name(self) -> str:
        """The struct_ops ``name`` the kernel reports (``oom_policy=<name>``)."""
        return self._ops.fields["name"] if "name" in self._ops.fields else self._ops.name

    @property
    def links(self) -> list[Link]:
        """Links made by :meth:`attach` that are still open."""
        with self._lock:
            return [link for link in self._links if not link.closed]

    # -- tunables -------------------------------------------------------------
    def set(self, name: str, value: Any) -> None:
        """Change a ``.data``/``.bss`` tunable while loaded (and attached): the next OOM sees it.

        A value outside the range the object declares raises InvalidValueError
        and changes nothing.
        """
        self._section_of(name, write_after_load=True)
        self._tunables.write(name, value)

    def get(self, name: str) -> Any:
        """A tunable's current value (as the kernel sees it)."""
        return self._section_of(name, write_after_load=False)[name]

    # -- attach ---------------------------------------------------------------
    def attach(self, cgroup: CgroupTarget | None = None,
               pin: str | os.PathLike[str] | None = None, *, before: Link | None = None,
               after: Link | None = None) -> Link:
        """Attach system-wide (``cgroup`` None) or to a cgroup; pin the link if ``pin`` is given.

        ``cgroup`` is a path, a :class:`~bpfoom.Cgroup` or a cgroup id (an
        ``int`` is always an id).  ``before``/``after`` (a link of the same
        cgroup) place the policy among that cgroup's others where the kernel
        orders them (the next interface); elsewhere NotSupportedError says so.

        If pinning fails the link is detached again: nothing stays half-attached.
        """
        with self._lock:
            link = self._attach_link(cgroup, before, after)
            if pin is not None:
                try:
                    link.pin(pin)
                except BaseException:
                    link.close()
                    raise
            self._links.append(link)
            return link

    def _attach_link(self, cgroup: CgroupTarget | None, before: Link | None,
                     after: Link | None) -> Link:
        return self._ops.attach(cgroup, before=before, after=after)

    def detach(self) -> None:
        """Detach every attachment made by :meth:`attach`, pinned ones too (their pins are removed)."""
        with self._lock:
            links, self._links = self._links, []
            for link in links:
                if link.closed:
                    continue
                if link.pinned_path is not None:
                    link.unpin()
                if not link.detached:
                    link.detach()
                link.close()

    # -- events ---------------------------------------------------------------
    def _decision_layout(self) -> RecordLayout:
        """struct policy_event as this policy's BTF lays it out."""
        with self._lock:
            if self._layout is None:
                self._layout = decision_layout(self.object.btf, repr(self.name))
            return self._layout

    def _event_ring(self) -> RingBuffer:
        with self._lock:
            if self._ring is None:
                layout = self._decision_layout()
                self._ring = RingBuffer(
                    events_map(self.object, self.name),
                    lambda data: self._deliver(DecisionEvent.from_bytes(data, layout)))
            return self._ring

    def _overrun_event(self, lost: int, total_lost: int, monotonic_ns: int) -> OverrunEvent:
        return OverrunEvent(lost=lost, total_lost=total_lost, monotonic_ns=monotonic_ns,
                            source=self.name)

    @property
    def events_dropped(self) -> int:
        """Decisions the ring buffer had no room for (the policy counts them in a map)."""
        maps = self.object.maps
        return maps[DROPPED_MAP][0] if DROPPED_MAP in maps else 0

    def release(self, link: Link) -> None:
        """Stop owning ``link`` (made by :meth:`attach`): after a link update it runs another
        object, and closing this policy must not close (or detach) it.  Its new owner closes it."""
        with self._lock:
            self._links = [mine for mine in self._links if mine is not link]

    # -- lifetime -------------------------------------------------------------
    def _release(self) -> None:
        """Close unpinned links (detaching them), the ring buffer and the object.

        Pinned links stay attached: that is what the pin is for.
        """
        links, self._links = self._links, []
        for link in links:
            link.close()
        ring, self._ring = self._ring, None
        if ring is not None:
            ring.close()
        self.object.close()

    @property
    def closed(self) -> bool:
        return self.object.state == "closed"

    def _closed_message(self) -> str:
        return f"{type(self).__name__} {self._ops.name!r} is closed; load it again"

    def _collected(self) -> None:
        """Nothing: the links and the object have their own backstops (a link's warns)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._ops.name} {self.object.state}>"


class OomPolicy(_Handler):
    """A loaded ``bpf_oom_ops`` policy: attach it to a cgroup or system-wide, read its decisions."""

    kind = "oom"
    struct_name = "bpf_oom_ops"

    def _attach_link(self, cgroup: CgroupTarget | None, before: Link | None,
                     after: Link | None) -> Link:
        """System-wide is spelt per interface (bpfoom.oom.abi): no cgroup, or the root cgroup."""
        target = attach_target(running_oom_abi(), cgroup)
        try:
            return self._ops.attach(target, before=before, after=after)
        finally:
            if isinstance(target, Cgroup) and target is not cgroup:
                target.close()

    def _granularity_map(self) -> Map:
        if GRANULARITY_MAP not in self.object.maps:
            raise StateError(errno.EINVAL, f"{self.name} takes no per-cgroup granularity (it has "
                             f"no `{GRANULARITY_MAP}` map); include policy_granularity.h in its "
                             "source, as the shipped policies do")
        return self.object.maps[GRANULARITY_MAP]

    def set_granularity(self, cgroup: CgroupTarget, granularity: str | None) -> None:
        """What dies when this policy's victim is in ``cgroup`` or below it, from the next OOM on.

        "task": one task (the policy's chosen one, or the victim cgroup's
        largest); "cgroup": every task of the victim cgroup; "subtree": every
        task of ``cgroup`` and its descendants; None: the policy's default.
        The setting nearest the victim cgroup wins.  memory.oom.group still
        makes the kernel kill a whole group; the decision event says so.
        ``cgroup`` is a path, a Cgroup or a cgroup id (an int is always an id).
        """
        if granularity is not None and granularity not in GRANULARITIES:
            raise InvalidValueError(errno.EINVAL, f"granularity {granularity!r} is not one of "
                                    f"{', '.join(map(repr, GRANULARITIES))}"
                                    f"{suggest(str(granularity), GRANULARITIES)}; or None for the "
                                    "policy's default")
        settings = self._granularity_map()
        cgroup_id = Cgroup.id_of(cgroup)
        if granularity is None:
            if cgroup_id in settings:
                del settings[cgroup_id]
        else:
            settings[cgroup_id] = GRANULARITIES[granularity]

    def granularity(self, cgroup: CgroupTarget) -> str | None:
        """The granularity set on ``cgroup`` itself (None: none; an ancestor's may apply)."""
        value = self._granularity_map().get(Cgroup.id_of(cgroup))
        return next((name for name, number in GRANULARITIES.items() if number == value), None)

    def decisions(self) -> list[DecisionEvent]:
        """The last 16 decisions, oldest first, without consuming :meth:`events`."""
        if DECISIONS_MAP not in self.object.maps:
            raise StateError(errno.EINVAL, f"{self.name} keeps no `{DECISIONS_MAP}` history; "
                             "include this bpfoom's policy_event.h in its source")
        return read_decisions(self.object.maps[DECISIONS_MAP].fd, self._decision_layout())


class PsiHandler(_Handler):
    """A loaded ``bpf_psi_ops`` handler; same shape as :class:`OomPolicy`."""

    kind = "psi"
    struct_name = "bpf_psi_ops"

    def attach(self, cgroup: CgroupTarget | None = None,
               pin: str | os.PathLike[str] | None = None, *, before: Link | None = None,
               after: Link | None = None) -> Link:
        """Attach system-wide; the handler picks its cgroups itself (its triggers' cgroup ids).

        The kernel attaches bpf_psi_ops only system-wide (a cgroup link fails with
        EOPNOTSUPP), so a ``cgroup`` is refused here with a sentence saying why.
        """
        if cgroup is not None:
            raise InvalidValueError(errno.EINVAL, f"{self.name} is a bpf_psi_ops handler, which "
                                    "attaches only system-wide; attach it without a cgroup and "
                                    "name the cgroups to watch in its tunables")
        return super().attach(None, pin, before=before, after=after)


# The handler class of each kind (features.POLICY_KINDS).
HANDLERS: dict[str, type[OomPolicy] | type[PsiHandler]] = {"oom": OomPolicy, "psi": PsiHandler}
