"""Which Report IDs the events topic already holds for a span: the index behind ``fill-gaps``.

The daemon's dedup marks cover hours, a replay covers up to 30 days, so a replay asks the topic
itself. Events carry their produce time as the Kafka timestamp (CreateTime), and no record can be
produced before its call started, so every event of a call that started at or after ``since`` was
written at or after ``since``: the index seeks each partition to ``since`` with
``offsets_for_times`` and reads, ``read_committed``, up to the end the topic had when the read
began. Every event read whose ``cdr.start_time`` could belong to the span is kept as a 64-bit mark
(:mod:`publisher.dedup`), so memory is about 24 bytes per event of the span, and the cost is one
sequential read of everything published since the span started (the whole topic for a span of
yesterday, 30 days of it for the oldest span the feed serves).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaException, TopicPartition

from publisher.dedup import MarkTable, mark_of
from publisher.errors import KafkaError
from publisher.events import MAGIC_BYTE
from publisher.kafka.reader import drain, high_watermarks
from publisher.webex.record import format_timestamp, parse_timestamp

log = logging.getLogger("publisher.replay")

# Webex's, the broker's and our clocks disagree by seconds; an hour costs little extra reading.
SEEK_MARGIN = timedelta(hours=1)
# Kept even when its start time is this far outside the span: a feed that filters on another
# time (report or insertion time) returns records that started up to hours before the window.
KEEP_MARGIN = timedelta(hours=24)
INDEX_TIMEOUT_S = 600.0


@dataclass(frozen=True, slots=True)
class IndexStats:
    """What building the index cost: events read, events kept, bytes read, seconds."""

    scanned: int = 0
    kept: int = 0
    bytes: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "scanned": self.scanned,
            "kept": self.kept,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
        }


_ID_PREFIX = b'{"event_id":"'
_START_KEY = b'"start_time":'
_CANONICAL = re.compile(rb'"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)"')


class SpanFilter:
    """Picks the Report ID out of a framed event when the event may belong to ``[lo, hi)``.

    An event without a readable start time is kept: a mark too many only costs memory, a mark
    too few would publish a record twice. Events as our encoder writes them (orjson, ``event_id``
    first, every known ``cdr`` key present, canonical timestamps) are read without decoding the
    JSON, which is most of the index's CPU time; any other shape is decoded in full. Pure.
    """

    def __init__(self, lo: datetime, hi: datetime) -> None:
        self.lo = lo - KEEP_MARGIN
        self.hi = hi + KEEP_MARGIN
        # Canonical timestamps (same width, UTC, "Z") order as strings do.
        self._lo = format_timestamp(self.lo)
        self._hi = format_timestamp(self.hi)

    def report_id(self, value: bytes | None) -> str | None:
        if value is None or len(value) < 5 or value[0] != MAGIC_BYTE:
            return None
        body = value[5:]
        fast = self._fast(body)  # "" when surely outside the span, None when undecided
        if fast is None:
            return self._slow(body)
        return fast or None

    def _fast(self, body: bytes) -> str | None:
        if not body.startswith(_ID_PREFIX):
            return None
        id_end = body.find(b'"', len(_ID_PREFIX))
        # "cdr" (every known key, start_time among them) comes before "unknown_fields", and a
        # key pattern cannot occur inside a JSON string (its quotes are escaped), so the first
        # match is the CDR's own start time.
        at = body.find(_START_KEY)
        if id_end < 0 or at < 0 or b"\\" in body[len(_ID_PREFIX) : id_end]:
            return None
        report_id = body[len(_ID_PREFIX) : id_end].decode("utf-8", "replace")
        rest = at + len(_START_KEY)
        if body.startswith(b"null", rest):
            return report_id
        match = _CANONICAL.match(body, rest)
        if match is None:
            return None
        started = match.group(1).decode()
        return report_id if self._lo <= started < self._hi else ""

    def _slow(self, body: bytes) -> str | None:
        try:
            event = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(event, dict):
            return None
        report_id = event.get("event_id")
        if not isinstance(report_id, str):
            return None
        cdr = event.get("cdr")
        started = cdr.get("start_time") if isinstance(cdr, dict) else None
        if not isinstance(started, str):
            return report_id
        try:
            moment = parse_timestamp(started)
        except ValueError:
            return report_id
        return report_id if self.lo <= moment < self.hi else None


def read_published(
    config: dict[str, Any],
    topic: str,
    *,
    start: datetime,
    end: datetime,
    timeout: float = INDEX_TIMEOUT_S,
) -> tuple[MarkTable, IndexStats]:
    """Marks of the events in ``topic`` that may belong to ``[start, end)`` (see the module doc).

    ``config`` is a read_committed consumer configuration. A topic that does not exist yet
    holds nothing: an empty table.
    """
    began = time.monotonic()
    keep = SpanFilter(start, end)
    marks = MarkTable()
    scanned = kept = size = 0
    consumer = Consumer(
        {
            **config,
            "group.id": f"cdr-publisher-index-{uuid.uuid4().hex}",
            "enable.partition.eof": True,
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=30)
        described = meta.topics.get(topic)
        if described is None or described.error is not None:
            return marks, IndexStats(seconds=time.monotonic() - began)
        partitions = sorted(described.partitions)
        since_ms = int((start - SEEK_MARGIN).timestamp() * 1000)
        found = consumer.offsets_for_times(
            [TopicPartition(topic, p, since_ms) for p in partitions], timeout=30
        )
        ends = high_watermarks(config, topic, partitions)
        # offset -1: no event of that partition was produced at or after ``since``.
        starts = {tp.partition: tp.offset for tp in found}
        for msg in drain(consumer, topic, starts, ends, timeout=timeout, what="indexing"):
            value = msg.value()
            scanned += 1
            size += len(value or b"")
            report_id = keep.report_id(value)
            if report_id:
                kept += 1
                marks.add(mark_of(report_id), 0)
    except KafkaException as exc:
        raise KafkaError(f"indexing {topic!r}: {exc}", retriable=True) from exc
    finally:
        consumer.close()
    stats = IndexStats(scanned, kept, size, time.monotonic() - began)
    log.info("index of published events built", extra={"topic": topic, **stats.as_dict()})
    return marks, stats
