"""The daemon's small HTTP endpoint: ``/healthz`` and Prometheus ``/metrics``.

Loopback by default: it tells how the hub is doing, which is nobody else's
business unless the user binds it wider. The standard library's threading server
is enough for a scrape every few seconds.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger("fithub.http")


class _Handler(BaseHTTPRequestHandler):
    server_version = "fithub"
    routes: dict[str, Callable[[], tuple[int, str, bytes]]] = {}

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        route = self.routes.get(self.path.split("?", 1)[0])
        if route is None:
            self._send(404, "text/plain; charset=utf-8", b"not found: try /healthz or /metrics\n")
            return
        try:
            status, ctype, body = route()
        except Exception as exc:  # the endpoint must answer even when the database does not
            log.warning("%s failed: %s", self.path, exc)
            status, ctype, body = 503, "application/json", json.dumps({"status": "error", "error": str(exc)}).encode()
        self._send(status, ctype, body)

    def _send(self, status: int, ctype: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt: str, *args) -> None:  # scrapes every few seconds: keep them out of the log
        log.debug(fmt, *args)


class StatusServer:
    def __init__(self, host: str, port: int, routes: dict[str, Callable[[], tuple[int, str, bytes]]]) -> None:
        handler = type("Handler", (_Handler,), {"routes": routes})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="fithub-http", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        return self.httpd.server_address[:2]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
