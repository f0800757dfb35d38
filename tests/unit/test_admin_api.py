"""The daemon's admin routes (/replays*) need the admin bearer token; health and metrics do not.

A real HttpApi on a loopback port, spoken to with real HTTP requests: what a browser page, a
scanner or the replay CLI would send.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from publisher import metrics
from publisher.health import Health
from publisher.http_api import HttpApi
from publisher.replay import ReplayManager
from publisher.runtime import Runtime
from publisher.settings import Settings
from publisher.state.memory import OrgState

ADMIN_TOKEN = "admin-token-for-tests-0123456789"


def _manager(settings: Settings) -> ReplayManager:
    """The daemon's replay manager, over the real runtime (nothing runs until a replay does)."""
    return ReplayManager(
        Runtime(settings, health=Health()), OrgState(settings.deployment_id, settings.org_id)
    )


AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


class Recorder:
    """A stand-in admin route that records what reached it (so a refused request provably did
    not), answering 202 like POST /replays."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes]] = []

    def __call__(self, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        self.calls.append((path, body))
        return 202, {"accepted": path}


def start_api(admin_token: str | None) -> tuple[HttpApi, Recorder]:
    health = Health()
    kwargs: dict[str, Any] = {} if admin_token is None else {"admin_token": admin_token}
    api = HttpApi(
        health,
        host="127.0.0.1",
        port=0,
        poll_interval_s=60.0,
        clock=lambda: datetime.now(UTC),
        **kwargs,
    )
    recorder = Recorder()
    api.add_route("POST", "/replays", recorder)
    api.add_route("DELETE", "/replays/", recorder, prefix=True)
    api.add_route("GET", "/replays/", recorder, prefix=True)
    manager = _manager(Settings(org_id="org-1", webex_token="t"))  # type: ignore[arg-type]
    api.add_route("GET", "/replays", manager._list)
    api.start()
    return api, recorder


@pytest.fixture
def api() -> Iterator[tuple[str, Recorder]]:
    server, recorder = start_api(ADMIN_TOKEN)
    yield f"http://127.0.0.1:{server.port}", recorder
    server.close()


def refused(reason: str) -> float:
    return (
        metrics.REGISTRY.get_sample_value(
            "cdr_publisher_admin_requests_refused_total", {"reason": reason}
        )
        or 0.0
    )


def test_post_without_a_token_is_401_and_reaches_nothing(api: tuple[str, Recorder]) -> None:
    """No Authorization header: 401 with a WWW-Authenticate challenge; the route never runs."""
    url, recorder = api
    before = refused("unauthenticated")
    reply = requests.post(f"{url}/replays", json={"start": "x", "end": "y"}, timeout=5)

    assert reply.status_code == 401
    assert reply.headers["WWW-Authenticate"].startswith("Bearer")
    assert "CDR_PUBLISHER_ADMIN_TOKEN" in reply.json()["error"]
    assert recorder.calls == []
    assert refused("unauthenticated") == before + 1


@pytest.mark.parametrize(
    "header",
    [
        f"Bearer {ADMIN_TOKEN}x",
        f"Bearer {ADMIN_TOKEN[:-1]}",
        "Bearer ",
        f"Basic {ADMIN_TOKEN}",
        ADMIN_TOKEN,
        f"Bearer  {ADMIN_TOKEN} extra",
    ],
)
def test_a_wrong_token_is_401(api: tuple[str, Recorder], header: str) -> None:
    """A token that differs in any way, or another scheme, is refused."""
    url, recorder = api
    for method in ("POST", "DELETE"):
        reply = requests.request(
            method, f"{url}/replays/x", headers={"Authorization": header}, json={}, timeout=5
        )
        assert reply.status_code in (401, 404), reply.text
    reply = requests.post(f"{url}/replays", headers={"Authorization": header}, json={}, timeout=5)
    assert reply.status_code == 401
    assert recorder.calls == []


def test_a_browser_style_text_plain_post_is_refused(api: tuple[str, Recorder]) -> None:
    """The "simple request" a web page may send to loopback without a preflight (text/plain, no
    Authorization) is refused; even with the token, only application/json bodies are taken."""
    url, recorder = api
    body = '{"start": "2026-11-01T00:00:00Z", "end": "2026-11-02T00:00:00Z"}'
    plain = {"Content-Type": "text/plain"}
    assert requests.post(f"{url}/replays", data=body, headers=plain, timeout=5).status_code == 401
    before = refused("media_type")
    with_token = requests.post(f"{url}/replays", data=body, headers={**plain, **AUTH}, timeout=5)
    form = requests.post(f"{url}/replays", data={"start": "x"}, headers=AUTH, timeout=5)

    assert with_token.status_code == 415
    assert form.status_code == 415
    assert "application/json" in with_token.json()["error"]
    assert recorder.calls == []
    assert refused("media_type") == before + 2


def test_with_the_token_and_json_the_route_runs(api: tuple[str, Recorder]) -> None:
    """The admin token and a JSON body: 202 from the route, which got the body whole; DELETE
    and GET with the token reach their routes too."""
    url, recorder = api
    body = b'{"start": "2026-11-01T00:00:00Z", "end": "2026-11-02T00:00:00Z"}'
    json_type = {"Content-Type": "application/json; charset=utf-8"}
    posted = requests.post(f"{url}/replays", data=body, headers={**AUTH, **json_type}, timeout=5)
    deleted = requests.delete(f"{url}/replays/r1", headers=AUTH, timeout=5)
    listed = requests.get(f"{url}/replays", headers=AUTH, timeout=5)

    assert posted.status_code == 202
    assert deleted.status_code == 202
    assert recorder.calls == [("/replays", body), ("/replays/r1", b"")]
    assert listed.status_code == 200
    assert listed.json()["org_id"] == "org-1"


def test_progress_routes_need_the_token_too(api: tuple[str, Recorder]) -> None:
    """GET /replays lists replays (spans, topics): readable only with the token."""
    url, recorder = api
    assert requests.get(f"{url}/replays", timeout=5).status_code == 401
    assert requests.get(f"{url}/replays/some-id", timeout=5).status_code == 401
    assert recorder.calls == []


def test_health_ready_and_metrics_stay_open(api: tuple[str, Recorder]) -> None:
    """Probes and Prometheus need no token."""
    url, _ = api
    assert requests.get(f"{url}/healthz", timeout=5).status_code in (200, 503)
    assert requests.get(f"{url}/readyz", timeout=5).status_code in (200, 503)
    metrics_reply = requests.get(f"{url}/metrics", timeout=5)
    assert metrics_reply.status_code == 200
    assert "cdr_publisher_ready" in metrics_reply.text


def test_a_body_past_the_bound_is_413_and_not_read(api: tuple[str, Recorder]) -> None:
    """A POST declaring more than the bound is refused before its body is read."""
    url, recorder = api
    big = b"{" + b" " * (70 * 1024) + b"}"
    headers = {**AUTH, "Content-Type": "application/json"}
    reply = requests.post(f"{url}/replays", data=big, headers=headers, timeout=5)

    assert reply.status_code == 413
    assert recorder.calls == []


def test_an_unreadable_content_length_is_400_not_a_traceback(api: tuple[str, Recorder]) -> None:
    """A Content-Length that is not a number gets 400 and the server keeps serving."""
    url, _ = api
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            b"POST /replays HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + ADMIN_TOKEN.encode() + b"\r\n"
            b"Content-Length: ten\r\n\r\n"
        )
        answer = sock.recv(4096)
    assert answer.startswith((b"HTTP/1.0 400", b"HTTP/1.1 400"))
    assert requests.get(f"{url}/healthz", timeout=5).status_code in (200, 503)


def test_without_a_configured_token_admin_routes_are_disabled() -> None:
    """No CDR_PUBLISHER_ADMIN_TOKEN: every admin route answers 403 saying how to enable it, even
    to a request that carries some token; health stays open."""
    server, recorder = start_api(None)
    url = f"http://127.0.0.1:{server.port}"
    try:
        before = refused("disabled")
        posted = requests.post(f"{url}/replays", json={}, headers=AUTH, timeout=5)
        deleted = requests.delete(f"{url}/replays/x", timeout=5)
        listed = requests.get(f"{url}/replays", timeout=5)
        health = requests.get(f"{url}/healthz", timeout=5)
    finally:
        server.close()

    for reply in (posted, deleted, listed):
        assert reply.status_code == 403
        assert "CDR_PUBLISHER_ADMIN_TOKEN" in reply.json()["error"]
    assert health.status_code in (200, 503)
    assert recorder.calls == []
    assert refused("disabled") == before + 3
