"""``--metrics-listen HOST:PORT``: the metrics over HTTP for Prometheus to scrape (a pod has no
node_exporter textfile directory).  A thread of its own serves ``GET /metrics`` from
:meth:`Metrics.render`; the event loop never waits for a scraper.

With the ``prometheus`` extra installed (``pip install bpfoom[prometheus]``: the official
``prometheus_client``) its server serves them instead, which adds what scrapers may ask for:
the OpenMetrics format on ``Accept: application/openmetrics-text`` and gzip.  The samples are
the same (``Metrics.render`` parsed into its metric families at each scrape)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer
from typing import Any

from ..bpf.errors import BpfError
from ..bpf.lifecycle import Closeable
from .metrics import Metrics

__all__ = ["MetricsServer", "parse_listen"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9863``, ``0.0.0.0:9863``, ``:9863``) as (host, port)."""
    host, _, port = text.rpartition(":")
    try:
        number = int(port)
        if not 0 < number < 65536:
            raise ValueError
    except ValueError:
        raise BpfError(22, f"--metrics-listen {text!r} is not HOST:PORT (e.g. 0.0.0.0:9863)") from None
    return host.strip("[]") or "0.0.0.0", number


class _Families:
    """A prometheus_client collector of what ``Metrics.render`` says now."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        from prometheus_client.parser import text_string_to_metric_families
        yield from text_string_to_metric_families(self.metrics.render())


class MetricsServer(Closeable):
    """Serves ``metrics`` at http://HOST:PORT/metrics until :meth:`close`; ``via`` says whose
    server: "prometheus_client" (the extra) or "bpfoom"."""

    def __init__(self, metrics: Metrics, listen: str) -> None:
        super().__init__()
        self._stopped = False
        host, port = parse_listen(listen)
        self.via = "bpfoom"
        try:
            from prometheus_client import CollectorRegistry, start_http_server
        except ImportError:
            pass
        else:
            registry = CollectorRegistry(auto_describe=False)
            registry.register(_Families(metrics))  # type: ignore[arg-type]
            served: tuple[HTTPServer, threading.Thread] = start_http_server(port, host, registry)
            self._server, self._thread = served
            self.address = self._server.server_address
            self.via = "prometheus_client"
            return

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404, "only /metrics is served")
                    return
                body = metrics.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # scrapes are not log lines
                pass

        server = ThreadingHTTPServer((host, port), Handler)
        server.daemon_threads = True
        self._server = server
        self.address = server.server_address
        self._thread = threading.Thread(target=self._server.serve_forever, name="bpfoom-metrics",
                                        daemon=True)
        self._thread.start()

    @property
    def closed(self) -> bool:
        return self._stopped

    def _closed_message(self) -> str:
        return f"the metrics server of {self.address!r} is stopped; start a new MetricsServer"

    def _release(self) -> None:
        """Stop serving and close the listening socket."""
        self._stopped = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
