"""The consumer kit: read the events topic from a Python service, typed, at least once or
exactly once, and group legs into calls. See docs/consumers.md for recipes.

Public API::

    EventConsumer      read_committed consumer in a group; yields ConsumedEvent
    ConsumedEvent      a typed event (.event) and its topic, partition, offset, key, schema id
    CdrEvent           the typed event (envelope + .cdr: CdrFields, unknown fields kept)
    CdrFields          every known CDR field, generated from the field table like the schema
    EventDecoder       framed bytes -> (schema id, CdrEvent), by the writer's registered schema
    assemble_calls     events -> calls (pure; quiet period on report time, bounded memory)
    CallAssembler      the same, fed one event at a time
    Call               one call: legs in order, start, end, answered, direction, revision

At least once::

    with EventConsumer.from_settings(settings, group_id="billing") as consumer:
        for item in consumer.events():
            handle(item.event)          # committed after this returns, never before

Exactly once into Kafka (consume-transform-produce)::

    consumer = EventConsumer.from_settings(settings, group_id="enricher", transactional=True)
    producer.init_transactions()
    for batch in consumer.batches(max_events=500):
        producer.begin_transaction()
        for item in batch:
            producer.produce("enriched", key=item.key, value=transform(item.event))
        consumer.send_offsets_to_transaction(producer)
        try:
            producer.commit_transaction()
        except KafkaException:
            producer.abort_transaction()
            consumer.rewind()           # the batch comes again
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from publisher.consumer.client import ConsumedEvent, EventConsumer
from publisher.consumer.decoder import EventDecoder
from publisher.consumer.fields import CdrFields
from publisher.consumer.model import CdrEvent, EventSource

if TYPE_CHECKING:
    from publisher.calls import Call, CallAssembler, assemble_calls


def __getattr__(name: str) -> Any:
    # publisher.calls (pure, typed on CdrEvent) imports this package's model, so its names are
    # looked up on first use rather than at import: either module can be imported first.
    if name in ("Call", "CallAssembler", "assemble_calls"):
        import publisher.calls  # noqa: PLC0415

        return getattr(publisher.calls, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Call",
    "CallAssembler",
    "CdrEvent",
    "CdrFields",
    "ConsumedEvent",
    "EventConsumer",
    "EventDecoder",
    "EventSource",
    "assemble_calls",
]
