"""The consumer kit against a topic the real daemon published: typed events, at least once,
exactly once through a transaction, and every registered schema version."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from publisher.consumer import CdrEvent, ConsumedEvent, EventConsumer
from publisher.event_schema import event_schema, schema_text
from publisher.events import EventEncoder, Source, build_event
from publisher.registry import ensure_event_schema
from publisher.webex.record import Cdr, parse_record
from tests.integration.kafka_helpers import create_topic, read_all
from tests.integration.published import Published

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples.json"


def _consumer(published: Published, group: str, **options: object) -> EventConsumer:
    env = published.env
    return EventConsumer(
        {"bootstrap.servers": env.bootstrap_servers},
        {"url": env.registry_url, "timeout": 30},
        topics=[env.events_topic],
        group_id=group,
        **options,  # type: ignore[arg-type]
    )


def _ids(published: Published) -> list[str]:
    return [json.loads((m.value() or b"")[5:])["event_id"] for m in published.events]


def test_every_published_event_comes_out_typed(published: Published) -> None:
    """A consumer group reads every committed event once, each a CdrEvent with typed fields,
    decoded by the schema id in its frame."""
    with _consumer(published, f"kit-{uuid.uuid4().hex[:6]}") as consumer:
        items = list(consumer.events(idle_timeout=8))

    assert sorted(i.event.event_id for i in items) == sorted(_ids(published))
    assert all(isinstance(i.event, CdrEvent) for i in items)
    assert {i.schema_id for i in items} == {
        int.from_bytes((m.value() or b"")[1:5], "big") for m in published.events
    }
    with_start = [i for i in items if i.event.cdr.start_time is not None]
    assert with_start
    assert with_start[0].event.cdr.start_time.tzinfo is not None  # type: ignore[union-attr]
    assert any(i.event.unknown_fields for i in items), "the simulator's unknown keys were lost"


def test_at_least_once_resumes_after_the_last_processed_event(published: Published) -> None:
    """A consumer whose processing fails on its 51st event commits the 50 it processed; the next
    member of the group starts right after them: the failed event comes again, nothing is lost."""
    group = f"kit-alo-{uuid.uuid4().hex[:6]}"
    processed: list[str] = []
    failed: str | None = None
    with (  # noqa: PT012 - the failure must happen inside the consumer's loop
        pytest.raises(RuntimeError, match="processing failed"),
        _consumer(published, group) as first,
    ):
        for item in first.events():
            if len(processed) == 50:
                failed = item.event.event_id
                raise RuntimeError("processing failed")
            processed.append(item.event.event_id)
    with _consumer(published, group) as second:
        rest = [i.event.event_id for i in second.events(idle_timeout=8)]

    assert failed in rest
    assert not set(processed) & set(rest)
    assert sorted(processed + rest) == sorted(_ids(published))


def test_exactly_once_hand_off_survives_an_aborted_transaction(
    published: Published, admin: AdminClient, unique_name: str
) -> None:
    """Consume-transform-produce: outputs and consumed offsets commit in one transaction; a batch
    whose transaction aborts comes again after rewind(); the output holds each event once."""
    env = published.env
    out_topic = f"{unique_name}.out"
    create_topic(admin, out_topic, partitions=3)
    group = f"kit-eos-{uuid.uuid4().hex[:6]}"
    producer = Producer(
        {"bootstrap.servers": env.bootstrap_servers, "transactional.id": f"{unique_name}.tx"}
    )
    producer.init_transactions(30)
    aborted = 0
    with _consumer(published, group, transactional=True) as consumer:
        for batch in consumer.batches(max_events=60, idle_timeout=8):
            producer.begin_transaction()
            for item in batch:
                producer.produce(out_topic, key=item.key, value=item.event.event_id.encode())
            consumer.send_offsets_to_transaction(producer)
            if aborted == 0:
                producer.abort_transaction(30)  # e.g. a downstream failure mid-batch
                consumer.rewind()
                aborted += 1
                continue
            producer.commit_transaction(30)
        group_offsets = _committed(env.bootstrap_servers, group, env.events_topic)

    outputs = [m.value().decode() for m in read_all(env.bootstrap_servers, out_topic)]  # type: ignore[union-attr]
    assert aborted == 1
    assert sorted(outputs) == sorted(_ids(published))
    ends = {}
    for msg in published.events:
        ends[msg.partition()] = max(ends.get(msg.partition(), 0), msg.offset() + 1)
    for partition, end in ends.items():
        assert group_offsets[partition] >= end


def _committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        found = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=30)
        return {tp.partition: tp.offset for tp in found}
    finally:
        consumer.close()


def test_events_of_every_registered_schema_version_decode(
    bootstrap_servers: str, registry_url: str, admin: AdminClient, unique_name: str
) -> None:
    """Events framed with two registered versions (the second adds a field) both decode; the
    field this consumer's model does not know is kept."""
    registry = {"url": registry_url, "timeout": 30}
    newer = copy.deepcopy(event_schema())
    newer["properties"]["cdr"]["properties"]["added_later"] = {"type": ["string", "null"]}
    old_id = ensure_event_schema(registry, unique_name, auto_register=True)
    new_id = ensure_event_schema(
        registry, unique_name, auto_register=True, schema=schema_text(newer)
    )
    raw = json.loads(SAMPLES.read_text())["items"][0]
    cdr = parse_record(raw)
    assert isinstance(cdr, Cdr)
    source = Source("stream", "2026-11-28T10:00:00.000Z", "2026-11-28T11:00:00.000Z")
    old_event = build_event(cdr, org_id="o", source=source, replay_id=None)
    new_event = copy.deepcopy(old_event)
    new_event["event_id"] = "second"
    new_event["cdr"]["added_later"] = "value"
    create_topic(admin, unique_name)
    producer = Producer({"bootstrap.servers": bootstrap_servers})
    producer.produce(unique_name, key=b"k", value=EventEncoder(old_id).encode(old_event))
    producer.produce(unique_name, key=b"k", value=EventEncoder(new_id, newer).encode(new_event))
    producer.flush(30)

    with EventConsumer(
        {"bootstrap.servers": bootstrap_servers},
        registry,
        topics=[unique_name],
        group_id=f"kit-v-{uuid.uuid4().hex[:6]}",
    ) as consumer:
        items: list[ConsumedEvent] = list(consumer.events(max_events=2, idle_timeout=20))

    assert [i.schema_id for i in items] == [old_id, new_id]
    assert items[1].event.cdr.model_extra == {"added_later": "value"}
    assert items[0].event.cdr.model_extra == {}
