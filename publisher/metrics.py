"""Every Prometheus metric the publisher exports, defined once.

Modules import the objects they update from here; ``/metrics`` serves :data:`REGISTRY`. Labels
never carry secrets or unbounded values (no Report IDs, no tokens, no URLs with queries).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)
PREFIX = "cdr_publisher"

RECORDS_FETCHED = Counter(
    f"{PREFIX}_records_fetched",
    "Records received from the Webex API",
    ["endpoint"],
    registry=REGISTRY,
)
RECORDS_PUBLISHED = Counter(
    f"{PREFIX}_records_published",
    "Events committed to the events topic",
    ["source"],  # live | replay
    registry=REGISTRY,
)
RECORDS_DEDUPLICATED = Counter(
    f"{PREFIX}_records_deduplicated",
    "Records dropped because their Report ID was already published",
    ["source"],
    registry=REGISTRY,
)
RECORDS_DLQ = Counter(
    f"{PREFIX}_records_dlq",
    "Records committed to the dead letter topic",
    ["source"],
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
    ["endpoint", "status"],
    registry=REGISTRY,
)
RATE_LIMIT_WAIT = Counter(
    f"{PREFIX}_rate_limit_wait_seconds",
    "Seconds spent waiting on the client-side limiter or a Retry-After",
    ["endpoint"],
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
