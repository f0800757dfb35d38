"""The Webex client against a scripted transport: pagination, every error path, limits, bounds."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from publisher import metrics
from publisher.errors import (
    WebexAuthError,
    WebexBadPageError,
    WebexRateLimitedError,
    WebexRegionError,
    WebexRequestError,
    WebexUnavailableError,
    WindowError,
)
from publisher.webex.auth import StaticToken
from publisher.webex.client import (
    CdrClient,
    next_link,
    region_host,
    retry_after_seconds,
)
from publisher.webex.ratelimit import RateLimiter
from publisher.webex.windows import Endpoint, Window

# --- a scripted transport and a fake clock (also used by test_auth and test_fetch_simulator) ----

Reply = tuple[int, dict[str, str], bytes] | Exception
Handler = Callable[[requests.PreparedRequest], Reply]


class Transport(BaseAdapter):
    """Answers each request with ``handler(request)``; raises it when it is an exception."""

    def __init__(self, handler: Handler) -> None:
        super().__init__()
        self.handler = handler
        self.requests: list[requests.PreparedRequest] = []

    def send(  # type: ignore[override]
        self, request: requests.PreparedRequest, **_kwargs: object
    ) -> requests.Response:
        self.requests.append(request)
        result = self.handler(request)
        if isinstance(result, Exception):
            raise result
        status, headers, body = result
        response = requests.Response()
        response.status_code = status
        response.headers = CaseInsensitiveDict(headers)
        response.raw = io.BytesIO(body)
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        pass


def session_with(transport: Transport) -> requests.Session:
    session = requests.Session()
    session.mount("https://", transport)
    session.mount("http://", transport)
    return session


class FakeTime:
    """Monotonic seconds and UTC wall time from one counter that only sleeping moves."""

    def __init__(self, start: datetime | None = None) -> None:
        self.start = start or datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
        self.elapsed = 0.0
        self.slept: list[float] = []

    def mono(self) -> float:
        return self.elapsed

    def utc(self) -> datetime:
        return self.start + timedelta(seconds=self.elapsed)

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.elapsed += seconds


# --- fixtures -----------------------------------------------------------------------------------

BASE = "https://analytics-calling.webexapis.com"
TOKEN = "static-access-token-1234567890"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
WINDOW = Window(T0 - timedelta(hours=2), T0 - timedelta(hours=1))


def page(*ids: str) -> bytes:
    return orjson.dumps({"items": [{"Report ID": i} for i in ids]})


def error(message: str, tracking: str = "WEBEX_T1") -> bytes:
    return orjson.dumps(
        {"message": message, "errors": [{"description": message}], "trackingId": tracking}
    )


def query(request: requests.PreparedRequest) -> dict[str, list[str]]:
    return parse_qs(urlsplit(request.url or "").query)


class Harness:
    """One client wired to a scripted transport and a fake clock."""

    def __init__(self, handler: Handler, **kwargs: object) -> None:
        self.time = FakeTime(T0)
        self.transport = Transport(handler)
        self.session = session_with(self.transport)
        self.limiter = RateLimiter(
            initial_per_minute=1.0,
            page_per_minute=10.0,
            clock=self.time.mono,
            sleep=self.time.sleep,
        )
        options: dict[str, object] = {
            "base_url": BASE,
            "tokens": StaticToken(TOKEN),
            "limiter": self.limiter,
            "session": self.session,
            "clock": self.time.utc,
            "sleep": self.time.sleep,
            "retries": 3,
        }
        options.update(kwargs)
        self.client = CdrClient(**options)  # type: ignore[arg-type]

    def pages(self, window: Window = WINDOW, endpoint: Endpoint = Endpoint.STREAM) -> list[bytes]:
        return [p.body for p in self.client.pages(endpoint, window)]


@pytest.fixture
def harness() -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(handler: Handler, **kwargs: object) -> Harness:
        h = Harness(handler, **kwargs)
        made.append(h)
        return h

    yield make
    for h in made:
        h.session.close()


def scripted(*replies: Reply) -> Handler:
    remaining = list(replies)

    def handler(_request: requests.PreparedRequest) -> Reply:
        return remaining.pop(0)

    return handler


# --- pure helpers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('<https://h/v1/cdr_stream?a=1>; rel="next"', "https://h/v1/cdr_stream?a=1"),
        ('<<https://h/next?x=1>; rel="next"', "https://h/next?x=1"),
        ("<https://h/next>; rel=next", "https://h/next"),
        ("<https://h/next>; REL='Next'", "https://h/next"),
        ('<https://h/p>; rel="prev", <https://h/n?l=a,b>; rel="next"', "https://h/n?l=a,b"),
        ('<https://h/n>; title="a, <odd>"; rel="prev next"', "https://h/n"),
        ('<https://h/p>; rel="prev"', None),
        ("", None),
        (None, None),
        ("garbage", None),
    ],
)
def test_next_link_is_parsed_tolerantly(header: str | None, expected: str | None) -> None:
    """The rel="next" URL is found despite <<, several links, quoting, case and commas."""
    assert next_link(header) == expected


@pytest.mark.parametrize(
    ("message", "host"),
    [
        ("Please use analytics-calling-eu.webexapis.com", "analytics-calling-eu.webexapis.com"),
        (
            "Request should go to the regional URL: analytics-calling-in.webexapis.com.",
            "analytics-calling-in.webexapis.com",
        ),
        (
            'Your data is elsewhere; request should go to URL: "https://analytics-calling-au.webexapis.com"',
            "analytics-calling-au.webexapis.com",
        ),
        ("Please use https://localhost:8443/", "localhost:8443"),
        ("Please use the other region", None),
        ("", None),
    ],
)
def test_region_host_reads_every_known_wording(message: str, host: str | None) -> None:
    """All three 451 wordings, with or without a scheme, yield the host; none yields None."""
    assert region_host(message) == host


def test_retry_after_takes_seconds_or_an_http_date() -> None:
    """Retry-After is delta seconds or an HTTP date; garbage is None."""
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert retry_after_seconds("7", now) == 7.0
    assert retry_after_seconds("Sun, 01 Mar 2026 12:00:30 GMT", now) == 30.0
    assert retry_after_seconds("Sun, 01 Mar 2026 11:00:00 GMT", now) == 0.0
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None


# --- pagination ---------------------------------------------------------------------------------


def test_pages_follow_next_links_as_given(harness: Callable[..., Harness]) -> None:
    """The first request carries the query; next links are followed verbatim; no link ends it."""
    link = f'<{BASE}/v1/cdr_stream?startTimeForNextFetch=X&totalCount=3&max=500>; rel="next"'
    h = harness(
        scripted((200, {"Link": link}, page("a", "b")), (200, {}, page("c"))),
        locations=("Paris", "Lyon"),
        page_size=500,
    )

    assert h.pages() == [page("a", "b"), page("c")]
    first, second = h.transport.requests
    assert urlsplit(first.url or "").path == "/v1/cdr_stream"
    assert query(first) == {
        "startTime": ["2026-03-01T10:00:00.000Z"],
        "endTime": ["2026-03-01T11:00:00.000Z"],
        "max": ["500"],
        "locations": ["Paris,Lyon"],
    }
    assert second.url == f"{BASE}/v1/cdr_stream?startTimeForNextFetch=X&totalCount=3&max=500"
    for request in (first, second):
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        assert request.headers["TrackingID"].startswith("CDRPUB_")
    assert first.headers["TrackingID"] != second.headers["TrackingID"]


def test_an_empty_page_ends_the_window(harness: Callable[..., Harness]) -> None:
    """A page without items stops pagination even when it carries a next link."""
    h = harness(scripted((200, {"Link": f'<{BASE}/n>; rel="next"'}, b'{"items": []}')))

    assert h.pages() == []
    assert len(h.transport.requests) == 1


def test_no_cdrs_404_is_an_empty_window(harness: Callable[..., Harness]) -> None:
    """404 "No CDRs for requested time range" yields no pages and raises nothing."""
    h = harness(scripted((404, {}, error("No CDRs for requested time range and filters"))))

    assert h.pages() == []


def test_a_next_link_to_another_host_is_not_followed(harness: Callable[..., Harness]) -> None:
    """The token is never sent to a host a reply names outside Webex."""
    h = harness(scripted((200, {"Link": '<https://evil.example/steal>; rel="next"'}, page("a"))))

    with pytest.raises(WebexBadPageError, match="not a Webex host"):
        h.pages()
    assert len(h.transport.requests) == 1


def test_a_repeating_next_link_stops(harness: Callable[..., Harness]) -> None:
    """A server that links a page to itself again cannot keep us looping."""
    link = {"Link": f'<{BASE}/v1/cdr_stream?p=2>; rel="next"'}
    h = harness(scripted((200, link, page("a")), (200, link, page("b"))))

    with pytest.raises(WebexBadPageError, match="repeats"):
        h.pages()


def test_fetch_splits_a_long_span(harness: Callable[..., Harness]) -> None:
    """A 5-hour stream span is fetched as three windows, one initial request each."""
    h = harness(lambda _r: (404, {}, error("No CDRs for requested time range")))

    assert (
        list(h.client.fetch(Endpoint.STREAM, T0 - timedelta(hours=6), T0 - timedelta(hours=1)))
        == []
    )
    starts = [query(r)["startTime"][0] for r in h.transport.requests]
    assert starts == [
        "2026-03-01T06:00:00.000Z",
        "2026-03-01T07:59:30.000Z",
        "2026-03-01T09:59:00.000Z",
    ]


# --- window rules -------------------------------------------------------------------------------


def test_an_illegal_window_is_refused_before_sending(harness: Callable[..., Harness]) -> None:
    """A stream window ending 10 s ago raises WindowError and sends nothing."""
    h = harness(scripted())

    with pytest.raises(WindowError, match="1 minute"):
        h.pages(Window(T0 - timedelta(minutes=10), T0 - timedelta(seconds=10)))
    assert h.transport.requests == []


def test_a_start_that_ages_while_waiting_is_moved_up(harness: Callable[..., Harness]) -> None:
    """A window legal when asked but too old after the limiter's wait starts at the new bound."""
    h = harness(scripted((200, {}, page("a")), (200, {}, page("b"))))
    oldest = T0 - timedelta(hours=12) + timedelta(seconds=30)
    h.pages()  # uses the initial slot: the next window waits a minute (and 1% slack)
    pages = list(h.client.pages(Endpoint.STREAM, Window(oldest, oldest + timedelta(hours=1))))

    assert query(h.transport.requests[1])["startTime"] == ["2026-03-01T00:01:30.600Z"]
    assert pages[0].window.start == oldest + timedelta(seconds=60.6)


# --- rate limits --------------------------------------------------------------------------------


def test_initial_requests_are_paced_by_the_limiter(harness: Callable[..., Harness]) -> None:
    """Two windows back to back: the second initial request waits a minute (fake clock)."""
    h = harness(lambda _r: (200, {}, page("a")))
    before = metrics.RATE_LIMIT_WAIT.labels(org="", endpoint="stream")._value.get()
    h.pages()
    h.pages()

    assert h.time.elapsed == pytest.approx(60.6)
    after = metrics.RATE_LIMIT_WAIT.labels(org="", endpoint="stream")._value.get()
    assert after - before == pytest.approx(60.6)


def test_429_waits_the_retry_after_then_retries(harness: Callable[..., Harness]) -> None:
    """A 429 with Retry-After: 20 holds the token at least 20 s, then the request succeeds."""
    h = harness(
        scripted(
            (429, {"Retry-After": "20"}, error("Request rate exceeds threshold")),
            (200, {}, page("a")),
        )
    )

    assert h.pages() == [page("a")]
    assert 20.0 <= h.time.elapsed <= 22.0 + 60.6


def test_429_without_retry_after_is_capped_and_bounded(harness: Callable[..., Harness]) -> None:
    """Endless 429s (huge Retry-After) wait at most the cap each time, then raise."""
    h = harness(
        lambda _r: (429, {"Retry-After": "86400"}, error("Request rate exceeds threshold")),
        retry_after_cap=100.0,
        rate_limited_retries=2,
    )

    with pytest.raises(WebexRateLimitedError) as info:
        h.pages()
    assert len(h.transport.requests) == 3
    assert info.value.retry_after == 86400.0
    assert h.time.elapsed < 3 * (100.0 + 10.0) + 3 * 60.6


# --- region -------------------------------------------------------------------------------------


def test_451_switches_to_the_regional_host_and_keeps_it(harness: Callable[..., Harness]) -> None:
    """451 naming the EU host: the request is retried there and base_url remembers it."""
    eu = "analytics-calling-eu.webexapis.com"

    def handler(request: requests.PreparedRequest) -> Reply:
        if urlsplit(request.url or "").hostname != eu:
            return 451, {}, error(f'Request should go to URL: "https://{eu}"')
        return 200, {}, page("a")

    h = harness(handler)
    assert h.pages() == [page("a")]
    assert h.client.base_url == f"https://{eu}"
    h.pages()
    assert [urlsplit(r.url or "").hostname for r in h.transport.requests] == [
        "analytics-calling.webexapis.com",
        eu,
        eu,
    ]


def test_451_on_loopback_keeps_http(harness: Callable[..., Harness]) -> None:
    """Against the loopback simulator, the region switch stays on http."""

    def handler(request: requests.PreparedRequest) -> Reply:
        if urlsplit(request.url or "").hostname != "localhost":
            return 451, {}, error("Please use localhost:8123")
        return 200, {}, page("a")

    h = harness(handler, base_url="http://127.0.0.1:8123")
    assert h.pages() == [page("a")]
    assert h.client.base_url == "http://localhost:8123"


def test_unreadable_451_is_a_region_error(harness: Callable[..., Harness]) -> None:
    """A 451 whose message names no host raises WebexRegionError carrying the tracking id."""
    h = harness(scripted((451, {}, error("Wrong region", tracking="WEBEX_T9"))))

    with pytest.raises(WebexRegionError, match="names no host") as info:
        h.pages()
    assert info.value.tracking_id == "WEBEX_T9"


def test_451_to_a_foreign_host_is_refused(harness: Callable[..., Harness]) -> None:
    """A 451 naming a non-Webex host is not followed: the token stays home."""
    h = harness(scripted((451, {}, error("Please use attacker.example.com"))))

    with pytest.raises(WebexRegionError, match="not a Webex host"):
        h.pages()


def test_a_saved_region_is_used_from_the_start(harness: Callable[..., Harness]) -> None:
    """region_base_url given at construction is where the first request goes."""
    h = harness(
        scripted((200, {}, page("a"))), region_base_url="https://analytics-calling-au.webexapis.com"
    )
    h.pages()

    assert (
        urlsplit(h.transport.requests[0].url or "").hostname == "analytics-calling-au.webexapis.com"
    )


# --- refusals and failures ----------------------------------------------------------------------


def test_400_is_a_request_error_not_retried(harness: Callable[..., Harness]) -> None:
    """400 raises WebexRequestError with Webex's message and trackingId after one request."""
    h = harness(scripted((400, {}, error("startTime is too old", tracking="WEBEX_400"))))

    with pytest.raises(WebexRequestError, match="startTime is too old") as info:
        h.pages()
    assert info.value.tracking_id == "WEBEX_400"
    assert info.value.status == 400
    assert len(h.transport.requests) == 1


def test_401_with_a_static_token_is_an_auth_error(harness: Callable[..., Harness]) -> None:
    """A static token cannot be refreshed: 401 raises WebexAuthError at once, token not shown."""
    h = harness(scripted((401, {}, error("The request requires a valid access token"))))

    with pytest.raises(WebexAuthError) as info:
        h.pages()
    assert TOKEN not in str(info.value)
    assert len(h.transport.requests) == 1


class RefreshingTokens:
    """A provider that hands out a new token on each refresh."""

    identity = "test:refreshing"

    def __init__(self) -> None:
        self.current = "token-1"
        self.refreshes = 0

    def token(self) -> str:
        return self.current

    def refresh(self) -> bool:
        self.refreshes += 1
        self.current = f"token-{self.refreshes + 1}"
        return True


def test_401_refreshes_once_then_retries(harness: Callable[..., Harness]) -> None:
    """An OAuth-style provider is refreshed on 401 and the request retried with the new token."""
    tokens = RefreshingTokens()

    def handler(request: requests.PreparedRequest) -> Reply:
        if request.headers["Authorization"] == "Bearer token-1":
            return 401, {}, error("expired")
        return 200, {}, page("a")

    h = harness(handler, tokens=tokens)
    assert h.pages() == [page("a")]
    assert tokens.refreshes == 1


def test_401_after_a_refresh_is_an_auth_error(harness: Callable[..., Harness]) -> None:
    """A token refused even after one refresh raises WebexAuthError (no refresh loop)."""
    tokens = RefreshingTokens()
    h = harness(lambda _r: (401, {}, error("bad token")), tokens=tokens)

    with pytest.raises(WebexAuthError):
        h.pages()
    assert tokens.refreshes == 1
    assert len(h.transport.requests) == 2


def test_5xx_backs_off_then_succeeds(harness: Callable[..., Harness]) -> None:
    """Two 503s then a 200: two growing, jittered back-off sleeps, then the page."""
    h = harness(scripted((503, {}, error("down")), (503, {}, error("down")), (200, {}, page("a"))))

    assert h.pages() == [page("a")]
    backoffs = [s for s in h.time.slept if s < 30]
    assert len(backoffs) == 2
    assert 0.5 <= backoffs[0] <= 1.0
    assert 1.0 <= backoffs[1] <= 2.0


def test_persistent_5xx_is_unavailable_after_bounded_retries(
    harness: Callable[..., Harness],
) -> None:
    """A 500 that never ends raises WebexUnavailableError after retries + 1 attempts."""
    before = metrics.API_REQUESTS.labels(org="", endpoint="feed", status="500")._value.get()
    h = harness(lambda _r: (500, {}, error("boom")))

    with pytest.raises(WebexUnavailableError, match="after 4 attempts"):
        h.pages(endpoint=Endpoint.FEED)
    assert len(h.transport.requests) == 4
    after = metrics.API_REQUESTS.labels(org="", endpoint="feed", status="500")._value.get()
    assert after - before == 4


def test_connection_errors_are_retried(harness: Callable[..., Harness]) -> None:
    """A refused connection and a time-out are retried; status 0 is counted for each."""
    before = metrics.API_REQUESTS.labels(org="", endpoint="stream", status="0")._value.get()
    h = harness(
        scripted(
            requests.ConnectionError("refused"),
            requests.ReadTimeout("slow"),
            (200, {}, page("a")),
        )
    )

    assert h.pages() == [page("a")]
    after = metrics.API_REQUESTS.labels(org="", endpoint="stream", status="0")._value.get()
    assert after - before == 2


def test_504_lowers_max_but_not_below_500(harness: Callable[..., Harness]) -> None:
    """Each 504 halves `max` for the retry: 5000, 2500, 1250, 625, then 500."""
    h = harness(lambda _r: (504, {}, error("gateway timeout")), retries=4)

    with pytest.raises(WebexUnavailableError):
        h.pages()
    assert [query(r)["max"][0] for r in h.transport.requests] == [
        "5000",
        "2500",
        "1250",
        "625",
        "500",
    ]


# --- untrusted replies --------------------------------------------------------------------------


def test_a_reply_past_the_bound_is_refused(harness: Callable[..., Harness]) -> None:
    """A body larger than max_reply_bytes raises WebexBadPageError and is not read on."""
    h = harness(scripted((200, {}, b'{"items": [' + b"1," * 5000 + b"1]}")), max_reply_bytes=1000)

    with pytest.raises(WebexBadPageError, match="larger than"):
        h.pages()


def test_a_declared_length_past_the_bound_is_refused(harness: Callable[..., Harness]) -> None:
    """A Content-Length beyond the bound is refused before any byte is read."""
    h = harness(scripted((200, {"Content-Length": "99999999"}, b"{}")), max_reply_bytes=1000)

    with pytest.raises(WebexBadPageError, match="99999999"):
        h.pages()


def test_a_malformed_page_is_returned_raw(harness: Callable[..., Harness]) -> None:
    """The client does not parse records: a non-JSON 200 reaches the caller as bytes."""
    h = harness(scripted((200, {}, b"<html>not json")))

    assert h.pages() == [b"<html>not json"]
