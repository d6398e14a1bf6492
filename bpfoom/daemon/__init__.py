"""The daemon (``bpfoom run``) and the pieces a program of its own can reuse:
Prometheus metrics (:class:`Metrics`) and journal entries (:class:`Journal`)."""

from .journal import Journal
from .metrics import Metrics

__all__ = ["Journal", "Metrics"]
