"""The daemon's HTTP endpoint: /healthz, /readyz, /metrics (and the admin routes added to it).

Readiness is decided by :func:`readiness`, pure over a :class:`Health` snapshot and the clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from publisher import metrics
from publisher.health import Health

STREAM_RETENTION = timedelta(hours=12)
# Not ready once the cursor is this close to falling out of the stream's retention.
RETENTION_MARGIN = timedelta(hours=2)

Route = Callable[[str, bytes], tuple[int, dict[str, Any]]]


def readiness(
    health: Health, *, now: datetime, monotonic: float, poll_interval_s: float
) -> list[str]:
    """The conditions that fail (empty: ready)."""
    failing: list[str] = []
    if not health.producer_ready:
        failing.append("producer not initialised (init_transactions has not completed)")
    if not health.state_restored:
        failing.append("state not restored from the state topic")
    if health.last_poll_ok == 0.0:
        failing.append("no successful poll yet")
    elif monotonic - health.last_poll_ok > 3 * poll_interval_s + 60:
        failing.append(
            f"last successful poll {monotonic - health.last_poll_ok:.0f}s ago "
            f"(more than three poll intervals)"
        )
    if health.cursor is not None and now - health.cursor > STREAM_RETENTION - RETENTION_MARGIN:
        failing.append(
            f"cursor {(now - health.cursor).total_seconds() / 3600:.1f} h behind: falling toward "
            "the stream's 12 h retention"
        )
    if health.degraded:
        failing.append(f"degraded: {health.degraded}")
    return failing


class HttpApi:
    def __init__(
        self,
        health: Health,
        *,
        host: str,
        port: int,
        poll_interval_s: float,
        clock: Callable[[], datetime],
    ) -> None:
        self.health = health
        self.poll_interval_s = poll_interval_s
        self.clock = clock
        self.routes: dict[tuple[str, str], Route] = {}
        self.prefix_routes: dict[tuple[str, str], Route] = {}
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002, ARG002 - stdlib signature
                return  # access logs would drown the daemon's own

            def _dispatch(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(min(length, 1 << 20)) if length else b""
                api.handle(self, method, body)

            def do_GET(self) -> None:
                self._dispatch("GET")

            def do_POST(self) -> None:
                self._dispatch("POST")

            def do_DELETE(self) -> None:
                self._dispatch("DELETE")

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def add_route(self, method: str, path: str, route: Route, *, prefix: bool = False) -> None:
        (self.prefix_routes if prefix else self.routes)[(method, path)] = route

    def handle(self, request: BaseHTTPRequestHandler, method: str, body: bytes) -> None:
        path = request.path.split("?", 1)[0]
        if method == "GET" and path == "/metrics":
            metrics.READY.set(0 if self._failing() else 1)
            self._send(request, 200, generate_latest(metrics.REGISTRY), CONTENT_TYPE_LATEST)
            return
        if method == "GET" and path == "/healthz":
            age = time.monotonic() - self.health.loop_heartbeat
            alive = age < 3 * self.poll_interval_s + 120
            self._json(
                request, 200 if alive else 503, {"alive": alive, "loop_age_s": round(age, 1)}
            )
            return
        if method == "GET" and path == "/readyz":
            failing = self._failing()
            self._json(request, 503 if failing else 200, {"ready": not failing, "failing": failing})
            return
        route = self.routes.get((method, path))
        if route is None:
            for (m, prefix), candidate in self.prefix_routes.items():
                if m == method and path.startswith(prefix):
                    route = candidate
                    break
        if route is None:
            self._json(request, 404, {"error": f"no route {method} {path}"})
            return
        status, payload = route(path, body)
        self._json(request, status, payload)

    def _failing(self) -> list[str]:
        return readiness(
            self.health,
            now=self.clock(),
            monotonic=time.monotonic(),
            poll_interval_s=self.poll_interval_s,
        )

    def _json(self, request: BaseHTTPRequestHandler, status: int, payload: object) -> None:
        self._send(request, status, orjson.dumps(payload, default=str), "application/json")

    @staticmethod
    def _send(request: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str) -> None:
        request.send_response(status)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
