"""A real HTTP(S) server on loopback standing in for the Kubernetes API server (host and guest
tests): it records each request and answers as the API server does."""
from __future__ import annotations

import json
import queue
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from daemon_process import WAIT_S


class FakeApiServer:
    """Records each request (method, path, headers, JSON body); answers 201, or waits for
    ``gate`` first when one is set."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.requests: queue.Queue[dict[str, Any]] = queue.Queue()
        self.gate: threading.Event | None = None
        self.forbid = False  # answer as to a service account without RBAC for events
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.put({"method": "POST", "path": self.path,
                                     "headers": dict(self.headers), "body": body})
                if server.gate is not None:
                    server.gate.wait(WAIT_S)
                if server.forbid:
                    self._answer(403, {"kind": "Status", "message": "events is forbidden: User "
                                       "\"system:serviceaccount:kube-system:bpfoom\" cannot "
                                       "create resource \"events\""})
                    return
                self._answer(201, {**body, "metadata": {**body["metadata"], "name": "x"}})

            def _answer(self, status: int, document: dict[str, Any]) -> None:
                reply = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def next(self) -> dict[str, Any]:
        return self.requests.get(timeout=WAIT_S)

    def close(self) -> None:
        if self.gate is not None:
            self.gate.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@contextmanager
def fake_api(tls: ssl.SSLContext | None = None) -> Iterator[FakeApiServer]:
    server = FakeApiServer(tls)
    try:
        yield server
    finally:
        server.close()
