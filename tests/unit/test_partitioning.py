"""Kafka's murmur2 partitioning, checked against the vectors of Kafka's own tests."""

from __future__ import annotations

import os

import pytest

from publisher.kafka.partitioning import murmur2, partition_for_key, to_positive

# apache/kafka clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java, testMurmur2.
KAFKA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("data", "expected"), KAFKA_VECTORS.items())
def test_murmur2_matches_kafkas_test_vectors(data: bytes, expected: int) -> None:
    """Every vector of Kafka's UtilsTest.testMurmur2 hashes to the same signed int."""
    assert murmur2(data) == expected


def test_murmur2_covers_every_tail_length_and_stays_a_java_int() -> None:
    """Inputs of length 0..8 (each tail case) hash to values inside Java's int range."""
    for length in range(9):
        value = murmur2(bytes(range(1, length + 1)))
        assert -(2**31) <= value < 2**31


def test_to_positive_clears_the_sign_bit_like_java() -> None:
    """toPositive is `& 0x7fffffff`: MIN_VALUE becomes 0 and -1 becomes MAX_VALUE (not abs)."""
    assert to_positive(-(2**31)) == 0
    assert to_positive(-1) == 2**31 - 1
    assert to_positive(5) == 5


def test_partition_for_key_is_java_default_partitioner() -> None:
    """partition = toPositive(murmur2(key)) % n, e.g. 'foobar' over 6 partitions."""
    assert partition_for_key(b"foobar", 6) == (-790332482 & 0x7FFFFFFF) % 6
    assert all(0 <= partition_for_key(k, 7) < 7 for k in KAFKA_VECTORS)


def test_partition_for_key_refuses_no_partitions() -> None:
    """A topic has at least one partition; zero is a caller's bug, not a partition."""
    with pytest.raises(ValueError, match="at least 1"):
        partition_for_key(b"k", 0)


def test_every_producer_of_ours_partitions_with_murmur2(monkeypatch: pytest.MonkeyPatch) -> None:
    """producer_config (events, DLQ, state, replays) asks librdkafka for Java's partitioner;
    KAFKA_EXTRA can still override it."""
    from publisher.kafka.config import producer_config
    from publisher.settings import load_settings

    for key in [k for k in os.environ if k.startswith("CDR_PUBLISHER_")]:
        monkeypatch.delenv(key)
    assert producer_config(load_settings(), "tx")["partitioner"] == "murmur2_random"

    monkeypatch.setenv("CDR_PUBLISHER_KAFKA_EXTRA", '{"partitioner": "consistent_random"}')
    assert producer_config(load_settings(), "tx")["partitioner"] == "consistent_random"
