"""Reading a topic's partitions from given offsets to the ends they had when reading began.

Shared by state restore, the replay's index of published events and the demo. With
``read_committed`` the end is reached at the last stable offset: transaction markers take offsets
but are never delivered, so the end is also recognised by the partition-EOF event.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from publisher.errors import KafkaError

_PARTITION_EOF = -191


def end_offsets(consumer: Consumer, topic: str, partitions: list[int]) -> dict[int, int]:
    return {
        p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
        for p in partitions
    }


def drain(
    consumer: Consumer,
    topic: str,
    starts: dict[int, int],
    ends: dict[int, int],
    *,
    timeout: float,
    what: str,
) -> Iterator[Message]:
    """Every message from ``starts[p]`` up to ``ends[p]`` of each partition, in offset order per
    partition. The consumer needs ``enable.partition.eof``. Raises KafkaError (``what`` names the
    job in the message)."""
    assigned = [TopicPartition(topic, p, o) for p, o in starts.items() if 0 <= o < ends[p]]
    pending = {tp.partition for tp in assigned}
    try:
        consumer.assign(assigned)
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise KafkaError(
                    f"{what} {topic!r} did not finish in {timeout:.0f}s", retriable=True
                )
            for msg in consumer.consume(10000, 0.5):
                partition = msg.partition() or 0
                err = msg.error()
                if err is not None:
                    if err.code() == _PARTITION_EOF:
                        pending.discard(partition)
                        continue
                    raise KafkaError(f"{what} {topic!r}: {err}", retriable=err.retriable())
                yield msg
                if (msg.offset() or 0) + 1 >= ends[partition]:
                    pending.discard(partition)
    except KafkaException as exc:
        raise KafkaError(f"{what} {topic!r}: {exc}", retriable=True) from exc
