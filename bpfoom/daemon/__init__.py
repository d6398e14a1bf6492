"""``bpfoom run``: the daemon that keeps a TOML configuration of policies attached.

``config`` reads and checks the file, ``resolve`` turns its targets (cgroups,
patterns, units, Kubernetes pods) into the cgroups that exist now and what is
still pending, ``plan`` computes what a reload changes, ``apply`` attaches,
replaces and detaches (undoing a change that fails halfway), ``log`` writes
its lines, ``state`` the file ``bpfoom status`` reads, ``sd_notify`` talks to
systemd, and ``loop`` holds the signals and the one wait over every source.  A program of its own can
reuse the Prometheus metrics (:class:`Metrics`), journal entries
(:class:`Journal`), Kubernetes Events (:class:`KubeEvents`), the kill hook
(:class:`KillHook`) and the victim's names (:func:`describe`, :class:`KnownCgroups`).
"""

from .config import check_config
from .hook import KillHook
from .journal import Journal
from .kube_events import ApiServer, KubeEvents
from .loop import Daemon, run_daemon
from .metrics import Metrics
from .victim import KnownCgroups, describe

__all__ = ["ApiServer", "Daemon", "Journal", "KillHook", "KnownCgroups", "KubeEvents", "Metrics",
           "check_config", "describe", "run_daemon"]
