"""One parsed page -> the records of one transaction. Pure: no I/O, no clock.

Dedup happens here: a record whose mark is already committed, or already earlier in this batch,
is counted and dropped. DLQ entries are marked too (by Report ID, or by a hash of their raw bytes
when they have none), so a window fetched again does not send the same bad record twice.

Events come out as parallel key and value lists (one topic, one header list for the page), which
the sink produces without building an object per event; the counts the metrics need are taken
once per page, over the records that were published.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from publisher.dedup import MarkTable, mark_of
from publisher.events import (
    EventEncoder,
    InvalidEventError,
    Source,
    build_event,
    dlq_entry,
    event_headers,
    event_key,
)
from publisher.kafka.sink import EventColumns, OutRecord
from publisher.webex import native
from publisher.webex.fields import KNOWN_ENUM_VALUES
from publisher.webex.page import Rows
from publisher.webex.record import Cdr, ParsedPage, RejectedRecord

_ABSENT = frozenset({"", "NA", "na"})
_ENUM_GETTERS = tuple(
    (name, attrgetter(name), known | _ABSENT | {None})
    for name, known in sorted(KNOWN_ENUM_VALUES.items())
)
_RELEASE = attrgetter("release_time")
_NEW_ENUMS = attrgetter("new_enums")
_UNKNOWN_COUNT = attrgetter("unknown_count")


@dataclass(frozen=True, slots=True)
class Topics:
    events: str
    dlq: str


@dataclass
class Batch:
    records: list[OutRecord] = field(default_factory=list)
    """Everything but the events: the DLQ entries."""
    events: EventColumns = field(default_factory=lambda: EventColumns("", [], [], None))
    marks: list[int] = field(default_factory=list)
    published: int = 0
    dlq: int = 0
    duplicates: int = 0
    new_enum_values: Counter[str] = field(default_factory=Counter)
    unknown_keys: int = 0
    release_times: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        """Messages this batch produces besides the state records (events and DLQ entries)."""
        return len(self.records) + len(self.events.values)


def _rejected_mark(rejected: RejectedRecord) -> int:
    if rejected.report_id:
        return mark_of(rejected.report_id)
    digest = hashlib.blake2b(b"raw:" + rejected.raw, digest_size=8).digest()
    return int.from_bytes(digest, "little") or 1


@dataclass(frozen=True, slots=True)
class _Dlq:
    """Where and how this page's DLQ entries are made."""

    batch: Batch
    topic: str
    org_id: str
    source: Source
    max_message_bytes: int

    def add(self, rejected: RejectedRecord) -> None:
        entry = dlq_entry(
            rejected,
            org_id=self.org_id,
            source=self.source,
            max_message_bytes=self.max_message_bytes,
        )
        self.batch.records.append(OutRecord(self.topic, entry.key, entry.value, entry.headers))
        self.batch.dlq += 1


def build_batch(
    page: ParsedPage,
    *,
    committed: MarkTable,
    encoder: EventEncoder,
    topics: Topics,
    org_id: str,
    source: Source,
    replay_id: str | None = None,
) -> Batch:
    headers = event_headers(source, replay_id)
    batch = Batch(events=EventColumns(topics.events, [], [], headers))
    dlq = _Dlq(batch, topics.dlq, org_id, source, encoder.max_message_bytes)
    in_batch: set[int] = set()
    _add_events(
        batch, page, dlq, committed=committed, in_batch=in_batch, encoder=encoder,
        org_id=org_id, source=source, replay_id=replay_id,
    )  # fmt: skip
    for rejected in page.rejected:
        mark = _rejected_mark(rejected)
        if mark in committed or mark in in_batch:
            batch.duplicates += 1
            continue
        in_batch.add(mark)
        batch.marks.append(mark)
        dlq.add(rejected)
    return batch


def _add_events(  # noqa: PLR0915 - one loop for every record of every page: no call per record
    batch: Batch,
    page: ParsedPage,
    dlq: _Dlq,
    *,
    committed: MarkTable,
    in_batch: set[int],
    encoder: EventEncoder,
    org_id: str,
    source: Source,
    replay_id: str | None,
) -> None:
    """The page's new records as events (or, when one cannot be, as DLQ entries)."""
    records = page.records
    items: list[Any]
    unknown: dict[int, dict[str, Any]]
    if isinstance(records, Rows):
        items, unknown = records.items, records.unknown
    else:
        items, unknown = list(records), {}
    encode_row = encoder.row_encoder(org_id=org_id, source=source, replay_id=replay_id)
    frame = encoder.native_framer(org_id=org_id, source=source, replay_id=replay_id)
    native_row = native.Row
    room = encoder.room(batch.events.headers)
    # Bound once: this loop runs for every record of every page.
    add_mark, marks_append = in_batch.add, batch.marks.append
    keys_append, values_append = batch.events.keys.append, batch.events.values.append
    published_rows: list[Any] = []
    published_cdrs: list[Cdr] = []
    published_natives: list[Any] = []
    rows_append, cdrs_append = published_rows.append, published_cdrs.append
    natives_append = published_natives.append
    unknown_keys = 0
    check_committed = len(committed) > 0
    if frame is not None and items and _all_native(items):
        whole = native.frame_page(frame, items, committed)
        if whole is not None and whole[3] <= room:
            marks, keys, values, _largest = whole
            batch.events.keys.extend(keys)
            batch.events.values.extend(values)
            in_batch.update(marks)
            batch.marks.extend(marks)
            batch.published = len(marks)
            batch.unknown_keys = sum(map(_UNKNOWN_COUNT, items))
            _count_page(batch, [], [], items)
            return
    for index, item in enumerate(items):
        cls = item.__class__
        if cls is native_row:
            # Compiled row: mark, key and the event's cdr object were made with the page.
            mark = item.mark
            if mark in in_batch or (check_committed and mark in committed):
                batch.duplicates += 1
                continue
            add_mark(mark)
            marks_append(mark)
            value = frame(item)
            key = item.key
            if len(key) + len(value) > room:
                _too_large(dlq, encoder, key, value, item.report_id)
                continue
            keys_append(key)
            values_append(value)
            natives_append(item)
            unknown_keys += item.unknown_count
            continue
        report_id: str = item.report_id
        mark = mark_of(report_id)
        if mark in in_batch or (check_committed and mark in committed):
            batch.duplicates += 1
            continue
        add_mark(mark)
        marks_append(mark)
        if cls is not Cdr:
            extra = unknown.get(index) if unknown else None
            value = encode_row(item, extra)
            correlation_id = item.correlation_id
            if not correlation_id or correlation_id in _ABSENT:
                correlation_id = report_id
            key = correlation_id.encode()
            published = rows_append
        else:
            found = _reference_event(
                item, encoder=encoder, dlq=dlq, org_id=org_id, source=source, replay_id=replay_id
            )
            if found is None:
                continue
            value, key, extra, published = found, event_key(item), item.unknown, cdrs_append
        if len(key) + len(value) > room:
            _too_large(dlq, encoder, key, value, report_id)
            continue
        keys_append(key)
        values_append(value)
        published(item)
        if extra:
            unknown_keys += len(extra)
    batch.published = len(batch.events.values)
    batch.unknown_keys = unknown_keys
    _count_page(batch, published_rows, published_cdrs, published_natives)


def _all_native(items: list[Any]) -> bool:
    kinds = set(map(type, items))
    return len(kinds) == 1 and native.Row in kinds


def _too_large(dlq: _Dlq, encoder: EventEncoder, key: bytes, value: bytes, report_id: str) -> None:
    reason = (
        f"event of {len(value):,} bytes (key {len(key):,}) does not fit the message "
        f"limit (message.max.bytes {encoder.max_message_bytes:,}, less headers and framing)"
    )
    # The event's JSON rather than the record's: it holds every value, on both paths.
    dlq.add(RejectedRecord(value[5:], reason, report_id))


def _reference_event(
    cdr: Cdr,
    *,
    encoder: EventEncoder,
    dlq: _Dlq,
    org_id: str,
    source: Source,
    replay_id: str | None,
) -> bytes | None:
    """The framed event of a record the reference parser read: built as a dict and validated
    (a few odd records a page); None when the schema refuses it and it went to the DLQ."""
    event = build_event(cdr, org_id=org_id, source=source, replay_id=replay_id)
    try:
        return encoder.encode(event)
    except InvalidEventError as exc:
        dlq.add(RejectedRecord(_raw_of(event), str(exc), cdr.report_id))
        return None


def _count_page(batch: Batch, rows: list[Any], cdrs: list[Cdr], natives: list[Any]) -> None:
    """The metrics' figures for the published records, once per page (not once per record)."""
    for name, get, expected in _ENUM_GETTERS:
        values = list(map(get, rows))
        if not expected.issuperset(values):
            batch.new_enum_values[name] += sum(1 for v in values if v not in expected)
    for cdr in cdrs:
        for name, _value in cdr.new_enum_values:
            batch.new_enum_values[name] += 1
    for fields in filter(None, map(_NEW_ENUMS, natives)):
        for index in fields:
            batch.new_enum_values[native.NAMES[index]] += 1
    releases = [v for v in map(_RELEASE, rows) if v and v not in _ABSENT]
    releases += [r for r in (c.fields.get("release_time") for c in cdrs) if isinstance(r, str)]
    releases += filter(None, map(_RELEASE, natives))
    batch.release_times = releases


def _raw_of(event: dict[str, object]) -> bytes:
    import orjson  # noqa: PLC0415 - only on the rare invalid-event path

    return orjson.dumps(event, default=str)
