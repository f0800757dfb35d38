"""The bearer token and the OAuth client secret go only to the host that was checked.

requests prepares a URL with urllib3's ``parse_url`` and its adapter then connects to the host that
``urllib.parse`` reads from the prepared URL; a check made with ``urlsplit`` on the raw link can
read another host than the one the request goes to (``https://evil.example\\@webex-host/`` is
evil.example for requests, the Webex host for urlsplit). These tests use the real requests stack:
loopback listeners that record what reaches them, and the scripted transport that sees the prepared
request exactly as the adapter would send it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest
import requests

from publisher import metrics
from publisher.errors import ConfigError, WebexBadPageError, WebexRegionError
from publisher.settings import load_settings
from publisher.simulator.server import Simulator
from publisher.webex.auth import OAuthTokens, StaticToken
from publisher.webex.client import CdrClient
from publisher.webex.ratelimit import RateLimiter
from publisher.webex.windows import Endpoint
from tests.unit.test_client import (
    BASE,
    TOKEN,
    WINDOW,
    FakeTime,
    Reply,
    Transport,
    page,
    session_with,
)
from tests.unit.test_fetch_simulator import BASE_CONFIG

WEBEX_HOST = "analytics-calling.webexapis.com"


def refused(source: str, reason: str) -> float:
    """How many URLs from ``source`` were refused for ``reason`` so far."""
    value = metrics.REGISTRY.get_sample_value(
        "cdr_publisher_refused_urls_total", {"source": source, "reason": reason}
    )
    return value or 0.0


# --- loopback listeners that record what reaches them -----------------------------------------


class Listener:
    """A loopback HTTP server that records each request's path and Authorization header and
    answers with ``reply(path)``: (status, headers, body)."""

    def __init__(self, reply: object = None) -> None:
        self.seen: list[tuple[str, str | None]] = []
        self.reply = reply or (lambda _path: (200, {}, orjson.dumps({"items": []})))
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # noqa: A002, ARG002
                return

            def do_GET(self) -> None:
                listener.seen.append((self.path, self.headers.get("Authorization")))
                status, headers, body = listener.reply(self.path)  # type: ignore[operator]
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                self.do_GET()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Listener:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def live_client(base_url: str, **kwargs: object) -> CdrClient:
    """A client on a real requests session (real adapter, real sockets), fake time."""
    t = FakeTime(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    limiter = RateLimiter(
        initial_per_minute=600.0, page_per_minute=600.0, clock=t.mono, sleep=t.sleep
    )
    options: dict[str, object] = {
        "base_url": base_url,
        "tokens": StaticToken(TOKEN),
        "limiter": limiter,
        "clock": t.utc,
        "sleep": t.sleep,
        "retries": 1,
    }
    options.update(kwargs)
    return CdrClient(**options)  # type: ignore[arg-type]


def test_a_crafted_next_link_never_reaches_a_second_listener() -> None:
    """A next link that urlsplit reads as the home listener but requests sends elsewhere (a
    backslash before '@') is refused: the second listener never sees a request, let alone the
    token, and the client raises a clear error carrying the reason and the window."""
    with Listener() as evil:
        crafted = f"http://localhost:{evil.port}\\@127.0.0.1:{{home}}/v1/cdr_stream?p=2"

        def home_reply(_path: str) -> tuple[int, dict[str, str], bytes]:
            link = crafted.replace("{home}", str(home.port))
            return 200, {"Link": f'<{link}>; rel="next"'}, page("a")

        with Listener(home_reply) as home:
            before = refused("next_link", "backslash")
            with (
                live_client(f"http://127.0.0.1:{home.port}") as client,
                pytest.raises(WebexBadPageError) as info,
            ):
                list(client.pages(Endpoint.STREAM, WINDOW))

    assert evil.seen == []
    assert [auth for _, auth in home.seen] == [f"Bearer {TOKEN}"]
    assert getattr(info.value, "reason", None) == "backslash"
    assert getattr(info.value, "window", None) == WINDOW
    assert refused("next_link", "backslash") == before + 1


@pytest.mark.parametrize(
    ("link", "reason"),
    [
        (f"https://evil.example\\@{WEBEX_HOST}/v1/cdr_stream?p=2", "backslash"),
        (f"https://evil.example:443\\@{WEBEX_HOST}/v1/cdr_stream", "backslash"),
        (f"https://{WEBEX_HOST}@evil.example/v1/cdr_stream", "userinfo"),
        (f"https://user:pw@{WEBEX_HOST}/v1/cdr_stream", "userinfo"),
        (f"https://evil.example%40{WEBEX_HOST}/v1/cdr_stream", "percent_encoded"),
        (f"https://{WEBEX_HOST}\t.evil.example/v1/cdr_stream", "control_or_space"),
        (f"https://{WEBEX_HOST} /v1/cdr_stream", "control_or_space"),
        (f"https://{WEBEX_HOST}.evil.example/v1/cdr_stream", "foreign_host"),
        ("https://evil.example/steal", "foreign_host"),
        ("//evil.example/steal", "foreign_host"),
        (f"http://{WEBEX_HOST}/v1/cdr_stream", "plain_http"),
        ("https://other.webexapis.com:8443/v1/cdr_stream", "port"),
        ("https://[::1]/v1/cdr_stream", "foreign_host"),
        ("ftp://analytics-calling.webexapis.com/x", "scheme"),
        (f"https://{WEBEX_HOST}./v1/cdr_stream", "host"),
        ("https://xn--80ak6aa92e.webexapis.com\u3002evil/x", "non_ascii"),
    ],
)
def test_no_odd_next_link_is_followed(link: str, reason: str) -> None:
    """Userinfo, backslashes, control characters, percent-encoded or odd hosts, odd ports and
    foreign hosts: the link is refused for its reason and nothing is sent past the first page."""
    seen: list[requests.PreparedRequest] = []

    def answer(request: requests.PreparedRequest) -> Reply:
        seen.append(request)
        return 200, {"Link": f'<{link}>; rel="next"'}, page("a")

    session = session_with(Transport(answer))
    before = refused("next_link", reason)
    with (
        live_client(BASE, session=session) as client,
        pytest.raises(WebexBadPageError, match="not following") as info,
    ):
        list(client.pages(Endpoint.STREAM, WINDOW))
    session.close()

    # What the adapter would connect to, read the way requests' adapter reads it.
    assert [urlsplit(r.url or "").hostname for r in seen] == [WEBEX_HOST]
    assert getattr(info.value, "reason", None) == reason
    assert refused("next_link", reason) == before + 1


def test_a_next_link_on_the_home_host_or_another_webex_host_is_followed() -> None:
    """The rule is not a blanket refusal: same origin and https Webex hosts are followed."""
    links = iter(
        [
            f"https://{WEBEX_HOST}/v1/cdr_stream?p=2",
            "https://analytics-calling-eu.webexapis.com:443/v1/cdr_stream?p=3",
            "/v1/cdr_stream?p=4",
        ]
    )
    seen: list[str] = []

    def answer(request: requests.PreparedRequest) -> Reply:
        seen.append(request.url or "")
        link = next(links, None)
        return 200, ({"Link": f'<{link}>; rel="next"'} if link else {}), page(str(len(seen)))

    session = session_with(Transport(answer))
    with live_client(BASE, session=session) as client:
        assert len(list(client.pages(Endpoint.STREAM, WINDOW))) == 4
    session.close()
    assert [urlsplit(u).hostname for u in seen] == [
        WEBEX_HOST,
        WEBEX_HOST,
        "analytics-calling-eu.webexapis.com",
        "analytics-calling-eu.webexapis.com",
    ]


def test_a_crafted_saved_region_is_ignored_and_the_token_stays_home(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A region host read back from the cursor record that requests would send elsewhere is not
    used: one warning line (no traceback), a metric, and requests go to the configured host."""
    seen: list[str] = []

    def answer(request: requests.PreparedRequest) -> Reply:
        seen.append(request.url or "")
        return 200, {}, page("a")

    session = session_with(Transport(answer))
    before = refused("saved_region", "backslash")
    with caplog.at_level(logging.WARNING, logger="publisher.webex"):
        client = live_client(
            BASE,
            session=session,
            region_base_url="https://evil.example\\@analytics-calling-eu.webexapis.com",
        )
        with client:
            list(client.pages(Endpoint.STREAM, WINDOW))
    session.close()

    assert [urlsplit(u).hostname for u in seen] == [WEBEX_HOST]
    assert client.base_url == BASE
    warnings = [r for r in caplog.records if "region" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].exc_info is None
    assert refused("saved_region", "backslash") == before + 1


def test_a_451_naming_a_foreign_host_is_counted_and_not_followed() -> None:
    """A 451 whose host is not a Webex host raises a region error naming the host; counted."""

    def answer(_request: requests.PreparedRequest) -> Reply:
        body = orjson.dumps({"message": "Please use analytics.webexapis.com.evil.example"})
        return 451, {}, body

    session = session_with(Transport(answer))
    before = refused("region", "foreign_host")
    with (
        live_client(BASE, session=session) as client,
        pytest.raises(WebexRegionError, match="not following"),
    ):
        list(client.pages(Endpoint.STREAM, WINDOW))
    session.close()
    assert refused("region", "foreign_host") == before + 1


# --- the OAuth token endpoint -------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example\\@webexapis.com/v1/access_token",
        "https://webexapis.com@evil.example/v1/access_token",
        "https://evil.example%2F@webexapis.com/v1/access_token",
    ],
)
def test_the_client_secret_never_goes_to_a_host_other_than_the_checked_one(
    url: str, tmp_path: Path
) -> None:
    """A token URL that requests would send elsewhere is refused before anything is sent."""
    seen: list[str] = []

    def answer(request: requests.PreparedRequest) -> Reply:
        seen.append(request.url or "")
        return 200, {}, orjson.dumps({"access_token": "a" * 20, "expires_in": 3600})

    session = session_with(Transport(answer))
    with pytest.raises(ConfigError, match="webex_token_url"):
        OAuthTokens(
            client_id="client-1",
            client_secret="client-secret-abcdef",
            refresh_token="refresh-token-0001",
            token_url=url,
            refresh_token_file=tmp_path / "refresh",
            session=session,
        )
    session.close()
    assert seen == []


@pytest.mark.parametrize("name", ["WEBEX_BASE_URL", "WEBEX_TOKEN_URL"])
@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example\\@webexapis.com",
        "https://user:pw@webexapis.com",
        "https://webexapis.com /v1",
        "https://evil.example%40webexapis.com",
    ],
)
def test_settings_refuse_a_webex_url_requests_would_read_otherwise(
    name: str, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Start-up stops on an odd Webex URL, naming the setting and not echoing the value."""
    monkeypatch.setenv(f"CDR_PUBLISHER_{name}", url)
    with pytest.raises(ConfigError, match=f"CDR_PUBLISHER_{name}") as info:
        load_settings()
    assert "evil" not in str(info.value)
    assert "pw" not in str(info.value)


# --- against the simulator ----------------------------------------------------------------------


def test_against_the_simulator_a_crafted_saved_region_falls_back_and_fetches_everything() -> None:
    """With a crafted region in the cursor state, the client fetches the simulator's span from the
    configured host, every record once."""
    now = datetime.now(UTC)
    start, end = now - timedelta(hours=3), now - timedelta(hours=2)
    with Listener() as evil, Simulator(replace(BASE_CONFIG, rate_limits=False)) as sim:
        crafted = f"http://localhost:{evil.port}\\@127.0.0.1:{sim.port}"
        client = CdrClient(
            base_url=sim.base_url,
            tokens=StaticToken("sim-token"),
            limiter=RateLimiter(initial_per_minute=6000.0, page_per_minute=6000.0),
            page_size=500,
            region_base_url=crafted,
        )
        with client:
            ids = []
            for raw in client.fetch(Endpoint.STREAM, start, end):
                ids += [item["Report ID"] for item in orjson.loads(raw.body)["items"]]
        expected = sim.expected_report_ids("stream", start, end)
    assert evil.seen == []
    assert sorted(ids) == sorted(expected)
    assert expected
