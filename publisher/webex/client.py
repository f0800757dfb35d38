"""The Webex CDR API client: windows in, raw pages out. The only module here that does HTTP.

For each window it sends one initial request and follows ``Link: <...>; rel="next"`` as given,
yielding each page's bytes unparsed (the caller's ``parse_page`` judges them). Around every
request it applies what the API demands:

- the shared per-token limiter (:mod:`publisher.webex.ratelimit`), with the caller's priority;
- 429: wait the ``Retry-After`` (seconds or HTTP date; capped, jittered) through the limiter, so
  every caller of the token waits with us;
- 451: switch to the regional host the error names, keep it (:attr:`CdrClient.base_url`), retry;
- 404 "No CDRs for requested time range": an empty window;
- 401: one token refresh, then :class:`WebexAuthError`; 400/403: :class:`WebexRequestError`;
- 5xx, time-outs, connection errors: bounded exponential backoff with jitter, then
  :class:`WebexUnavailableError`; a 504 also halves ``max`` (not below 500);
- replies larger than ``max_reply_bytes`` are cut off unread: :class:`WebexBadPageError`.

The bearer token goes only to a URL :mod:`publisher.webex.urls` passed: the configured host, an
https Webex host on port 443 that a next link or a 451 names, or, when the configured host is
loopback (the simulator), loopback on its port. Every request is prepared first, the prepared URL
(what requests' adapter connects to) is checked, and that prepared request is sent; a refused URL
is one log line, a count in ``cdr_publisher_refused_urls_total{source,reason}`` and a
:class:`~publisher.errors.WebexRefusedUrlError` (next links) or a
:class:`~publisher.errors.WebexRegionError` (451), never a request.
"""

from __future__ import annotations

import logging
import random
import re
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Final, Self
from urllib.parse import urlsplit

import orjson
import requests
import urllib3

from publisher import metrics
from publisher.clock import Clock, Sleep, utcnow
from publisher.errors import (
    WebexAuthError,
    WebexBadPageError,
    WebexError,
    WebexRateLimitedError,
    WebexRefusedUrlError,
    WebexRegionError,
    WebexRequestError,
    WebexUnavailableError,
    WindowError,
)
from publisher.settings import Settings
from publisher.webex import urls
from publisher.webex.auth import TokenProvider, provider_from_settings
from publisher.webex.ratelimit import Kind, RateLimiter, Slot, limiter_for
from publisher.webex.windows import Endpoint, Window, check, format_time, oldest_start, split

log = logging.getLogger("publisher.webex")


MIN_PAGE_SIZE: Final = 500
MAX_PAGE_SIZE: Final = 5000
MAX_LOCATIONS: Final = 10
CLIENT_RETRIES: Final = 5
"""Attempts after the first for one request that meets a 5xx or no reply."""
_MAX_ERROR_BODY_BYTES: Final = 64 * 1024
# A page with no items is a few bytes; only bodies this small are looked into.
_EMPTY_PAGE_PROBE_BYTES: Final = 1024
_CHUNK: Final = 256 * 1024


@dataclass(frozen=True)
class RawPage:
    """One page as Webex sent it: unparsed bytes, where they came from, and for which window."""

    body: bytes
    url: str
    tracking_id: str
    window: Window
    endpoint: Endpoint


@dataclass(frozen=True)
class _Reply:
    body: bytes
    headers: Mapping[str, str]
    url: str
    tracking_id: str


# --- pure helpers -------------------------------------------------------------------------------

# One link: its URL in angle brackets (tolerating the doubled ``<<`` of a published example),
# then its parameters up to the next ``<`` that is not inside quotes.
_LINK: Final = re.compile(r'<+\s*([^<>]*?)\s*>+((?:[^<"]|"[^"]*")*)')


def next_link(header: str | None) -> str | None:
    """The URL of the ``rel="next"`` link in a ``Link`` header, or None. Tolerant of ``<<``,
    several links, any quoting or case of ``rel``, and commas inside URLs."""
    if not header:
        return None
    for match in _LINK.finditer(header):
        url, params = match.group(1), match.group(2)
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() != "rel":
                continue
            rels = value.strip().strip(",").strip().strip("\"'").lower().split()
            if "next" in rels and url:
                return url
    return None


# The host a 451 names, in the wordings seen so far: "Please use <host>", "... URL: <host>",
# 'should go to URL: "https://<host>"'; with or without a scheme.
_REGION_HINT: Final = re.compile(
    r"(?:\buse|\bURL\s*:|\bgo\s+to)\s*[\"'<(\[]?\s*(?:(https?)://)?([A-Za-z0-9.\-]+(?::\d{1,5})?)",
    re.IGNORECASE,
)
_ANY_URL: Final = re.compile(r"(https?)://([A-Za-z0-9.\-]+(?::\d{1,5})?)", re.IGNORECASE)
_WEBEX_HOST: Final = re.compile(r"\b([A-Za-z0-9.\-]+\.webexapis\.com)\b", re.IGNORECASE)
_HOST: Final = re.compile(r"[a-z0-9](?:[a-z0-9.\-]*[a-z0-9])?(?::\d{1,5})?")


def region_host(message: str) -> str | None:
    """The ``host[:port]`` a 451 message names, or None when it names none we can read."""
    candidates: list[str] = []
    for pattern in (_REGION_HINT, _ANY_URL, _WEBEX_HOST):
        for match in pattern.finditer(message):
            candidates.append(match.group(match.lastindex or 0))
    for candidate in candidates:
        host = candidate.rstrip(".").lower()
        # "use the ..." and similar words are not hosts: a host has a dot, a port or is localhost.
        if _HOST.fullmatch(host) and ("." in host or ":" in host or host == "localhost"):
            return host
    return None


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta seconds or an HTTP date), or None."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def is_allowed_host(url: str, base_url: str) -> bool:
    """May the bearer token meant for ``base_url`` go to ``url``? (:func:`urls.check_follow`)"""
    try:
        urls.check_follow(url, urls.parse(base_url))
    except urls.UrlRefusedError:
        return False
    return True


def refuse(source: str, error: urls.UrlRefusedError, url: str, **context: object) -> None:
    """Count and log a URL that is not followed: one line, no traceback."""
    metrics.REFUSED_URLS.labels(source=source, reason=error.reason).inc()
    log.error(
        "refused to send the token to a URL (%s): %s",
        source,
        error.message,
        extra={**context, "source": source, "reason": error.reason, "url": urls.display(url)},
    )


def error_details(body: bytes) -> tuple[str, str | None]:
    """Webex's ``message`` (or first error description) and ``trackingId`` from an error body."""
    message: str | None = None
    tracking: str | None = None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        if isinstance(data.get("message"), str):
            message = data["message"]
        errors = data.get("errors")
        if not message and isinstance(errors, list) and errors and isinstance(errors[0], dict):
            description = errors[0].get("description")
            message = description if isinstance(description, str) else None
        if isinstance(data.get("trackingId"), str):
            tracking = data["trackingId"]
    if message is None:
        message = body[:200].decode("utf-8", "replace")
    return _one_line(message) or "no message", tracking


def _one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _is_empty_page(body: bytes) -> bool:
    if len(body) > _EMPTY_PAGE_PROBE_BYTES:
        return False
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(data, dict) and data.get("items") == []


# --- the client ---------------------------------------------------------------------------------


class CdrClient:
    """Fetches CDR pages for legal windows of one org, with one token, through one limiter."""

    def __init__(
        self,
        *,
        base_url: str,
        tokens: TokenProvider,
        limiter: RateLimiter,
        session: requests.Session | None = None,
        page_size: int = MAX_PAGE_SIZE,
        locations: Sequence[str] = (),
        timeout: float = 30.0,
        max_reply_bytes: int = 64 * 1024 * 1024,
        clock: Clock = utcnow,
        sleep: Sleep = time.sleep,
        priority: int = 0,
        region_base_url: str | None = None,
        skew: timedelta | float = timedelta(seconds=30),
        retries: int = CLIENT_RETRIES,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        retry_after_cap: float = 600.0,
        rate_limited_retries: int = 10,
        rng: random.Random | None = None,
        org: str = "",
    ) -> None:
        if not MIN_PAGE_SIZE <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be {MIN_PAGE_SIZE}..{MAX_PAGE_SIZE}")
        if len(locations) > MAX_LOCATIONS:
            raise ValueError(f"at most {MAX_LOCATIONS} locations")
        try:
            self._home, self._configured = urls.check_base(base_url)
        except urls.UrlRefusedError as exc:
            raise ValueError(f"webex base URL refused: {exc.message}") from None
        self._base = self._configured
        self._origin = self._home
        if region_base_url:
            self._use_saved_region(region_base_url)
        self._org = org  # the metrics' org label only
        self._tokens = tokens
        self._limiter = limiter
        self._owns_session = session is None
        self._session = session or requests.Session()
        self._page_size = page_size
        self._locations = ",".join(locations)
        self._timeout = timeout
        self._max_reply = max_reply_bytes
        self._clock = clock
        self._sleep = sleep
        self._priority = priority
        self._skew = skew if isinstance(skew, timedelta) else timedelta(seconds=skew)
        self._retries = retries
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._retry_after_cap = retry_after_cap
        self._rate_limited_retries = rate_limited_retries
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        priority: int = 0,
        clock: Clock = utcnow,
        sleep: Sleep = time.sleep,
        region_base_url: str | None = None,
        session: requests.Session | None = None,
        tokens: TokenProvider | None = None,
        limiter: RateLimiter | None = None,
        org: str = "",
    ) -> CdrClient:
        """A client as the settings describe, sharing the token's process-wide limiter."""
        tokens = tokens or provider_from_settings(settings)
        limiter = limiter or limiter_for(
            tokens.identity,
            initial_per_minute=settings.webex_initial_requests_per_minute,
            page_per_minute=settings.webex_page_requests_per_minute,
        )
        return cls(
            base_url=settings.webex_base_url,
            tokens=tokens,
            limiter=limiter,
            session=session,
            page_size=settings.webex_page_size,
            locations=tuple(settings.webex_locations),
            timeout=settings.webex_timeout_seconds,
            max_reply_bytes=settings.webex_max_reply_bytes,
            clock=clock,
            sleep=sleep,
            priority=priority,
            region_base_url=region_base_url,
            skew=timedelta(seconds=settings.webex_clock_skew_seconds),
            org=org or settings.org_id,
        )

    @property
    def limiter(self) -> RateLimiter:
        """The token's limiter (shared by every client of the token in this process)."""
        return self._limiter

    @property
    def retries(self) -> int:
        """Attempts after the first for one request (5xx, time-outs)."""
        return self._retries

    @property
    def page_size(self) -> int:
        return self._page_size

    @property
    def locations(self) -> str:
        """The ``locations`` filter as sent (comma separated), or ""."""
        return self._locations

    @property
    def skew(self) -> timedelta:
        return self._skew

    def now(self) -> datetime:
        return self._clock()

    @property
    def base_url(self) -> str:
        """The host requests go to now: the configured one, or the region Webex sent us to."""
        return self._base

    def _use_saved_region(self, region_base_url: str) -> None:
        """Start at the region the cursor record names, if it passes the same check a 451's
        host does; otherwise warn, count it and stay on the configured host."""
        try:
            origin = urls.check_follow(region_base_url, self._home)
            _, canonical = urls.check_base(region_base_url)
        except urls.UrlRefusedError as exc:
            metrics.REFUSED_URLS.labels(source="saved_region", reason=exc.reason).inc()
            log.warning(
                "ignoring the region host saved in the state (%s); using the configured host",
                exc.message,
                extra={"reason": exc.reason, "region": urls.display(region_base_url)},
            )
            return
        self._base, self._origin = canonical, origin

    # --- windows and pages ------------------------------------------------------------------

    def fetch(self, endpoint: Endpoint, start: datetime, end: datetime) -> Iterator[RawPage]:
        """Every page of ``[start, end)``, cut into legal windows (WindowError if it cannot be)."""
        windows = split(endpoint, start, end, self._clock(), self._skew)
        for window in windows:
            yield from self.pages(endpoint, window)

    def pages(self, endpoint: Endpoint, window: Window) -> Iterator[RawPage]:
        """The pages of one window, following next links; none when Webex has no CDRs for it.

        The window is checked before anything is sent (WindowError when illegal).
        """
        check(endpoint, window, self._clock(), self._skew)
        url: str | None = None
        seen: set[str] = set()
        while True:
            if url is None:
                query = _InitialQuery(self, endpoint, window)
                reply = self._send(endpoint, Kind.INITIAL, None, query)
                window = query.window
            else:
                reply = self._send(endpoint, Kind.PAGE, url, None)
            if reply is None:
                return
            if _is_empty_page(reply.body):
                return
            link = next_link(reply.headers.get("Link"))
            page_url, tracking_id = reply.url, reply.tracking_id
            # Only the caller holds the page's bytes while it publishes them, so that it can let
            # them go once parsed: this frame keeps no reference while suspended (the popped
            # page lives on no variable here).
            pending = [RawPage(reply.body, page_url, tracking_id, window, endpoint)]
            del reply
            yield pending.pop()
            if link is None:
                return
            url = self._follow(link, page_url, tracking_id, window)
            if url in seen:
                raise WebexBadPageError(
                    "the next link repeats an earlier page; stopping rather than looping",
                    body=b"",
                    tracking_id=tracking_id,
                )
            seen.add(url)

    def _follow(self, link: str, page_url: str, tracking_id: str, window: Window) -> str:
        url = link
        try:
            url = urls.join(page_url, link)
            urls.check_follow(url, self._origin)
        except urls.UrlRefusedError as exc:
            refuse("next_link", exc, url, tracking_id=tracking_id)
            raise WebexRefusedUrlError(
                f"the next link is refused ({exc.message}); not following it",
                reason=exc.reason,
                url=urls.display(url),
                window=window,
                tracking_id=tracking_id,
            ) from None
        return url

    # --- one request, with every retry it may need ------------------------------------------

    def _send(
        self,
        endpoint: Endpoint,
        kind: Kind,
        url: str | None,
        query: _InitialQuery | None,
    ) -> _Reply | None:
        failures = 0
        rate_limited = 0
        refreshed = False
        regions = 0
        while True:
            slot = self._take_slot(kind, endpoint)
            params = query() if query is not None else None
            target = url if url is not None else self._base + endpoint.path
            tracking_id = f"CDRPUB_{uuid.uuid4()}"
            context = {"endpoint": endpoint.value, "tracking_id": tracking_id, "kind": kind.value}
            window = query.window if query is not None else None
            try:
                status, headers, body, sent_url = self._get(target, params, tracking_id, window)
            except _TransportError as exc:
                metrics.API_REQUESTS.labels(
                    org=self._org, endpoint=endpoint.value, status="0"
                ).inc()
                failures += 1
                self._backoff_or_raise(failures, f"no reply ({exc.reason})", None, context)
                continue
            finally:
                # A request with no reply counts from the end of its back-off: later than Webex
                # could have counted it, so still safe.
                slot.answered()
            metrics.API_REQUESTS.labels(
                org=self._org, endpoint=endpoint.value, status=str(status)
            ).inc()
            log.debug(
                "webex reply",
                extra={**context, "status": status, "bytes": len(body), "url": sent_url},
            )
            if status == 200:
                return _Reply(body, headers, sent_url, tracking_id)
            message, webex_tracking = error_details(body)
            tracking = webex_tracking or tracking_id
            if status == 404 and "no cdrs" in message.lower():
                return None
            if status == 429:
                rate_limited += 1
                self._rate_limited(rate_limited, headers, message, tracking, context)
                continue
            if status == 451:
                regions += 1
                url = self._switch_region(message, tracking, url, regions, context)
                continue
            if status == 401:
                if not refreshed and self._tokens.refresh():
                    refreshed = True
                    log.info("token refused (401); refreshed it, retrying", extra=context)
                    continue
                log.error("token refused (401)", extra={**context, "webex_tracking": tracking})
                raise WebexAuthError(
                    f"Webex refused the access token: {message}", status=401, tracking_id=tracking
                )
            if status >= 500:
                failures += 1
                self._backoff_or_raise(failures, message, status, context, tracking)
                if status == 504 and query is not None:
                    # The docs' advice for a gateway time-out: ask for fewer records a page.
                    query.shrink()
                continue
            log.error(
                "request refused",
                extra={**context, "status": status, "webex_tracking": tracking, "reason": message},
            )
            raise WebexRequestError(
                f"Webex refused the request: {message}", status=status, tracking_id=tracking
            )

    def _take_slot(self, kind: Kind, endpoint: Endpoint) -> Slot:
        slot = self._limiter.take(kind, self._priority, sleep=self._sleep)
        if slot.waited > 0:
            metrics.RATE_LIMIT_WAIT.labels(org=self._org, endpoint=endpoint.value).inc(slot.waited)
        return slot

    def _get(
        self, url: str, params: dict[str, str] | None, tracking_id: str, window: Window | None
    ) -> tuple[int, Mapping[str, str], bytes, str]:
        """Send one GET with the token, to exactly the URL that was checked: the request is
        prepared without the token, the prepared URL (the one the adapter connects to) is
        checked, and only then the token is added and that prepared request sent."""
        prepared = self._session.prepare_request(
            requests.Request(
                "GET",
                url,
                params=params,
                headers={"TrackingID": tracking_id, "Accept": "application/json"},
            )
        )
        try:
            urls.check_prepared(prepared.url, urls.check_follow(url, self._origin))
        except urls.UrlRefusedError as exc:
            # Every URL was checked before it got here; this is the last line of defence.
            refuse("request", exc, url, tracking_id=tracking_id)
            raise WebexRefusedUrlError(
                f"the request URL is refused ({exc.message}); not sending it",
                reason=exc.reason,
                url=urls.display(url),
                window=window,
                tracking_id=tracking_id,
            ) from None
        prepared.headers["Authorization"] = f"Bearer {self._tokens.token()}"
        # What Session.request would add from the environment (proxies, CA bundle).
        env = self._session.merge_environment_settings(prepared.url, {}, None, None, None)
        try:
            with self._session.send(
                prepared,
                timeout=self._timeout,
                stream=True,
                allow_redirects=False,
                proxies=env["proxies"],
                verify=env["verify"],
                cert=env["cert"],
            ) as response:
                status = response.status_code
                limit = self._max_reply if status == 200 else _MAX_ERROR_BODY_BYTES
                body = self._read(response, limit, tracking_id, cut=status == 200)
                return status, response.headers, body, response.url or prepared.url or url
        except (
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError,
        ) as exc:
            raise _TransportError(type(exc).__name__) from None

    def _read(
        self, response: requests.Response, limit: int, tracking_id: str, *, cut: bool
    ) -> bytes:
        """The reply body, refused once past ``limit`` (a page) or truncated (an error body).

        A page is 13-16 MB at 5,000 records: with its length known and no content coding, it is
        read in one ``read`` of exactly that many bytes, into the one bytes object returned
        (http.client reads straight into it); collecting chunks and joining them held two copies
        at once. Otherwise (chunked, compressed) it grows in one bytearray, copied out once."""
        declared = response.headers.get("Content-Length", "")
        coding = response.headers.get("Content-Encoding", "").strip().lower()
        if declared.isdigit() and coding in ("", "identity"):
            length = int(declared)
            if length > limit:
                if cut:
                    raise WebexBadPageError(
                        f"reply of {declared} bytes is larger than webex_max_reply_bytes ({limit})",
                        body=b"",
                        tracking_id=tracking_id,
                    )
                length = limit
            return _read_exactly(response, length)
        body = bytearray()
        # Bytes as decoded: a small compressed reply cannot unpack past the bound either.
        for chunk in response.iter_content(_CHUNK):
            if len(body) + len(chunk) > limit:
                if cut:
                    raise WebexBadPageError(
                        f"reply is larger than webex_max_reply_bytes ({limit}); not read further",
                        body=bytes(body[:_MAX_ERROR_BODY_BYTES]),
                        tracking_id=tracking_id,
                    )
                body += chunk[: limit - len(body)]
                break
            body += chunk
        return bytes(body)

    def _rate_limited(
        self,
        times: int,
        headers: Mapping[str, str],
        message: str,
        tracking: str,
        context: dict[str, str],
    ) -> None:
        asked = retry_after_seconds(headers.get("Retry-After"), self._clock())
        if times > self._rate_limited_retries:
            raise WebexRateLimitedError(
                f"still rate limited after {times - 1} waits: {message}",
                status=429,
                tracking_id=tracking,
                retry_after=asked,
            )
        wait = self._retry_after_wait(asked)
        log.warning(
            "rate limited by Webex; waiting",
            extra={**context, "wait_s": round(wait, 3), "retry_after": asked},
        )
        # Through the limiter, so that every caller of this token waits too.
        self._limiter.defer(wait)

    def _retry_after_wait(self, asked: float | None) -> float:
        wait = 60.0 if asked is None else asked
        wait = min(self._retry_after_cap, max(1.0, wait))
        # Jitter spreads callers that were refused together.
        return wait + self._rng.uniform(0.0, max(0.5, wait * 0.1))

    def _backoff_or_raise(
        self,
        failures: int,
        message: str,
        status: int | None,
        context: dict[str, str],
        tracking: str | None = None,
    ) -> None:
        if failures > self._retries:
            log.error(
                "webex unavailable; giving up",
                extra={**context, "status": status, "reason": message, "attempts": failures},
            )
            raise WebexUnavailableError(
                f"Webex unavailable after {failures} attempts: {message}",
                status=status,
                tracking_id=tracking or context["tracking_id"],
            )
        ceiling = min(self._backoff_cap, self._backoff_base * 2 ** (failures - 1))
        delay = self._rng.uniform(ceiling / 2, ceiling)
        log.warning(
            "webex unavailable; backing off",
            extra={**context, "status": status, "reason": message, "delay_s": round(delay, 3)},
        )
        self._sleep(delay)

    def _switch_region(
        self,
        message: str,
        tracking: str,
        url: str | None,
        regions: int,
        context: dict[str, str],
    ) -> str | None:
        host = region_host(message)
        if host is None:
            log.error("451 without a readable host", extra={**context, "reason": message})
            raise WebexRegionError(
                f"Webex says the org's data is in another region but names no host: {message}",
                status=451,
                tracking_id=tracking,
            )
        try:
            origin = urls.check_follow(f"{self._home.scheme}://{host}", self._home)
        except urls.UrlRefusedError as exc:
            refuse("region", exc, host, **context)
            raise WebexRegionError(
                f"Webex names region host {urls.display(host)}, which is refused "
                f"({exc.message}); not following",
                status=451,
                tracking_id=tracking,
            ) from None
        if regions > 3 or origin == self._origin:
            raise WebexRegionError(
                f"Webex keeps redirecting to another region ({host}); giving up",
                status=451,
                tracking_id=tracking,
            )
        log.warning(
            "org data is in another region; switching host",
            extra={**context, "from": self._base, "to": origin.url()},
        )
        self._base, self._origin = origin.url(), origin
        if url is None:
            return None
        # ``url`` passed the check, so every parser reads its path and query alike.
        parts = urlsplit(url)
        return origin.url() + parts.path + (f"?{parts.query}" if parts.query else "")

    # --- lifetime ---------------------------------------------------------------------------

    def close(self) -> None:
        if self._owns_session:
            self._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CdrClient(base_url={self._base!r})"


class _TransportError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _read_exactly(response: requests.Response, length: int) -> bytes:
    """``length`` bytes of the reply's raw stream in one read, or _TransportError when it ends
    short. requests opens ``raw`` with content decoding off, which is right: the caller only comes
    here for a reply without a content coding."""
    try:
        body: bytes = response.raw.read(length) if length else b""
    except urllib3.exceptions.HTTPError as exc:
        # What requests' iter_content maps to ChunkedEncodingError/ConnectionError: no reply.
        raise _TransportError(type(exc).__name__) from None
    if len(body) != length:
        raise _TransportError(f"IncompleteRead ({len(body)} of {length} bytes)")
    return body


class _InitialQuery:
    """The query of a window's first request, built at send time (after the limiter's wait)."""

    def __init__(self, client: CdrClient, endpoint: Endpoint, window: Window) -> None:
        self._client = client
        self._endpoint = endpoint
        self.window = window
        self.page_size = client.page_size

    def shrink(self) -> None:
        self.page_size = max(MIN_PAGE_SIZE, self.page_size // 2)

    def __call__(self) -> dict[str, str]:
        endpoint, window = self._endpoint, self.window
        oldest = oldest_start(endpoint, self._client.now(), self._client.skew)
        if window.start < oldest:
            # Legal when asked, aged while waiting for a slot: that part is out of the
            # endpoint's reach by now, and asking for it would only earn a 400.
            if oldest >= window.end:
                raise WindowError(
                    f"{endpoint.value} window [{format_time(window.start)}, "
                    f"{format_time(window.end)}) aged out of the endpoint's retention while "
                    "waiting for the rate limiter"
                )
            log.warning(
                "window start aged past the retention while waiting; starting later",
                extra={
                    "endpoint": endpoint.value,
                    "asked_start": format_time(window.start),
                    "start": format_time(oldest),
                },
            )
            self.window = window = replace(window, start=oldest)
        query = {
            "startTime": format_time(window.start),
            "endTime": format_time(window.end),
            "max": str(self.page_size),
        }
        if self._client.locations:
            query["locations"] = self._client.locations
        return query


__all__ = [
    "CdrClient",
    "RawPage",
    "WebexError",
    "error_details",
    "is_allowed_host",
    "next_link",
    "region_host",
    "retry_after_seconds",
]
