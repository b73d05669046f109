"""A node's small read-only HTTP endpoint (off unless ``http-status`` is set): ``/status`` as
JSON and ``/metrics`` in Prometheus text format.

Owns: the HTTP server and its thread. Must not import: ``runtime`` internals; it is handed a
status function and a metrics registry. Called by: its own server threads.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

logger = logging.getLogger(__name__)


class StatusHttpServer:
    def __init__(
        self,
        address: str,
        status: Callable[[], dict[str, Any]],
        registry: CollectorRegistry,
    ) -> None:
        host, _, port = address.rpartition(":")
        handler = _handler(status, registry)
        self._server = ThreadingHTTPServer((host.strip("[]"), int(port)), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="http-status", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(
    status: Callable[[], dict[str, Any]], registry: CollectorRegistry
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/status":
                self._reply(200, "application/json", json.dumps(status(), indent=2).encode())
            elif self.path == "/metrics":
                self._reply(200, CONTENT_TYPE_LATEST, generate_latest(registry))
            else:
                self._reply(404, "text/plain", b"not found: try /status or /metrics\n")

        def _reply(self, code: int, content_type: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("http status: " + format, *args)

    return Handler
