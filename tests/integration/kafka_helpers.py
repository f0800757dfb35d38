"""Small helpers the integration tests share: create a topic, read a topic to its end."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def create_topic(
    admin: AdminClient, name: str, *, partitions: int = 1, config: dict[str, str] | None = None
) -> None:
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})]
    )
    for future in futures.values():
        future.result(timeout=30)


_SETTLING = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE}


def _high_watermark(consumer: Consumer, tp: TopicPartition, timeout: float = 30.0) -> int:
    """The partition's high watermark. A topic the daemon has just created (or a broker busy
    with many of them) answers "not leader" for a moment: that is retried, anything else is not."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return int(consumer.get_watermark_offsets(tp, timeout=10)[1])
        except KafkaException as exc:
            if exc.args[0].code() not in _SETTLING or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def read_all(
    bootstrap_servers: str,
    topic: str,
    *,
    isolation: str = "read_committed",
    timeout: float = 30.0,
) -> list[Message]:
    """Every message of ``topic`` up to its end (for read_committed: its last stable offset)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"test-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": isolation,
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=10)
        partitions = list(meta.topics[topic].partitions)
        ends: dict[int, int] = {}
        for p in partitions:
            ends[p] = _high_watermark(consumer, TopicPartition(topic, p))
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        messages: list[Message] = []
        done = {p for p, high in ends.items() if high == 0}
        deadline = time.monotonic() + timeout
        while len(done) < len(partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic}: partitions {set(ends) - done} not at end")
            msg = consumer.poll(0.5)
            if msg is None:
                # Transaction markers take offsets but are never delivered: check positions.
                for tp in consumer.position([TopicPartition(topic, p) for p in partitions]):
                    if tp.offset >= ends[tp.partition]:
                        done.add(tp.partition)
                continue
            if msg.error():
                if msg.error().code() == KafkaException._PARTITION_EOF:  # pragma: no cover
                    continue
                raise KafkaException(msg.error())
            messages.append(msg)
            if msg.offset() + 1 >= ends[msg.partition()]:
                done.add(msg.partition())
        return messages
    finally:
        consumer.close()
