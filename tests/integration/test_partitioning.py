"""Events sit where a Java producer would put them: Kafka's murmur2 of the key, not CRC32."""

from __future__ import annotations

from collections import Counter

from publisher.kafka.partitioning import partition_for_key
from tests.integration.published import Published


def test_every_event_is_in_javas_partition_for_its_key(published: Published) -> None:
    """For every event the daemon published, its partition is Java's
    toPositive(murmur2(key)) % partitions, so Java consumers co-partition by Correlation ID."""
    wrong = []
    for msg in published.events:
        key = msg.key()
        assert key, "an event without a key"
        if msg.partition() != partition_for_key(key, published.partitions):
            wrong.append((key, msg.partition()))
    used = Counter(msg.partition() for msg in published.events)

    assert not wrong, f"{len(wrong)} of {len(published.events)} events off Java's partition"
    # Not a degenerate topic: the keys spread over (nearly) every partition.
    assert len(used) >= published.partitions - 1, used
