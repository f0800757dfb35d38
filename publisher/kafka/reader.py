"""Reading a topic's partitions from given offsets to the ends they had when reading began.

Shared by state restore, the replay's index of published events and the demo.

The end is the **high watermark**, asked for with ``read_uncommitted`` (under ``read_committed``
librdkafka's watermark query answers the last stable offset, librdkafka#3428). A
``read_committed`` consumer stops at the last stable offset: the first offset of the oldest
transaction still open. Reading "to the end" a consumer sees would therefore miss every commit
made after a transaction that some other producer left open (a killed replay, another org's
daemon): restore would bring back an old cursor and old marks, and publish again what was
published (issue 10, item 6). So a partition is done only when the consumer passes the high
watermark; while an open transaction holds it back, :func:`drain` waits (the transaction ends by
commit, abort or its coordinator's timeout) and says so through ``on_blocked``.

Transaction markers take offsets but are never delivered, so the end is recognised by the
partition-EOF event's offset as well as by the last message's.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from publisher.errors import KafkaError

_PARTITION_EOF = -191
OnBlocked = Callable[[int, int, int, float], None]
"""(partition, stable offset reached, high watermark, seconds blocked so far)."""


def high_watermarks(config: dict[str, Any], topic: str, partitions: list[int]) -> dict[int, int]:
    """Each partition's high watermark, whatever transactions are open (read_uncommitted)."""
    probe = Consumer(
        {
            **config,
            "group.id": f"cdr-publisher-watermarks-{uuid.uuid4().hex}",
            "isolation.level": "read_uncommitted",
            "enable.auto.commit": False,
        }
    )
    try:
        return {
            p: probe.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
            for p in partitions
        }
    except KafkaException as exc:
        raise KafkaError(f"high watermarks of {topic!r}: {exc}", retriable=True) from exc
    finally:
        probe.close()


def end_offsets(consumer: Consumer, topic: str, partitions: list[int]) -> dict[int, int]:
    """The ends ``consumer`` itself can read to (the last stable offsets under read_committed)."""
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
    on_blocked: OnBlocked | None = None,
) -> Iterator[Message]:
    """Every message from ``starts[p]`` up to ``ends[p]`` of each partition, in offset order per
    partition. The consumer needs ``enable.partition.eof``. Raises KafkaError (``what`` names the
    job in the message), retriable when ``timeout`` passes first."""
    assigned = [TopicPartition(topic, p, o) for p, o in starts.items() if 0 <= o < ends[p]]
    pending = {tp.partition for tp in assigned}
    blocked: dict[int, tuple[float, int]] = {}  # partition -> (since, stable offset reached)
    try:
        consumer.assign(assigned)
        deadline = time.monotonic() + timeout
        while pending:
            now = time.monotonic()
            if now > deadline:
                held = ", ".join(
                    f"partition {p} held at offset {reached} for {now - since:.0f}s"
                    for p, (since, reached) in sorted(blocked.items())
                )
                raise KafkaError(
                    f"{what} {topic!r} did not finish in {timeout:.0f}s"
                    + (f" (an open transaction: {held})" if held else ""),
                    retriable=True,
                )
            for msg in consumer.consume(10000, 0.5):
                partition = msg.partition() or 0
                err = msg.error()
                if err is not None:
                    if err.code() != _PARTITION_EOF:
                        raise KafkaError(f"{what} {topic!r}: {err}", retriable=err.retriable())
                    reached = msg.offset() or 0
                    if reached >= ends.get(partition, 0):
                        pending.discard(partition)
                        blocked.pop(partition, None)
                    elif partition not in blocked:
                        blocked[partition] = (time.monotonic(), reached)
                    continue
                blocked.pop(partition, None)
                yield msg
                if (msg.offset() or 0) + 1 >= ends[partition]:
                    pending.discard(partition)
            if on_blocked is not None:
                now = time.monotonic()
                for partition, (since, reached) in blocked.items():
                    if partition in pending:
                        on_blocked(partition, reached, ends[partition], now - since)
    except KafkaException as exc:
        raise KafkaError(f"{what} {topic!r}: {exc}", retriable=True) from exc
