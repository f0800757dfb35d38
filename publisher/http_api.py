"""The daemon's HTTP endpoint: /healthz, /readyz, /metrics (open) and the admin routes.

Readiness is decided by :func:`readiness`, pure over a :class:`Health` snapshot and the clock.

Every route added with :meth:`HttpApi.add_route` (the ``/replays`` routes) is an admin route:
it needs ``Authorization: Bearer <CDR_PUBLISHER_ADMIN_TOKEN>``, compared in constant time, and with
no admin token configured it is disabled (403 saying how to enable it). A POST body must be
``application/json`` (415 otherwise: a web page can make a browser send ``text/plain`` to loopback
without a preflight, never a JSON body with an Authorization header) and at most
:data:`MAX_ADMIN_BODY_BYTES` (413). The checks come before the body is read; a refused request is
counted in ``cdr_publisher_admin_requests_refused_total{reason}`` and logged in one line.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from publisher import metrics
from publisher.health import Health

log = logging.getLogger("publisher.http")

STREAM_RETENTION = timedelta(hours=12)
# Not ready once the cursor is this close to falling out of the stream's retention.
RETENTION_MARGIN = timedelta(hours=2)

Route = Callable[[str, bytes], tuple[int, dict[str, Any]]]

# A replay request is a few hundred bytes.
MAX_ADMIN_BODY_BYTES = 64 * 1024
_DRAIN_LIMIT = 1 << 20
_ENABLE = "set CDR_PUBLISHER_ADMIN_TOKEN (or CDR_PUBLISHER_ADMIN_TOKEN_FILE) to enable them"


@dataclass(frozen=True)
class Refusal:
    """Why an admin request is refused: HTTP status, a fixed reason word, the message."""

    status: int
    reason: str
    message: str


# A request header by name (case-insensitive), or None.
Header = Callable[[str], str | None]


def admin_refusal(header: Header, admin_token: str | None) -> Refusal | None:
    """Pure: None when the request's headers carry the admin token, else why not."""
    if admin_token is None:
        return Refusal(403, "disabled", f"admin routes are disabled: {_ENABLE}")
    scheme, _, presented = (header("Authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not presented:
        return Refusal(
            401,
            "unauthenticated",
            "admin routes need Authorization: Bearer <CDR_PUBLISHER_ADMIN_TOKEN>",
        )
    # Constant time: the comparison must not tell how much of a guess was right.
    if not hmac.compare_digest(presented.encode("utf-8"), admin_token.encode("utf-8")):
        return Refusal(401, "bad_token", "the admin token is not the one this daemon has")
    return None


def body_refusal(method: str, header: Header) -> Refusal | int:
    """Pure: the refusal of a request's body, or the number of body bytes to read."""
    if header("Transfer-Encoding"):
        return Refusal(411, "length_required", "send the body with a Content-Length")
    declared = (header("Content-Length") or "0").strip()
    if not declared.isdigit():
        return Refusal(400, "bad_length", "Content-Length is not a number")
    length = int(declared)
    if method != "POST":
        return 0  # DELETE and GET take no body; any sent is left unread
    media_type = (header("Content-Type") or "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        return Refusal(415, "media_type", "the body must be application/json")
    if length > MAX_ADMIN_BODY_BYTES:
        return Refusal(413, "too_large", f"the body is larger than {MAX_ADMIN_BODY_BYTES} bytes")
    return length


def readiness(
    health: Health, *, now: datetime, monotonic: float, poll_interval_s: float
) -> list[str]:
    """The conditions that fail (empty: ready). A deployment of one org fails on its org's
    problems, as it always did. A fleet of several fails on the process's own (producers,
    restores, the group, Kafka) and only when every org fails: one customer's revoked token
    must not pull the replica out of its Service (and its metrics out of Prometheus) nor hold
    a rolling update; :func:`org_problems` names each failing org instead."""
    failing: list[str] = []
    if not health.producer_ready:
        failing.append("producer not initialised (init_transactions has not completed)")
    if not health.state_restored:
        failing.append("state not restored from the state topic")
    if health.restore_blocked:
        failing.append(f"restore waiting: {health.restore_blocked}")
    if health.slots is not None and not health.joined:
        failing.append("not a member of the consumer group yet (no assignment)")
    if health.slots is not None and not health.orgs:
        # A replica owning no slot of an org is a ready standby.
        if health.degraded:
            failing.append(f"degraded: {health.degraded}")
        return failing
    if health.orgs:
        if health.degraded:
            failing.append(f"degraded: {health.degraded}")
        if not health.fleet:
            for child in health.orgs.values():
                failing.extend(
                    _org_failing(child, now=now, monotonic=monotonic, poll=poll_interval_s)
                )
            return failing
        failing_orgs = [
            org
            for org, child in health.orgs.items()
            if _org_failing(child, now=now, monotonic=monotonic, poll=poll_interval_s)
        ]
        if len(failing_orgs) == len(health.orgs):
            failing.append(f"every org is failing ({len(health.orgs)}): see orgs_failing")
        return failing
    failing.extend(_org_failing(health, now=now, monotonic=monotonic, poll=poll_interval_s))
    return failing


def org_problems(
    health: Health, *, now: datetime, monotonic: float, poll_interval_s: float
) -> list[str]:
    """Each failing condition of each org of a fleet, as ``org <id>: <condition>``."""
    if not health.fleet:  # one org: its conditions are the readiness itself
        return []
    return [
        f"org {org}: {reason}"
        for org, child in sorted(health.orgs.items())
        for reason in _org_failing(child, now=now, monotonic=monotonic, poll=poll_interval_s)
    ]


def org_summaries(health: Health) -> dict[str, dict[str, Any]]:
    """Per org of the process: its cursor, whether its last poll worked, its problem."""
    return {
        org: {
            "cursor": child.cursor.isoformat() if child.cursor else None,
            "polling": child.last_poll_ok > 0 and not child.degraded,
            "problem": child.degraded,
            "gaps": sorted(child.gaps.values()),
        }
        for org, child in sorted(health.orgs.items())
    }


def _org_failing(health: Health, *, now: datetime, monotonic: float, poll: float) -> list[str]:
    failing: list[str] = []
    if health.last_poll_ok == 0.0:
        failing.append("no successful poll yet")
    elif monotonic - health.last_poll_ok > 3 * poll + 60:
        failing.append(
            f"last successful poll {monotonic - health.last_poll_ok:.0f}s ago "
            f"(more than three poll intervals)"
        )
    if health.cursor is not None and now - health.cursor > STREAM_RETENTION - RETENTION_MARGIN:
        failing.append(
            f"cursor {(now - health.cursor).total_seconds() / 3600:.1f} h behind: falling toward "
            "the stream's 12 h retention"
        )
    failing.extend(f"gap {description}" for _id, description in sorted(health.gaps.items()))
    if health.degraded:
        failing.append(f"degraded: {health.degraded}")
    return failing


def _drain(request: BaseHTTPRequestHandler) -> None:
    """Read and drop a refused request's body, up to a bound: closing a socket with unread bytes
    makes the kernel reset it, and the client would see the reset instead of our answer."""
    declared = (request.headers.get("Content-Length") or "").strip()
    remaining = min(int(declared), _DRAIN_LIMIT) if declared.isdigit() else 0
    try:
        while remaining > 0:
            chunk = request.rfile.read(min(remaining, 64 * 1024))
            if not chunk:
                return
            remaining -= len(chunk)
    except OSError:
        return


class HttpApi:
    def __init__(
        self,
        health: Health,
        *,
        host: str,
        port: int,
        poll_interval_s: float,
        clock: Callable[[], datetime],
        admin_token: str | None = None,
    ) -> None:
        self.health = health
        self._admin_token = admin_token
        self.poll_interval_s = poll_interval_s
        self.clock = clock
        self.routes: dict[tuple[str, str], Route] = {}
        self.prefix_routes: dict[tuple[str, str], Route] = {}
        api = self

        class Handler(BaseHTTPRequestHandler):
            # A client that stalls mid-request frees its thread after this long.
            timeout = 30

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002, ARG002 - stdlib signature
                return  # access logs would drown the daemon's own

            def _dispatch(self, method: str) -> None:
                # HTTP/1.0 (the default): one request per connection, so a body left unread by
                # a refusal is never taken for the next request.
                self.close_connection = True
                api.handle(self, method)

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

    def handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
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
            payload: dict[str, Any] = {"ready": not failing, "failing": failing}
            if self.health.fleet:
                # A deployment of one org keeps the reply it always had.
                payload["slots"] = sorted(self.health.slots or [])
                payload["orgs_failing"] = org_problems(
                    self.health,
                    now=self.clock(),
                    monotonic=time.monotonic(),
                    poll_interval_s=self.poll_interval_s,
                )
                payload["orgs"] = org_summaries(self.health)
            self._json(request, 503 if failing else 200, payload)
            return
        route = self.routes.get((method, path))
        if route is None:
            for (m, prefix), candidate in self.prefix_routes.items():
                if m == method and path.startswith(prefix):
                    route = candidate
                    break
        if route is None:
            self._json(request, 404, {"error": f"no route {method} {path[:100]}"})
            return
        # Every added route is an admin route: the token first, then the body's form.
        header: Header = request.headers.get
        refusal = admin_refusal(header, self._admin_token)
        checked = body_refusal(method, header) if refusal is None else refusal
        if isinstance(checked, Refusal):
            self._refuse(request, method, path, checked)
            return
        body = request.rfile.read(checked) if checked else b""
        status, payload = route(path, body)
        self._json(request, status, payload)

    def _refuse(
        self, request: BaseHTTPRequestHandler, method: str, path: str, refusal: Refusal
    ) -> None:
        metrics.ADMIN_REFUSED.labels(reason=refusal.reason).inc()
        log.warning(
            "admin request refused: %s",
            refusal.message,
            extra={
                "method": method,
                "path": path[:100],
                "client": request.client_address[0],
                "status": refusal.status,
                "reason": refusal.reason,
            },
        )
        _drain(request)
        headers = {"WWW-Authenticate": 'Bearer realm="cdr-publisher admin"'}
        payload = {"error": refusal.message, "admin": "refused", "reason": refusal.reason}
        self._json(request, refusal.status, payload, headers if refusal.status == 401 else None)

    def _failing(self) -> list[str]:
        return readiness(
            self.health,
            now=self.clock(),
            monotonic=time.monotonic(),
            poll_interval_s=self.poll_interval_s,
        )

    def _json(
        self,
        request: BaseHTTPRequestHandler,
        status: int,
        payload: object,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        body = orjson.dumps(payload, default=str)
        self._send(request, status, body, "application/json", headers)

    @staticmethod
    def _send(
        request: BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        content_type: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        request.send_response(status)
        for name, value in (headers or {}).items():
            request.send_header(name, value)
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
