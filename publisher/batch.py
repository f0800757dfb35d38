"""One parsed page -> the records of one transaction. Pure: no I/O, no clock.

Dedup happens here: a record whose mark is already committed, or already earlier in this batch,
is counted and dropped. DLQ entries are marked too (by Report ID, or by a hash of their raw bytes
when they have none), so a window fetched again does not send the same bad record twice.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

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
from publisher.kafka.sink import OutRecord
from publisher.webex.record import ParsedPage, RejectedRecord


@dataclass(frozen=True, slots=True)
class Topics:
    events: str
    dlq: str


@dataclass
class Batch:
    records: list[OutRecord] = field(default_factory=list)
    marks: list[int] = field(default_factory=list)
    published: int = 0
    dlq: int = 0
    duplicates: int = 0
    new_enum_values: Counter[str] = field(default_factory=Counter)
    unknown_keys: int = 0
    release_times: list[str] = field(default_factory=list)


def _rejected_mark(rejected: RejectedRecord) -> int:
    return mark_of(rejected.report_id or "raw:" + rejected.raw.hex())


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
    batch = Batch()
    in_batch: set[int] = set()
    headers = event_headers(source, replay_id)
    # Bound once: this loop runs for every record of every page.
    add_mark, add_record, add_release = (
        in_batch.add,
        batch.records.append,
        batch.release_times.append,
    )
    marks_append, encode, events_topic = batch.marks.append, encoder.encode, topics.events
    for cdr in page.records:
        mark = mark_of(cdr.report_id)
        if mark in committed or mark in in_batch:
            batch.duplicates += 1
            continue
        add_mark(mark)
        marks_append(mark)
        event = build_event(cdr, org_id=org_id, source=source, replay_id=replay_id)
        try:
            value = encode(event)
        except InvalidEventError as exc:
            rejected = RejectedRecord(raw=_raw_of(event), reason=str(exc), report_id=cdr.report_id)
            entry = dlq_entry(rejected, org_id=org_id, source=source)
            add_record(OutRecord(topics.dlq, entry.key, entry.value, entry.headers))
            batch.dlq += 1
            continue
        add_record(OutRecord(events_topic, event_key(cdr), value, headers))
        batch.published += 1
        if cdr.new_enum_values:
            for field_name, _value in cdr.new_enum_values:
                batch.new_enum_values[field_name] += 1
        if cdr.unknown:
            batch.unknown_keys += len(cdr.unknown)
        release = cdr.fields.get("release_time")
        if isinstance(release, str):
            add_release(release)
    for rejected in page.rejected:
        mark = _rejected_mark(rejected)
        if mark in committed or mark in in_batch:
            batch.duplicates += 1
            continue
        in_batch.add(mark)
        batch.marks.append(mark)
        entry = dlq_entry(rejected, org_id=org_id, source=source)
        batch.records.append(OutRecord(topics.dlq, entry.key, entry.value, entry.headers))
        batch.dlq += 1
    return batch


def _raw_of(event: dict[str, object]) -> bytes:
    import orjson  # noqa: PLC0415 - only on the rare invalid-event path

    return orjson.dumps(event, default=str)
