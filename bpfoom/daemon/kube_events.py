"""Kubernetes Events for pod victims: ``kubectl describe pod`` shows who the daemon's policy killed.

The kubelet reports a container's OOM kill as ``OOMKilled``, but not which
policy chose it, nor a kill in a pod whose container survives (another
process of it died).  For each kill whose victim is a pod (its namespace and
name known, see :mod:`bpfoom.daemon.victim`) the daemon posts a core/v1
Event: ``involvedObject`` the pod, ``type`` Warning, ``reason``
``OOMKilledByBpfoom``.

Opt-in (``[daemon] kubernetes_events``).  The API server is the pod's own
(``"in-cluster"``: ``KUBERNETES_SERVICE_HOST``/``_PORT``, the service
account token and CA under ``/var/run/secrets/kubernetes.io/serviceaccount``)
or one given by ``server``, ``token_file`` and ``ca_file``.  The token is
read again for each post (bound tokens rotate).

Never in the daemon's way: posts run on one worker thread (the event loop
only queues them, and logs their outcome when it next wakes); at most
``BURST`` posts are queued or in flight, refilled at ``RATE`` per second, the
rest skipped (counted and logged once per run); a server that is down or
slow costs one failed post after ``TIMEOUT`` seconds, logged, never an
exception in the loop.
"""

from __future__ import annotations

import json
import os
import queue
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

__all__ = ["ApiServer", "KubeEvents", "REASON", "SERVICE_ACCOUNT_DIR", "event_body"]

REASON = "OOMKilledByBpfoom"
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
BURST = 10  # posts queued or in flight at most
RATE = 1.0  # posts per second, refilling the burst
TIMEOUT = 10.0  # seconds for one post


@dataclass(frozen=True)
class ApiServer:
    """Where Events go: ``server`` (an http or https URL), the bearer token's file, the CA's."""

    server: str
    token_file: str | None = None
    ca_file: str | None = None

    @classmethod
    def in_cluster(cls, environ: dict[str, str] | None = None,
                   account_dir: str = SERVICE_ACCOUNT_DIR) -> "ApiServer":
        """The API server a pod reaches (what client-go's rest.InClusterConfig reads).

        ValueError with what is missing when this is not a pod that can reach it.
        """
        environ = dict(os.environ) if environ is None else environ
        host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT")
        if not host or not port:
            raise ValueError("KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set, so "
                             "this is not a Kubernetes pod; give server = \"https://...\" instead")
        token = os.path.join(account_dir, "token")
        if not os.path.exists(token):
            raise ValueError(f"{token} does not exist: the pod has no service account token; set "
                             "automountServiceAccountToken: true (docs/operators.md, "
                             "\"Kubernetes Events\")")
        if ":" in host:
            host = f"[{host}]"  # an IPv6 address
        return cls(f"https://{host}:{port}", token, os.path.join(account_dir, "ca.crt"))

    def url(self, namespace: str) -> str:
        return f"{self.server.rstrip('/')}/api/v1/namespaces/{urllib.parse.quote(namespace)}/events"


def event_body(fields: dict[str, Any], node: str, now: datetime | None = None) -> dict[str, Any]:
    """The core/v1 Event for the kill ``fields`` (a kill line's fields with the victim's)."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
    namespace, pod = fields["victim_namespace"], fields["victim_pod"]
    policy = fields.get("policy") or "the kernel's OOM killer"
    message = (f"bpfoom: {policy} had process {fields.get('comm')} (pid {fields.get('pid')}, "
               f"oom_score_adj {fields.get('oom_score_adj')}) in cgroup "
               f"{fields.get('victim_cgroup')} killed; constraint {fields.get('constraint')}")
    involved = {"apiVersion": "v1", "kind": "Pod", "namespace": namespace, "name": pod}
    if fields.get("victim_pod_uid"):
        involved["uid"] = fields["victim_pod_uid"]
    return {"apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{pod}.", "namespace": namespace},
            "involvedObject": involved, "reason": REASON, "message": message[:1024],
            "type": "Warning", "source": {"component": "bpfoom", "host": node},
            "reportingComponent": "bpfoom", "reportingInstance": node,
            "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1}


class KubeEvents:
    """Posts an Event per pod victim from a worker thread; ``reap()`` logs the outcomes."""

    def __init__(self, server: ApiServer, log: Callable[..., None], node: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.server = server
        self.log = log
        self.node = node or os.environ.get("NODE_NAME") or socket.gethostname()
        self.skipped = 0  # in all
        self._skips = 0  # since the last post queued
        self.posted = 0
        self.failed = 0
        self._clock = clock
        self._tokens = float(BURST)
        self._refilled = clock()
        self._todo: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._done: queue.Queue[tuple[dict[str, Any], str | None]] = queue.Queue()
        self._busy = 0  # queued or in flight
        self._context = self._tls()
        self._thread = threading.Thread(target=self._work, name="bpfoom-kube-events", daemon=True)
        self._thread.start()

    def _tls(self) -> ssl.SSLContext | None:
        if not self.server.server.startswith("https:"):
            return None
        return ssl.create_default_context(cafile=self.server.ca_file)

    def post(self, fields: dict[str, Any]) -> None:
        """Queue the Event for a kill (never blocks); a victim that is no pod is ignored."""
        if not fields.get("victim_pod") or not fields.get("victim_namespace"):
            return
        self.reap()
        now = self._clock()
        self._tokens = min(float(BURST), self._tokens + (now - self._refilled) * RATE)
        self._refilled = now
        if self._tokens < 1 or self._busy >= BURST:
            if not self._skips:
                self.log("warning", "kube_event_skipped", pod=fields["victim_pod"],
                         namespace=fields["victim_namespace"],
                         why=f"more than {BURST} Events in a burst (refilled at {RATE:g}/s); "
                         "skips are counted until one is posted again")
            self._skips += 1
            self.skipped += 1
            return
        if self._skips:
            self.log("info", "kube_events_resumed", skipped=self._skips)
            self._skips = 0
        self._tokens -= 1
        self._busy += 1
        self._todo.put(event_body(fields, self.node))

    def _work(self) -> None:
        while True:
            body = self._todo.get()
            if body is None:
                return
            self._done.put((body, self._send(body)))

    def _send(self, body: dict[str, Any]) -> str | None:
        """POST one Event; None, or why it failed."""
        headers = {"Content-Type": "application/json", "Accept": "application/json",
                   "User-Agent": "bpfoom"}
        try:
            if self.server.token_file:
                with open(self.server.token_file) as token:
                    headers["Authorization"] = f"Bearer {token.read().strip()}"
            request = urllib.request.Request(self.server.url(body["metadata"]["namespace"]),
                                             data=json.dumps(body).encode(), headers=headers,
                                             method="POST")
            with urllib.request.urlopen(request, timeout=TIMEOUT, context=self._context) as reply:
                reply.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read(300).decode(errors="replace")
            return f"the API server answered {exc.code} {exc.reason}: {detail}"
        except (OSError, ValueError) as exc:  # URLError, timeouts, TLS, a token file gone
            return f"{type(exc).__name__}: {exc}"
        return None

    def reap(self) -> None:
        """Log the posts finished since the last call (never blocks)."""
        while True:
            try:
                body, error = self._done.get_nowait()
            except queue.Empty:
                return
            self._busy -= 1
            where = body["involvedObject"]
            if error is None:
                self.posted += 1
                self.log("info", "kube_event_posted", pod=where["name"],
                         namespace=where["namespace"])
            else:
                self.failed += 1
                self.log("warning", "kube_event_failed", pod=where["name"],
                         namespace=where["namespace"], server=self.server.server, error=error)

    def due(self) -> float | None:
        """When the loop should look again (a post's outcome is logged within a second)."""
        return None if not self._busy else time.monotonic() + 0.5

    def close(self, wait: float = 2.0) -> None:
        """Let queued posts finish for up to ``wait`` seconds, log them, and stop the worker."""
        self._todo.put(None)
        self._thread.join(wait)
        self.reap()
