"""``bpfoom run``: the daemon that keeps a TOML configuration of policies attached.

``config`` reads and checks the file, ``plan`` computes what a reload changes,
``apply`` attaches, replaces and detaches (undoing a change that fails
halfway), ``log`` writes its lines, ``sd_notify`` talks to systemd, and
``loop`` holds the signals and the event loop.
"""

from .config import check_config
from .loop import Daemon, run_daemon

__all__ = ["Daemon", "check_config", "run_daemon"]
