"""Reading the compacted state topic back at start (I/O; what the records mean is in
:mod:`publisher.state.codec`).

Restore reads with ``read_committed`` up to the high watermark each partition had when the read
began, never just to the end a ``read_committed`` consumer sees (see :mod:`publisher.kafka.reader`):
an aborted or in-doubt transaction is never seen, and a commit made after someone else's open
transaction is never missed. Our own producers' open transactions are cleared before restore by
``init_transactions`` (it aborts what the previous owner of the ``transactional.id`` left); any
other is waited out, up to ``timeout``.
"""

from __future__ import annotations

import uuid
from typing import Any

from confluent_kafka import Consumer, KafkaException

from publisher.errors import KafkaError
from publisher.kafka.reader import OnBlocked, drain, high_watermarks

# A foreign transaction holds a read_committed reader back until it ends; the broker aborts one
# after the producer's transaction.timeout.ms, at most transaction.max.timeout.ms (15 min by
# default). A restore that waits longer is retried from the start, visibly degraded.
RESTORE_TIMEOUT_S = 16 * 60.0


def read_state(
    config: dict[str, Any],
    topic: str,
    *,
    partitions: list[int] | None = None,
    timeout: float = RESTORE_TIMEOUT_S,
    on_blocked: OnBlocked | None = None,
) -> list[tuple[bytes, bytes | None]]:
    """Every committed (key, value) of ``topic`` (or of its ``partitions``) from the start to
    the high watermark, in offset order per partition."""
    consumer = Consumer({**config, "group.id": f"cdr-publisher-restore-{uuid.uuid4().hex}"})
    records: list[tuple[bytes, bytes | None]] = []
    try:
        meta = consumer.list_topics(topic, timeout=30)
        described = meta.topics.get(topic)
        if described is None or described.error is not None:
            error = described.error if described is not None else "unknown topic"
            raise KafkaError(f"state topic {topic!r}: {error}", retriable=True)
        chosen = sorted(described.partitions) if partitions is None else sorted(partitions)
        ends = high_watermarks(config, topic, chosen)
        starts = dict.fromkeys(chosen, 0)
        for msg in drain(
            consumer, topic, starts, ends, timeout=timeout, what="restoring", on_blocked=on_blocked
        ):
            key = msg.key()
            if key is not None:
                records.append((key, msg.value()))
    except KafkaException as exc:
        raise KafkaError(f"restoring {topic!r}: {exc}", retriable=True) from exc
    finally:
        consumer.close()
    return records
