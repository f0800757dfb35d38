"""Java's default partition for a key: ``toPositive(murmur2(key)) % partitions``. Pure.

A port of Kafka's ``Utils.murmur2`` and ``Utils.toPositive``
(apache/kafka ``clients/src/main/java/org/apache/kafka/common/utils/Utils.java``) as used by
``BuiltInPartitioner.partitionForKey`` (``clients/.../producer/internals/BuiltInPartitioner.java``),
the Java producer's choice for a keyed record. librdkafka's ``partitioner=murmur2_random`` is the
same function, which is what our producers use, so this module says where an event lands (and, for
many orgs, which slot ``murmur2(org id) % P`` owns an org) without asking a broker.
"""

from __future__ import annotations

_MASK = 0xFFFFFFFF
_SEED = 0x9747B28C
_M = 0x5BD1E995
_R = 24


def murmur2(data: bytes) -> int:
    """Kafka's 32-bit murmur2 of ``data``, as the signed Java ``int`` it returns."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    tail = length & ~3
    for i in range(0, tail, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> _R
        k = (k * _M) & _MASK
        h = (h * _M) & _MASK
        h ^= k
    rest = length & 3
    # Java's switch falls through from case 3 to case 1.
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def to_positive(number: int) -> int:
    """Java's ``Utils.toPositive``: the sign bit cleared (not ``abs``: ``MIN_VALUE`` maps to 0)."""
    return number & 0x7FFFFFFF


def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition a Java producer (and librdkafka's ``murmur2_random``) picks for ``key``."""
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, got {partitions}")
    return to_positive(murmur2(key)) % partitions


def slot_of(org_id: str, partitions: int) -> int:
    """The slot (state partition) of ``org_id``: Kafka's default partition of the org id."""
    return partition_for_key(org_id.encode(), partitions)
