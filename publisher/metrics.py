"""Every Prometheus metric the publisher exports, defined once.

Modules import the objects they update from here; ``/metrics`` serves :data:`REGISTRY`. Labels
never carry secrets or unbounded values (no Report IDs, no tokens, no URLs with queries); the
``org`` label is bounded by the catalogue, so a fleet's series grow with its orgs, never with
its data.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)
PREFIX = "cdr_publisher"

RECORDS_FETCHED = Counter(
    f"{PREFIX}_records_fetched",
    "Records received from the Webex API",
    ["org", "endpoint"],
    registry=REGISTRY,
)
RECORDS_PUBLISHED = Counter(
    f"{PREFIX}_records_published",
    "Events committed to the events topic",
    ["org", "source"],  # source: live | replay
    registry=REGISTRY,
)
RECORDS_DEDUPLICATED = Counter(
    f"{PREFIX}_records_deduplicated",
    "Records dropped because their Report ID was already published",
    ["org", "source"],
    registry=REGISTRY,
)
RECORDS_DLQ = Counter(
    f"{PREFIX}_records_dlq",
    "Records committed to the dead letter topic",
    ["org", "source"],
    registry=REGISTRY,
)
UNKNOWN_ENUM_VALUES = Counter(
    f"{PREFIX}_unknown_enum_values",
    "Enum values the seed does not list, kept as they came",
    ["field"],
    registry=REGISTRY,
)
UNKNOWN_KEYS = Counter(
    f"{PREFIX}_unknown_keys",
    "Record keys the field table does not know, kept as they came",
    registry=REGISTRY,
)
API_REQUESTS = Counter(
    f"{PREFIX}_api_requests",
    "Requests to the Webex API by endpoint and HTTP status (0: no reply)",
    ["org", "endpoint", "status"],
    registry=REGISTRY,
)
RATE_LIMIT_WAIT = Counter(
    f"{PREFIX}_rate_limit_wait_seconds",
    "Seconds spent waiting on the client-side limiter or a Retry-After",
    ["org", "endpoint"],
    registry=REGISTRY,
)
COMMIT_LATENCY = Histogram(
    f"{PREFIX}_transaction_commit_seconds",
    "Kafka transaction commit latency",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
LAST_COMMIT = Gauge(
    f"{PREFIX}_last_commit_timestamp_seconds",
    "Unix time of the last committed transaction",
    registry=REGISTRY,
)
CURSOR_LAG = Gauge(
    f"{PREFIX}_cursor_lag_seconds",
    "Now minus the stream cursor (insertion-time watermark)",
    ["org"],
    registry=REGISTRY,
)
DEDUP_MARKS = Gauge(
    f"{PREFIX}_dedup_marks",
    "Live dedup marks held in memory",
    ["org"],
    registry=REGISTRY,
)
LATENESS = Histogram(
    f"{PREFIX}_record_lateness_seconds",
    "Record lateness: the window end it arrived in minus its release time",
    buckets=(60, 300, 600, 1800, 3600, 7200, 14400, 28800, 43200, 86400),
    registry=REGISTRY,
)
REPLAY_WINDOWS_DONE = Gauge(
    f"{PREFIX}_replay_windows_done",
    "Windows a replay has completed",
    ["replay_id"],
    registry=REGISTRY,
)
REPLAY_WINDOWS_TOTAL = Gauge(
    f"{PREFIX}_replay_windows_total",
    "Windows a replay covers",
    ["replay_id"],
    registry=REGISTRY,
)
REPLAY_RECORDS = Counter(
    f"{PREFIX}_replay_records",
    "Records a replay published",
    ["replay_id"],
    registry=REGISTRY,
)
READY = Gauge(
    f"{PREFIX}_ready",
    "1 when /readyz would answer ready",
    registry=REGISTRY,
)
PRODUCER_RECOVERIES = Counter(
    f"{PREFIX}_producer_recoveries",
    "Producers replaced after a fencing that was not another owner, a timed-out transaction, "
    "or a fatal error",
    ["reason"],  # timed_out | fenced | lost
    registry=REGISTRY,
)
GAPS = Counter(
    f"{PREFIX}_gaps",
    "Spans the stream could no longer serve (each is filled from cdr_feed)",
    ["org"],
    registry=REGISTRY,
)
GAP_SECONDS = Counter(
    f"{PREFIX}_gap_seconds",
    "Length of those spans, in seconds of insertion time",
    ["org"],
    registry=REGISTRY,
)
GAP_LOST_SECONDS = Counter(
    f"{PREFIX}_gap_lost_seconds",
    "Seconds of gaps older than cdr_feed's 30 days: lost",
    ["org"],
    registry=REGISTRY,
)
GAPS_OPEN = Gauge(
    f"{PREFIX}_gaps_open",
    "Gaps whose filling from cdr_feed has not finished",
    ["org"],
    registry=REGISTRY,
)
REFUSED_URLS = Counter(
    f"{PREFIX}_refused_urls",
    "URLs not followed because the token may not go there (next links, 451 hosts, saved region)",
    ["source", "reason"],  # source: next_link | region | saved_region | request | token_endpoint
    registry=REGISTRY,
)
ADMIN_REFUSED = Counter(
    f"{PREFIX}_admin_requests_refused",
    "Admin requests (/replays) refused: no or wrong admin token, admin disabled, bad body",
    ["reason"],  # disabled | unauthenticated | bad_token | media_type | too_large | ...
    registry=REGISTRY,
)
ORG_UP = Gauge(
    f"{PREFIX}_org_up",
    "1 when the org's last poll worked, 0 while it fails (token, role, region) and backs off",
    ["org"],
    registry=REGISTRY,
)
SLOTS_OWNED = Gauge(
    f"{PREFIX}_slots_owned",
    "State partitions (slots) this replica owns",
    registry=REGISTRY,
)
REBALANCES = Counter(
    f"{PREFIX}_rebalances",
    "Slots assigned to, revoked from or lost by this replica",
    ["kind"],  # assigned | revoked | lost
    registry=REGISTRY,
)
SLOT_HANDOVER = Histogram(
    f"{PREFIX}_slot_handover_seconds",
    "From a slot's last commit by its previous owner to its first commit here",
    buckets=(1, 2, 5, 10, 15, 20, 30, 45, 60, 120, 300, 600),
    registry=REGISTRY,
)


ORG_GAUGES = (ORG_UP, CURSOR_LAG, DEDUP_MARKS, GAPS_OPEN)


def forget_org(org: str) -> None:
    """Drop the org's gauges once this replica no longer runs it (its slot moved): another
    replica reports it now, and a stale ``org_up 0`` or lag here would alert on nothing.
    Counters stay, since a rate over them stays right."""
    for gauge in ORG_GAUGES:
        try:
            gauge.remove(org)
        except KeyError:
            continue  # never set for this org


def observe_many(histogram: Histogram, amounts: Iterable[float]) -> None:
    """``histogram.observe(a)`` for every amount, with one increment per bucket and one of the
    sum: a page's records are counted once per page, not with a locked increment per record.
    (prometheus_client has no bulk observe; a test checks this gives what observe() gives.)"""
    bounds = histogram._upper_bounds
    counts = [0] * len(bounds)
    total = 0.0
    for amount in amounts:
        counts[bisect_left(bounds, amount)] += 1  # observe(): the first bound >= the amount
        total += amount
    histogram._sum.inc(total)
    for bucket, count in zip(histogram._buckets, counts, strict=True):
        if count:
            bucket.inc(count)


def observe_lateness(release_times: Iterable[str], window_end: datetime) -> None:
    """Record lateness (window end minus release time) of a page's published records."""
    end, parse = window_end.timestamp(), datetime.fromisoformat
    observe_many(LATENESS, [max(0.0, end - parse(t).timestamp()) for t in release_times])
