"""The Webex CDR API simulator: ``cdr_stream``, ``cdr_feed``, OAuth refresh and admin endpoints.

It runs a stdlib :class:`ThreadingHTTPServer` on a thread. Traffic comes from
:mod:`publisher.simulator.generator` (pure and lazy), faults from :mod:`.faults`. What it
enforces, in the order a request meets it: bearer token (401), home region by ``Host`` header
(451), injected 5xx and 429, rate limits per token (429 + ``Retry-After``), the window rules of
the endpoint to the second (400), then the page (200 with an opaque ``Link: rel="next"``, or 404
for an empty window). Every reply carries a ``TrackingID`` header and Webex error bodies carry
``trackingId``.

Pagination serves a snapshot: the next link pins the time the first page was computed, so records
that become visible while a client pages are left for a later window instead of shifting pages.
"""

from __future__ import annotations

import bisect
import contextlib
import gc
import hashlib
import ipaddress
import math
import secrets
import socket
import sys
import threading
import time
import uuid
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import orjson

from publisher.simulator import faults as fault_rules
from publisher.simulator.faults import Faults, RequestDice
from publisher.simulator.generator import (
    Endpoint,
    Leg,
    Record,
    Traffic,
    datetime_to_ms,
    ms_to_iso,
)

Clock = Callable[[], datetime]

REGION_MESSAGES: tuple[str, ...] = (
    # The three wordings Webex has used for 451; the client must read the host out of any.
    "The organization's data is hosted in another region. Please use {host}",
    "Organization data resides in a different region, use the regional URL: {host}",
    'Requests for this organization should go to URL: "{url}"',
)
NO_CDRS = "No CDRs for requested time range and filters"
RATE_LIMITED = "Request rate exceeds threshold"
BAD_TOKEN = "The request requires a valid access token set in the Authorization request header."  # noqa: S105
MISSING_CDR_SCOPE = "The token does not have the scope spark-admin:calling_cdr_read"
MISSING_APPLICATIONS_SCOPE = "The token does not have the scope spark:applications_token"
SERVICE_APP_NOT_FOUND = "Service App not found"
SERVICE_APP_NOT_AUTHORISED = "Service App not authorized by Full Admin in Control Hub"
MAX_LOCATIONS = 10
PAGE_MIN, PAGE_MAX = 500, 5000


@dataclass(frozen=True, slots=True)
class EndpointRules:
    path: str
    max_age_s: int
    """How far back startTime may be."""
    min_end_age_s: int
    """endTime must be at least this old..."""
    end_age_strict: bool
    """...or strictly older than it (feed: 'more than 5 minutes ago')."""
    max_window_s: int


RULES: dict[Endpoint, EndpointRules] = {
    "stream": EndpointRules(
        "/v1/cdr_stream", 12 * 3600, 60, end_age_strict=False, max_window_s=2 * 3600
    ),
    "feed": EndpointRules(
        "/v1/cdr_feed", 30 * 86400, 300, end_age_strict=True, max_window_s=12 * 3600
    ),
}


@dataclass(frozen=True)
class SimulatorConfig:
    seed: int = 1
    calls_per_minute: float = 20.0
    history_hours: float = 13.0
    port: int = 0
    host: str = "127.0.0.1"
    static_token: str | None = "sim-token"  # noqa: S105 - a fixed test credential
    client_id: str = "sim-client"
    client_secret: str = "sim-secret"  # noqa: S105 - a fixed test credential
    refresh_token: str = "sim-refresh"  # noqa: S105 - a fixed test credential
    access_token_lifetime_s: float = 3600.0
    refresh_token_lifetime_s: float = 90 * 86400.0
    initial_per_minute: float = 1.0
    pages_per_minute: float = 10.0
    rate_limits: bool = True
    home_region: str | None = None
    """The host (``localhost`` or ``localhost:PORT``; without a port the bound one is used) that
    serves CDRs; any other ``Host`` header gets 451. None: every host is served."""
    region_messages: tuple[str, ...] = REGION_MESSAGES
    faults: Faults = field(default_factory=Faults)
    clock: Clock | None = None
    cache_buckets: int = 720
    # --- many orgs (0: the single org above, exactly as before) ---
    orgs: int = 0
    """N >= 1: orgs 1..N, each with its own traffic (seeded by org), static token
    ``<static_token>-<n>``, integration refresh token ``<refresh_token>-<n>`` and limits."""
    regional_orgs: int = 0
    """The last K orgs answer 451 off ``home_region`` (default ``localhost``, bound port)."""
    stream_retention_hours: float = 12.0
    """How far back cdr_stream's startTime may be (Webex: 12); the feed keeps 30 days."""
    service_app_id: str = "sim-app"
    service_app_client_id: str = "sim-app-client"
    service_app_client_secret: str = "sim-app-secret"  # noqa: S105 - a fixed test credential
    service_app_token_lifetime_s: float | None = None
    """Lifetime of Service App access tokens (None: ``access_token_lifetime_s``)."""
    applications_token: str | None = "sim-apps-token"  # noqa: S105 - a fixed test credential
    """A static token with the scope spark:applications_token (reads no CDRs)."""
    applications_refresh_token: str | None = "sim-apps-refresh"  # noqa: S105
    """An integration refresh token (client_id/secret above) for spark:applications_token."""
    org_recent_minutes: int = 60
    """With ``orgs``: each org indexes the legs inserted in this many recent minutes, so a
    caught-up poll generates only new minutes (0: scan the buckets as the single org does)."""
    org_cache_buckets: int = 120
    """With ``orgs``: minute buckets kept per org for older windows (a 2 h stream window scans
    375; fewer costs CPU when catching up, not correctness)."""
    org_cache_calls: int = 64
    """With ``orgs``: calls whose full records are kept per org (records are 87 keys each)."""


class RateLimiter:
    """Token buckets per key: ``per_minute`` requests a minute, a burst of that many (min 1)."""

    def __init__(self, per_minute: float) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, per_minute)
        self._state: dict[str, tuple[float, float]] = {}

    def take(self, key: str, now_s: float) -> float:
        """0 if a request may go now (and count it); else the seconds until one may."""
        tokens, last = self._state.get(key, (self.capacity, now_s))
        tokens = min(self.capacity, tokens + max(0.0, now_s - last) * self.rate)
        if tokens >= 1.0:
            self._state[key] = (tokens - 1.0, now_s)
            return 0.0
        self._state[key] = (tokens, now_s)
        return (1.0 - tokens) / self.rate


def parse_webex_time(value: str) -> int | None:
    """``YYYY-MM-DDTHH:MM:SS.mmmZ`` (fraction optional) as epoch ms; None if not that form."""
    if len(value) < 20 or value[10] != "T" or not value.endswith("Z"):
        return None
    try:
        dt = datetime.strptime(value[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return None
    frac = value[19:-1]
    if frac and (frac[0] != "." or not frac[1:].isdigit() or not 1 <= len(frac) - 1 <= 6):
        return None
    ms = int((frac[1:] + "000")[:3]) if frac else 0
    return int(dt.timestamp()) * 1000 + ms


def check_window(
    endpoint: Endpoint,
    start_ms: int,
    end_ms: int,
    now_ms: int,
    rules_by_endpoint: Mapping[Endpoint, EndpointRules] = RULES,
) -> str | None:
    """The 400 message for a window the endpoint refuses, or None. Whole seconds, like Webex."""
    rules = rules_by_endpoint[endpoint]
    now_s, start_s, end_s = now_ms // 1000, start_ms // 1000, end_ms // 1000
    if start_ms >= end_ms:
        return "startTime must be before endTime"
    if now_s - start_s > rules.max_age_s:
        return f"startTime must not be more than {_span(rules.max_age_s)} ago"
    end_age = now_s - end_s
    if end_age < rules.min_end_age_s or (rules.end_age_strict and end_age == rules.min_end_age_s):
        word = "more than" if rules.end_age_strict else "at least"
        return f"endTime must be {word} {_span(rules.min_end_age_s)} ago"
    if end_s - start_s > rules.max_window_s:
        limit = _span(rules.max_window_s)
        return f"The time range between startTime and endTime must not exceed {limit}"
    return None


def _span(seconds: int) -> str:
    if seconds % 86400 == 0:
        return f"{seconds // 86400} days"
    if seconds % 3600 == 0:
        return f"{seconds // 3600} hours"
    n = seconds // 60
    return f"{n} minute" if n == 1 else f"{n} minutes"


EntryKey = tuple[int, str, int]  # (key time ms, Report ID, copy: 0 first, 1 duplicate)


@dataclass(frozen=True, slots=True)
class _Window:
    keys: list[EntryKey]
    legs: list[Leg]


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while building big indexes of small tuples.

    Each burst of new tuples triggers collections that walk every cached leg: measured 10x
    slower window builds at a million records. Nothing cyclic is made here, so nothing leaks.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _Reply(Exception):  # noqa: N818 - control flow, never escapes the handler
    def __init__(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


@dataclass(slots=True)
class _Grant:
    """What a bearer token may do: read one org's CDRs (``org``) or mint Service App tokens."""

    org: _SimOrg | None
    kind: str
    """``static``, ``oauth`` (integration refresh), ``service_app`` or ``applications``."""
    expires_s: float | None
    """Clock seconds; None for a static token."""

    @property
    def reads_cdrs(self) -> bool:
        return self.org is not None


@dataclass(slots=True)
class _RefreshGrant:
    org: _SimOrg | None
    client: str
    """``integration`` or ``service_app``: whose client credentials may use it."""
    expires_s: float


@dataclass
class _SimOrg:
    """One simulated org: its own traffic, tokens, home region and Service App authorisation."""

    n: int
    """0 for the single org of today's flags; 1..N with ``--orgs N``."""
    traffic: Traffic
    regional: bool
    authorised: bool = True
    static_token: str | None = None
    refresh_token: str | None = None
    """The integration refresh token that works now."""
    revocations: int = 0
    windows: OrderedDict[tuple[Any, ...], _Window] = field(default_factory=OrderedDict)
    served: set[str] = field(default_factory=set)

    @property
    def org_id(self) -> str:
        return self.traffic.org.uuid


@dataclass(slots=True)
class _TokenStats:
    """Requests one token sent, for the ground truth: totals, the most in any 60 s, refusals."""

    org: int
    kind: str
    initial: int = 0
    page: int = 0
    max_initial_60s: int = 0
    max_page_60s: int = 0
    refused_for_rate: int = 0
    recent_initial: deque[float] = field(default_factory=deque)
    recent_page: deque[float] = field(default_factory=deque)

    def seen(self, paging: bool, now_s: float) -> None:
        recent = self.recent_page if paging else self.recent_initial
        recent.append(now_s)
        while recent and recent[0] <= now_s - 60.0:
            recent.popleft()
        if paging:
            self.page += 1
            self.max_page_60s = max(self.max_page_60s, len(recent))
        else:
            self.initial += 1
            self.max_initial_60s = max(self.max_initial_60s, len(recent))


def token_label(token: str) -> str:
    """How /_sim/rates names a token: a hash, so the ground truth holds no credential."""
    return "sha256:" + hashlib.sha256(token.encode("utf-8")).hexdigest()[:16]


def org_seed(seed: int, n: int) -> int:
    """The traffic seed of org ``n`` of a many-org simulator (org 0 is the seed itself)."""
    if n == 0:
        return seed
    digest = hashlib.sha256(f"{seed}/org/{n}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


class Simulator:
    """The simulator; a context manager that serves on a thread while open."""

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = cfg = config or SimulatorConfig()
        if cfg.orgs < 0 or not 0 <= cfg.regional_orgs <= max(cfg.orgs, 0):
            raise ValueError("orgs must be >= 0 and regional_orgs in 0..orgs")
        self._clock: Clock = cfg.clock or (lambda: datetime.now(UTC))
        now_ms = self.now_ms()
        history_start_ms = now_ms - int(cfg.history_hours * 3_600_000)
        self._rules = dict(RULES)
        self._rules["stream"] = replace(
            RULES["stream"], max_age_s=round(cfg.stream_retention_hours * 3600)
        )
        self._faults = cfg.faults
        self._dice = RequestDice(cfg.seed)
        self._lock = threading.RLock()
        self._initial = RateLimiter(cfg.initial_per_minute)
        self._pages = RateLimiter(cfg.pages_per_minute)
        self._grants: dict[str, _Grant] = {}
        self._refresh_grants: dict[str, _RefreshGrant] = {}
        self._token_stats: dict[str, _TokenStats] = {}
        self._token_serial = 0
        self._region_turn = 0
        self._stats: Counter[str] = Counter()
        self._malformed: dict[str, str] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.home_host: str | None = None
        self._orgs: list[_SimOrg] = []
        refresh_expiry = now_ms / 1000 + cfg.refresh_token_lifetime_s
        if cfg.orgs == 0:
            # Today's single org, exactly as before: the seed's traffic, the flags' tokens.
            traffic = Traffic(
                cfg.seed,
                cfg.calls_per_minute,
                history_start_ms=history_start_ms,
                cache_buckets=cfg.cache_buckets,
            )
            self._orgs.append(_SimOrg(0, traffic, regional=cfg.home_region is not None))
        else:
            for n in range(1, cfg.orgs + 1):
                traffic = Traffic(
                    org_seed(cfg.seed, n),
                    cfg.calls_per_minute,
                    history_start_ms=history_start_ms,
                    cache_buckets=cfg.org_cache_buckets,
                    cache_calls=cfg.org_cache_calls,
                    recent_minutes=cfg.org_recent_minutes,
                )
                # The last K orgs live in another region (all of them: --home-region alone).
                regional = (
                    n > cfg.orgs - cfg.regional_orgs
                    if cfg.regional_orgs
                    else cfg.home_region is not None
                )
                self._orgs.append(_SimOrg(n, traffic, regional=regional))
        for org in self._orgs:
            if cfg.static_token:
                org.static_token = self._suffixed(cfg.static_token, org)
                self._grants[org.static_token] = _Grant(org, "static", None)
            org.refresh_token = self._suffixed(cfg.refresh_token, org)
            self._refresh_grants[org.refresh_token] = _RefreshGrant(
                org, "integration", refresh_expiry
            )
        if cfg.applications_token:
            self._grants[cfg.applications_token] = _Grant(None, "applications", None)
        if cfg.applications_refresh_token:
            self._refresh_grants[cfg.applications_refresh_token] = _RefreshGrant(
                None, "integration", refresh_expiry
            )
        self._by_id = {org.org_id: org for org in self._orgs}
        self.traffic = self._orgs[0].traffic
        """The first org's traffic (the only one without ``orgs``)."""

    @staticmethod
    def _suffixed(value: str, org: _SimOrg) -> str:
        return value if org.n == 0 else f"{value}-{org.n}"

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Simulator:
        """Bind and serve on a thread (OSError if the address is taken); idempotent."""
        if self._server is not None:
            return self
        server = _Server((self.config.host, self.config.port), _Handler)
        server.simulator = self
        self._server = server
        home = self.config.home_region
        if home is None and self.config.regional_orgs:
            home = "localhost"
        if home is not None:
            home = home.split("://", 1)[-1].rstrip("/")
            self.home_host = home if ":" in home else f"{home}:{self.port}"
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="webex-sim"
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the simulator is not running")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    @property
    def home_url(self) -> str:
        """The URL a client must use when a home region is set (else the base URL)."""
        return f"http://{self.home_host}" if self.home_host else self.base_url

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/v1/access_token"

    def now_ms(self) -> int:
        return datetime_to_ms(self._clock())

    # --- many orgs -----------------------------------------------------------------------------

    @property
    def org_ids(self) -> list[str]:
        """Every org's id, in order (org n is ``org_ids[n - 1]``; the single org's alone)."""
        return [org.org_id for org in self._orgs]

    def _org(self, ref: int | str) -> _SimOrg:
        """An org by number (1..N, or 0 for the single org) or by id; KeyError if none."""
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
            n = int(ref)
            for org in self._orgs:
                if org.n == n:
                    return org
            raise KeyError(ref)
        return self._by_id[ref]

    def org_info(self, ref: int | str) -> dict[str, Any]:
        """What a test needs to configure a publisher for org ``ref``: id, tokens, home host."""
        with self._lock:
            org = self._org(ref)
            return {
                "n": org.n,
                "org_id": org.org_id,
                "token": org.static_token,
                "refresh_token": org.refresh_token,
                "home_host": self.home_host if org.regional else None,
                "service_app_authorised": org.authorised,
            }

    def orgs_info(self) -> list[dict[str, Any]]:
        return [self.org_info(org.n) for org in self._orgs]

    def revoke(self, ref: int | str) -> dict[str, Any]:
        """Revoke every token of the org (static, OAuth, Service App, refresh tokens) and issue a
        new static token and integration refresh token, as an admin re-granting access would."""
        with self._lock:
            org = self._org(ref)
            revoked = self._drop_grants(org, kinds=None)
            org.revocations += 1
            suffix = f"r{org.revocations}"
            if org.static_token is not None:
                org.static_token = f"{self._suffixed(self.config.static_token or '', org)}-{suffix}"
                self._grants[org.static_token] = _Grant(org, "static", None)
            org.refresh_token = f"{self._suffixed(self.config.refresh_token, org)}-{suffix}"
            self._refresh_grants[org.refresh_token] = _RefreshGrant(
                org, "integration", self.now_ms() / 1000 + self.config.refresh_token_lifetime_s
            )
            return {"revoked": revoked, **self.org_info(org.n)}

    def authorise(self, ref: int | str, *, authorised: bool) -> dict[str, Any]:
        """Authorise or deauthorise the Service App in the org; deauthorising revokes the
        tokens it minted there."""
        with self._lock:
            org = self._org(ref)
            org.authorised = authorised
            revoked = 0 if authorised else self._drop_grants(org, kinds={"service_app"})
            return {"revoked": revoked, **self.org_info(org.n)}

    def _drop_grants(self, org: _SimOrg, kinds: set[str] | None) -> int:
        dropped = 0
        for token, grant in list(self._grants.items()):
            if grant.org is org and (kinds is None or grant.kind in kinds):
                del self._grants[token]
                dropped += 1
        for token, refresh in list(self._refresh_grants.items()):
            if refresh.org is org and (kinds is None or refresh.client in kinds):
                del self._refresh_grants[token]
                dropped += 1
        return dropped

    def token_stats(self) -> list[dict[str, Any]]:
        """Per token that read CDRs: requests seen, the most in any sliding 60 s per kind, and
        how many were refused for rate (429 from the limiter, not injected ones)."""
        with self._lock:
            return [
                {
                    "token": label,
                    "org": stats.org,
                    "org_id": self._org(stats.org).org_id,
                    "kind": stats.kind,
                    "initial": stats.initial,
                    "page": stats.page,
                    "max_initial_60s": stats.max_initial_60s,
                    "max_page_60s": stats.max_page_60s,
                    "refused_for_rate": stats.refused_for_rate,
                }
                for label, stats in self._token_stats.items()
            ]

    # --- ground truth and control --------------------------------------------------------------

    def _chosen(self, org: int | str | None) -> list[_SimOrg]:
        return list(self._orgs) if org is None else [self._org(org)]

    def records_between(
        self,
        endpoint: Endpoint,
        start: datetime,
        end: datetime,
        locations: frozenset[str] | None = None,
        org: int | str | None = None,
    ) -> list[Record]:
        """The clean records visible now whose insertion (stream) or start (feed) is in
        [start, end), in serving order (org by org). Faults are not applied. ``org``: one org
        (number or id); None: every org."""
        with self._lock, _gc_paused():
            out: list[Record] = []
            for one in self._chosen(org):
                legs = self._legs(one, endpoint, start, end, locations)
                out += [dict(one.traffic.record(g)) for g in legs]
            return out

    def expected_records(
        self,
        endpoint: Endpoint,
        start: datetime,
        end: datetime,
        locations: frozenset[str] | None = None,
        org: int | str | None = None,
        *,
        visible_at: datetime | None = None,
    ) -> dict[str, str]:
        """Report ID -> Correlation ID of every record :meth:`records_between` would return;
        with ``visible_at``, of those inserted by then (a late record inserted after a replay
        fetched its span is not the replay's to publish)."""
        with self._lock, _gc_paused():
            return {
                g.report_id: g.correlation_id
                for one in self._chosen(org)
                for g in self._legs(one, endpoint, start, end, locations, visible_at=visible_at)
            }

    def expected_by_org(
        self, endpoint: Endpoint, start: datetime, end: datetime
    ) -> dict[str, list[str]]:
        """Org id -> the Report IDs of that org's records in the window (sorted)."""
        with self._lock, _gc_paused():
            return {
                one.org_id: sorted(g.report_id for g in self._legs(one, endpoint, start, end, None))
                for one in self._orgs
            }

    def expected_report_ids(
        self,
        endpoint: Endpoint,
        start: datetime,
        end: datetime,
        locations: frozenset[str] | None = None,
        org: int | str | None = None,
        *,
        visible_at: datetime | None = None,
    ) -> set[str]:
        return set(
            self.expected_records(endpoint, start, end, locations, org, visible_at=visible_at)
        )

    def _legs(
        self,
        org: _SimOrg,
        endpoint: Endpoint,
        start: datetime,
        end: datetime,
        locations: frozenset[str] | None,
        *,
        visible_at: datetime | None = None,
    ) -> list[Leg]:
        start_ms, end_ms = datetime_to_ms(start), datetime_to_ms(end)
        now_ms = self.now_ms() if visible_at is None else datetime_to_ms(visible_at)
        legs = org.traffic.legs_between(endpoint, start_ms, end_ms, now_ms=now_ms)
        chosen = [g for g in legs if not locations or g.location in locations]
        chosen.sort(key=lambda g: (g.key_ms(endpoint), g.report_id))
        return chosen

    def served_report_ids(self, org: int | str | None = None) -> set[str]:
        """Report IDs that appeared in served pages (a record served without one is not here)."""
        with self._lock:
            return {rid for one in self._chosen(org) for rid in one.served}

    def malformed_report_ids(self) -> dict[str, str]:
        """Report ID -> kind of corruption of every malformed record served so far."""
        with self._lock:
            return dict(self._malformed)

    def stats(self) -> dict[str, int]:
        with self._lock:
            out = dict.fromkeys(("200", "400", "401", "404", "429", "451", "5xx"), 0)
            out.update(dict.fromkeys(("tokens_issued", "records_served", "requests"), 0))
            out.update(self._stats)
            return out

    @property
    def faults(self) -> Faults:
        return self._faults

    def set_faults(self, faults: Faults) -> None:
        with self._lock:
            self._faults = faults

    def expire_tokens(self) -> int:
        """Expire every issued access token now (static tokens stay valid); how many."""
        with self._lock:
            issued = [token for token, grant in self._grants.items() if grant.expires_s is not None]
            for token in issued:
                del self._grants[token]
            return len(issued)

    @property
    def current_refresh_token(self) -> str:
        """The first org's integration refresh token that works now."""
        with self._lock:
            return self._orgs[0].refresh_token or ""

    # --- request handling (called from handler threads) ----------------------------------------

    def _count(self, status: int) -> None:
        with self._lock:
            self._stats["requests"] += 1
            self._stats["5xx" if status >= 500 else str(status)] += 1

    def _grant(self, header: str | None) -> tuple[str, _Grant]:
        token = header[7:].strip() if header and header[:7].lower() == "bearer " else ""
        if token:
            with self._lock:
                grant = self._grants.get(token)
                if grant is not None and (
                    grant.expires_s is None or grant.expires_s > self.now_ms() / 1000
                ):
                    return token, grant
        raise _Reply(401, {"message": BAD_TOKEN})

    def _check_region(self, org: _SimOrg, host_header: str | None) -> None:
        home = self.home_host
        if not org.regional or home is None or (host_header or "").lower() == home.lower():
            return
        messages = self.config.region_messages or REGION_MESSAGES
        with self._lock:
            template = messages[self._region_turn % len(messages)]
            self._region_turn += 1
        raise _Reply(451, {"message": template.format(host=home, url=f"http://{home}")})

    def _seen(self, token: str, grant: _Grant, org: _SimOrg, paging: bool) -> _TokenStats:
        with self._lock:
            label = token_label(token)
            stats = self._token_stats.get(label)
            if stats is None:
                stats = self._token_stats[label] = _TokenStats(org.n, grant.kind)
            stats.seen(paging, self.now_ms() / 1000)
            return stats

    def _rate_limit(self, token: str, paging: bool, stats: _TokenStats) -> None:
        if not self.config.rate_limits:
            return
        limiter = self._pages if paging else self._initial
        with self._lock:
            wait = limiter.take(token, self.now_ms() / 1000)
            if wait > 0:
                stats.refused_for_rate += 1
        if wait > 0:
            raise _Reply(429, {"message": RATE_LIMITED}, {"Retry-After": str(math.ceil(wait))})

    def _admit(self, paging: bool, headers: Any) -> _SimOrg:
        """The checks before a CDR request is served, in Webex's order; the token's org."""
        token, grant = self._grant(headers.get("Authorization"))
        org = grant.org
        if org is None:
            raise _Reply(403, {"message": MISSING_CDR_SCOPE})
        stats = self._seen(token, grant, org, paging)
        self._check_region(org, headers.get("Host"))
        status, delay, force_429 = self._dice.roll(self._faults)
        if delay:
            time.sleep(delay)
        if status is not None:
            raise _Reply(status, {"message": "Simulated server error"})
        if force_429:
            raise _Reply(429, {"message": RATE_LIMITED}, {"Retry-After": "1"})
        self._rate_limit(token, paging, stats)
        return org

    def handle_cdrs(
        self, endpoint: Endpoint, query: dict[str, list[str]], host: str, headers: Any
    ) -> tuple[int, bytes, dict[str, str]]:
        paging = "cursor" in query
        org = self._admit(paging, headers)

        def one(name: str) -> str | None:
            values = query.get(name)
            return values[-1] if values else None

        now_ms = self.now_ms()
        start_ms, end_ms = (
            _time_param(one("startTime"), "startTime"),
            _time_param(one("endTime"), "endTime"),
        )
        if not paging:
            problem = check_window(endpoint, start_ms, end_ms, now_ms, self._rules)
            if problem:
                raise _Reply(400, {"message": problem})
        page_size = _max_param(one("max"))
        raw_locations = one("locations") or ""
        names = [n.strip() for n in raw_locations.split(",") if n.strip()]
        if len(names) > MAX_LOCATIONS:
            raise _Reply(400, {"message": f"At most {MAX_LOCATIONS} locations are allowed"})
        locations = frozenset(names)
        as_of = _int_param(one("asOf"), "asOf") if paging else now_ms
        cursor = _cursor_param(one("cursor")) if paging else None

        with self._lock, _gc_paused():
            faults = self._faults
            window = self._window(
                org,
                endpoint,
                start_ms=start_ms,
                end_ms=end_ms,
                locations=locations,
                as_of=as_of,
                faults=faults,
            )
            lo = bisect.bisect_right(window.keys, cursor) if cursor else 0
            chosen = window.legs[lo : lo + page_size]
            records, served = [], 0
            for g in chosen:
                record, kind = fault_rules.corrupt(org.traffic.record(g), faults, self.config.seed)
                records.append(record)
                served += 1
                if kind is not None:
                    self._malformed[g.report_id] = kind
                if kind != "missing-report-id":
                    org.served.add(g.report_id)
            self._stats["records_served"] += served
        if not window.legs and not paging:
            raise _Reply(404, {"message": NO_CDRS})
        out_headers: dict[str, str] = {}
        hi = lo + len(chosen)
        if hi < len(window.legs):
            last = window.keys[hi - 1]
            params = {
                "startTime": ms_to_iso(start_ms),
                "endTime": ms_to_iso(end_ms),
                **({"locations": ",".join(sorted(locations))} if locations else {}),
                "max": str(page_size),
                "startTimeForNextFetch": ms_to_iso(window.keys[hi][0]),
                "cursor": f"{last[0]}~{last[1]}~{last[2]}",
                "asOf": str(as_of),
                "orgId": org.org_id,
                "totalCount": str(len(window.legs)),
            }
            url = f"http://{host}{RULES[endpoint].path}?{urlencode(params)}"
            out_headers["Link"] = f'<{url}>; rel="next"'
        return 200, fault_rules.encode_page(records), out_headers

    def _window(
        self,
        org: _SimOrg,
        endpoint: Endpoint,
        *,
        start_ms: int,
        end_ms: int,
        locations: frozenset[str],
        as_of: int,
        faults: Faults,
    ) -> _Window:
        # A stream window ending before as_of is complete whatever as_of is: share one entry.
        snapshot = min(as_of, end_ms) if endpoint == "stream" else as_of
        key = (endpoint, start_ms, end_ms, locations, snapshot, faults.duplicates)
        windows = org.windows
        window = windows.get(key)
        if window is not None:
            windows.move_to_end(key)
            return window
        seed = self.config.seed
        dup = faults.duplicates > 0
        lookback = fault_rules.DUPLICATE_MAX_DELAY_MS if dup and endpoint == "stream" else 0
        entries: list[tuple[EntryKey, Leg]] = []
        for g in org.traffic.legs_between(
            endpoint, start_ms, end_ms, now_ms=snapshot, lookback_ms=lookback
        ):
            if locations and g.location not in locations:
                continue
            at = g.key_ms(endpoint)
            if at >= start_ms:
                entries.append(((at, g.report_id, 0), g))
            if dup and fault_rules.is_duplicated(faults, seed, g.report_id):
                if endpoint == "feed":
                    entries.append(((at, g.report_id, 1), g))
                else:
                    again = g.inserted_ms + fault_rules.duplicate_delay_ms(seed, g.report_id)
                    if start_ms <= again < end_ms and again <= snapshot:
                        entries.append(((again, g.report_id, 1), g))
        entries.sort(key=lambda e: e[0])
        window = _Window([e[0] for e in entries], [e[1] for e in entries])
        windows[key] = window
        # A window can hold a million legs: keep few (fewer per org when there are many).
        if len(windows) > (4 if org.n == 0 else 2):
            windows.popitem(last=False)
        return window

    def _new_pair(
        self, org: _SimOrg | None, access_kind: str, client: str, access_lifetime_s: float
    ) -> dict[str, Any]:
        """Issue an access token and a refresh token (lock held)."""
        cfg = self.config
        now_s = self.now_ms() / 1000
        self._token_serial += 1
        access = f"sim-at-{self._token_serial}-{secrets.token_hex(12)}"
        refresh = f"sim-rt-{self._token_serial}-{secrets.token_hex(12)}"
        self._grants[access] = _Grant(org, access_kind, now_s + access_lifetime_s)
        self._refresh_grants[refresh] = _RefreshGrant(
            org, client, now_s + cfg.refresh_token_lifetime_s
        )
        self._stats["tokens_issued"] += 1
        return {
            "access_token": access,
            "expires_in": int(access_lifetime_s),
            "refresh_token": refresh,
            "refresh_token_expires_in": int(cfg.refresh_token_lifetime_s),
            "token_type": "Bearer",
        }

    def _service_app_lifetime(self) -> float:
        cfg = self.config
        return cfg.service_app_token_lifetime_s or cfg.access_token_lifetime_s

    def handle_token(self, form: dict[str, list[str]]) -> tuple[int, bytes, dict[str, str]]:
        def one(name: str) -> str:
            values = form.get(name)
            return values[-1] if values else ""

        cfg = self.config
        if one("grant_type") != "refresh_token":
            raise _Reply(
                400, _oauth_error("unsupported_grant_type", "grant_type must be refresh_token")
            )
        clients = {
            (cfg.client_id, cfg.client_secret): "integration",
            (cfg.service_app_client_id, cfg.service_app_client_secret): "service_app",
        }
        client = clients.get((one("client_id"), one("client_secret")))
        if client is None:
            raise _Reply(401, _oauth_error("invalid_client", "client authentication failed"))
        with self._lock:
            now_s = self.now_ms() / 1000
            old = one("refresh_token")
            grant = self._refresh_grants.get(old)
            if grant is None or grant.client != client or now_s >= grant.expires_s:
                raise _Reply(
                    400, _oauth_error("invalid_grant", "refresh token is invalid or expired")
                )
            # Rotation: the previous refresh token stops working at once.
            del self._refresh_grants[old]
            org = grant.org
            if client == "service_app":
                body = self._new_pair(org, "service_app", client, self._service_app_lifetime())
            else:
                kind = "oauth" if org is not None else "applications"
                body = self._new_pair(org, kind, client, cfg.access_token_lifetime_s)
                if org is not None:
                    org.refresh_token = body["refresh_token"]
        return 200, orjson.dumps(body), {}

    def handle_mint(
        self, app_id: str, resource: str, body: bytes, headers: Any
    ) -> tuple[int, bytes, dict[str, str]]:
        """``POST /v1/applications/{appId}/token``: a Service App token pair for targetOrgId."""
        cfg = self.config
        if resource != "token":
            raise _Reply(404, {"message": f"The requested resource {resource} was not found"})
        _, grant = self._grant(headers.get("Authorization"))
        if grant.kind != "applications":
            raise _Reply(403, {"message": MISSING_APPLICATIONS_SCOPE})
        if app_id != cfg.service_app_id:
            raise _Reply(404, {"message": SERVICE_APP_NOT_FOUND})
        try:
            data = orjson.loads(body or b"")
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict) or not all(
            isinstance(data.get(k), str) for k in ("clientId", "clientSecret", "targetOrgId")
        ):
            raise _Reply(400, {"message": "clientId, clientSecret and targetOrgId are required"})
        if (data["clientId"], data["clientSecret"]) != (
            cfg.service_app_client_id,
            cfg.service_app_client_secret,
        ):
            raise _Reply(400, {"message": "clientId or clientSecret is not valid"})
        with self._lock:
            org = self._by_id.get(data["targetOrgId"])
            if org is None or not org.authorised:
                raise _Reply(403, {"message": SERVICE_APP_NOT_AUTHORISED})
            pair = self._new_pair(org, "service_app", "service_app", self._service_app_lifetime())
            self._stats["service_app_mints"] += 1
        return 200, orjson.dumps(pair), {}

    def handle_admin(
        self, method: str, path: str, query: dict[str, list[str]], body: bytes
    ) -> tuple[int, bytes, dict[str, str]]:
        if method == "GET" and path == "/_sim/stats":
            return 200, orjson.dumps(self.stats()), {}
        if method == "GET" and path == "/_sim/served":
            org = _one(query, "org")
            served: dict[str, Any] = {
                "report_ids": sorted(self._admin_org(self.served_report_ids, org))
            }
            served["malformed"] = self.malformed_report_ids()
            if self.config.orgs:
                served["by_org"] = {
                    one.org_id: sorted(self.served_report_ids(one.n)) for one in self._orgs
                }
            return 200, orjson.dumps(served), {}
        if method == "GET" and path == "/_sim/faults":
            return 200, orjson.dumps(self.faults.to_dict()), {}
        if method == "POST" and path == "/_sim/faults":
            faults = _parse_faults(body, self.faults)
            self.set_faults(faults)
            return 200, orjson.dumps(faults.to_dict()), {}
        if method == "POST" and path == "/_sim/expire-tokens":
            return 200, orjson.dumps({"expired": self.expire_tokens()}), {}
        if method == "GET" and path == "/_sim/expected":
            return self._admin_expected(query)
        if method == "GET" and path == "/_sim/rates":
            limits = {
                "initial_per_minute": self.config.initial_per_minute,
                "pages_per_minute": self.config.pages_per_minute,
            }
            return 200, orjson.dumps({"limits": limits, "tokens": self.token_stats()}), {}
        if method == "GET" and path == "/_sim/orgs":
            return 200, orjson.dumps({"orgs": self.orgs_info()}), {}
        parts = path.split("/")  # "", "_sim", "orgs", ref, action
        if method == "POST" and len(parts) == 5 and parts[2] == "orgs":
            actions: dict[str, Callable[[str], dict[str, Any]]] = {
                "revoke": self.revoke,
                "authorize": lambda ref: self.authorise(ref, authorised=True),
                "deauthorize": lambda ref: self.authorise(ref, authorised=False),
            }
            action = actions.get(parts[4])
            if action is not None:
                return 200, orjson.dumps(self._admin_org(action, parts[3])), {}
        raise _Reply(404, {"message": f"no admin resource {method} {path}"})

    def _admin_org(self, call: Callable[..., Any], ref: str | None) -> Any:
        try:
            return call(ref)
        except KeyError:
            raise _Reply(404, {"message": f"no simulated org {ref}"}) from None

    def _admin_expected(self, query: dict[str, list[str]]) -> tuple[int, bytes, dict[str, str]]:
        endpoint = _one(query, "endpoint") or "stream"
        if endpoint not in RULES:
            raise _Reply(400, {"message": "endpoint must be stream or feed"})
        start = datetime.fromtimestamp(
            _time_param(_one(query, "startTime"), "startTime") / 1000, UTC
        )
        end = datetime.fromtimestamp(_time_param(_one(query, "endTime"), "endTime") / 1000, UTC)
        org = _one(query, "org")
        expected = self._admin_org(
            lambda ref: self.expected_records(endpoint, start, end, org=ref), org
        )
        out: dict[str, Any] = {"records": expected}
        if self.config.orgs and org is None:
            out["by_org"] = self.expected_by_org(endpoint, start, end)
        return 200, orjson.dumps(out), {}


def _parse_faults(body: bytes, base: Faults) -> Faults:
    try:
        values = orjson.loads(body or b"{}")
    except orjson.JSONDecodeError:
        raise _Reply(400, {"message": "the body is not JSON"}) from None
    if not isinstance(values, dict):
        raise _Reply(400, {"message": "a JSON object of fault probabilities is expected"})
    try:
        return Faults.from_mapping(values, base=base)
    except (ValueError, TypeError) as exc:
        raise _Reply(400, {"message": str(exc)}) from None


def _oauth_error(code: str, description: str) -> dict[str, Any]:
    return {"error": code, "error_description": description, "message": description}


def _one(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


def _time_param(value: str | None, name: str) -> int:
    if value is None:
        raise _Reply(400, {"message": f"{name} is required"})
    ms = parse_webex_time(value)
    if ms is None:
        raise _Reply(400, {"message": f"{name} must be in the format YYYY-MM-DDTHH:MM:SS.mmmZ"})
    return ms


def _max_param(value: str | None) -> int:
    if value is None or value == "":
        return PAGE_MAX
    try:
        n = int(value)
    except ValueError:
        raise _Reply(400, {"message": "max must be an integer"}) from None
    return min(PAGE_MAX, max(PAGE_MIN, n))


def _int_param(value: str | None, name: str) -> int:
    try:
        return int(value or "")
    except ValueError:
        raise _Reply(400, {"message": f"{name} is not valid"}) from None


def _cursor_param(value: str | None) -> EntryKey:
    parts = (value or "").split("~")
    try:
        return int(parts[0]), parts[1], int(parts[2])
    except (ValueError, IndexError):
        raise _Reply(400, {"message": "cursor is not valid"}) from None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    simulator: Simulator

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-reply (a daemon killed by a test) is normal here, not an
        # error worth a traceback on stderr.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conn_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conn_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Wake handler threads parked on idle keep-alive connections so they finish."""
        with self._conn_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    server_version = "WebexCdrSimulator/1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Quiet: the tests and the demo read stdout."""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _route(
        self,
        sim: Simulator,
        method: str,
        path: str,
        query: dict[str, list[str]],
        body: bytes,
    ) -> tuple[int, bytes, dict[str, str]]:
        if path.startswith("/_sim/"):
            if not _is_loopback(self.client_address[0]):
                raise _Reply(403, {"message": "admin endpoints answer loopback only"})
            return sim.handle_admin(method, path, query, body)
        if path == "/v1/access_token" and method == "POST":
            form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
            return sim.handle_token(form)
        parts = path.split("/")  # "", "v1", "applications", appId, "token"
        if method == "POST" and len(parts) == 5 and parts[1:3] == ["v1", "applications"]:
            return sim.handle_mint(parts[3], parts[4], body, self.headers)
        if method == "GET" and path in ("/v1/cdr_stream", "/v1/cdr_feed"):
            endpoint: Endpoint = "stream" if path.endswith("stream") else "feed"
            host = self.headers.get("Host") or f"{sim.config.host}:{sim.port}"
            return sim.handle_cdrs(endpoint, query, host, self.headers)
        raise _Reply(404, {"message": f"The requested resource {path} was not found"})

    def _dispatch(self, method: str) -> None:
        sim = self.server.simulator
        tracking = self.headers.get("TrackingID") or f"SIM_{uuid.uuid4()}"
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        parts = urlsplit(self.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        path = parts.path.rstrip("/") or "/"
        try:
            status, payload, headers = self._route(sim, method, path, query, body)
        except _Reply as reply:
            status, headers = reply.status, reply.headers
            error = dict(reply.body)
            if "errors" not in error:
                error["errors"] = [{"description": error["message"]}]
            error["trackingId"] = tracking
            payload = orjson.dumps(error)
        if not path.startswith("/_sim/"):
            sim._count(status)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("TrackingID", tracking)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False
