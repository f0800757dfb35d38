"""The transactional sink empties a page's EventColumns as it produces them (librdkafka copies
each message), against the real broker: a commit still writes every event exactly once and in
page order; spent columns are refused rather than committed empty; and after a produce that
fails half-way, the transaction is aborted and the page, built again, lands exactly once."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka.admin import AdminClient

from publisher.batch import Topics, build_batch
from publisher.dedup import MarkTable
from publisher.errors import KafkaError
from publisher.events import EventEncoder, Source
from publisher.kafka.config import producer_config
from publisher.kafka.sink import EventColumns, OutRecord, SpentColumnsError, TransactionalSink
from publisher.webex.record import format_timestamp, parse_page
from tests.integration.daemon_helpers import in_process_settings
from tests.integration.kafka_helpers import create_topic, read_all
from tests.unit.fakes import page, records

_NOW = datetime.now(UTC)
SOURCE = Source("stream", format_timestamp(_NOW - timedelta(hours=2)), format_timestamp(_NOW))


def _columns(body: bytes, topic: str) -> EventColumns:
    """The page's events as the daemon builds them (framed with schema id 1)."""
    batch = build_batch(
        parse_page(body),
        committed=MarkTable(),
        encoder=EventEncoder(1),
        topics=Topics(events=topic, dlq=f"{topic}.dlq"),
        org_id="org-test",
        source=SOURCE,
    )
    return batch.events


@pytest.fixture
def sink_and_topic(
    bootstrap_servers: str, registry_url: str, admin: AdminClient, unique_name: str
) -> Iterator[tuple[TransactionalSink, str, str]]:
    settings = in_process_settings(bootstrap_servers, registry_url, unique_name)
    topic = f"{unique_name}.events"
    create_topic(admin, topic, partitions=3)
    create_topic(admin, f"{unique_name}.marks")
    sink = TransactionalSink(producer_config(settings, f"{unique_name}.tx"))
    sink.init()
    yield sink, topic, f"{unique_name}.marks"
    sink.close()


def test_a_commit_empties_the_columns_and_writes_every_event_once_in_order(
    bootstrap_servers: str, sink_and_topic: tuple[TransactionalSink, str, str]
) -> None:
    sink, topic, marks = sink_and_topic
    body = page(records(600))
    columns = _columns(body, topic)
    expected = list(zip(columns.keys, columns.values, strict=True))
    assert len(expected) == 600

    assert sink.commit([OutRecord(marks, b"page", b"1")], columns) == 601

    assert columns.keys == []
    assert columns.values == []
    assert columns.produced
    written = read_all(bootstrap_servers, topic)
    assert Counter((m.key(), m.value()) for m in written) == Counter(expected)
    # Page order within each partition (a key's legs stay in order).
    for partition in {m.partition() for m in written}:
        ours = [(m.key(), m.value()) for m in written if m.partition() == partition]
        assert ours == [kv for kv in expected if kv in set(ours)]
    assert [m.value() for m in read_all(bootstrap_servers, marks)] == [b"1"]

    # Given again (a bug), the spent columns are refused: an empty commit would have moved
    # the marks record past events that were never written.
    with pytest.raises(SpentColumnsError):
        sink.commit([OutRecord(marks, b"page", b"2")], columns)
    assert len(read_all(bootstrap_servers, topic)) == 600
    assert [m.value() for m in read_all(bootstrap_servers, marks)] == [b"1"]


def test_a_produce_failing_half_way_aborts_and_the_rebuilt_page_lands_once(
    bootstrap_servers: str, sink_and_topic: tuple[TransactionalSink, str, str]
) -> None:
    """librdkafka refuses a message over message.max.bytes at produce(): the first half of
    the page is then in an open transaction, which is aborted. The columns are spent; the page
    (what the task keeps: it fetches the window again) builds new ones, and those commit."""
    sink, topic, marks = sink_and_topic
    body = page(records(400))
    columns = _columns(body, topic)
    expected = Counter(zip(columns.keys, columns.values, strict=True))
    columns.keys.insert(200, b"too-large")
    columns.values.insert(200, b"x" * (2 * 1024 * 1024))

    with pytest.raises(KafkaError):
        sink.commit([OutRecord(marks, b"page", b"1")], columns)
    assert columns.produced
    with pytest.raises(SpentColumnsError):
        sink.commit([], columns)

    rebuilt = _columns(body, topic)
    assert sink.commit([OutRecord(marks, b"page", b"1")], rebuilt) == 401

    # Whatever of the first attempt reached the log was aborted (or purged before it was sent).
    committed = read_all(bootstrap_servers, topic)
    assert Counter((m.key(), m.value()) for m in committed) == expected
    assert [m.value() for m in read_all(bootstrap_servers, marks)] == [b"1"]
