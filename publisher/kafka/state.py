"""The compacted state topic: what its records mean, and reading it back at start.

Keys (UTF-8) and values:
- ``cursor/<org>/<job>`` -> JSON ``{"cursor", "region_base_url", "seq", "committed_at"}``: where
  the job is, written in the same transaction as the events it covers.
- ``dedup/<org>/<job>/<hour>/<seq>`` -> packed 64-bit marks (see publisher.dedup) of the Report IDs
  that transaction ``seq`` published, made in ``hour`` (hours since the epoch). Expired hours are
  deleted with tombstones (null values), so compaction keeps the topic bounded.
- ``replay/<id>`` -> JSON progress of a replay.
Restore reads with ``read_committed``, so an aborted or in-doubt transaction is never seen.
"""

from __future__ import annotations

import uuid
from array import array
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaException

from publisher.dedup import MarkTable, unpack_marks
from publisher.errors import KafkaError
from publisher.kafka.reader import drain, end_offsets
from publisher.webex.record import format_timestamp, parse_timestamp

RESTORE_TIMEOUT_S = 120.0


def cursor_key(org: str, job: str) -> bytes:
    return f"cursor/{org}/{job}".encode()


def dedup_key(org: str, job: str, hour: int, seq: int) -> bytes:
    return f"dedup/{org}/{job}/{hour}/{seq}".encode()


def replay_key(replay_id: str) -> bytes:
    return f"replay/{replay_id}".encode()


@dataclass(frozen=True, slots=True)
class Cursor:
    position: datetime
    region_base_url: str | None
    seq: int
    committed_at: datetime

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "cursor": format_timestamp(self.position),
                "region_base_url": self.region_base_url,
                "seq": self.seq,
                "committed_at": format_timestamp(self.committed_at),
            }
        )

    @classmethod
    def decode(cls, value: bytes) -> Cursor:
        data = orjson.loads(value)
        return cls(
            position=parse_timestamp(data["cursor"]),
            region_base_url=data.get("region_base_url"),
            seq=int(data["seq"]),
            committed_at=parse_timestamp(data["committed_at"]),
        )


@dataclass
class JobState:
    """What one (org, job) knows after restore: cursor, dedup marks, and the keys behind them."""

    org: str
    job: str
    cursor: Cursor | None = None
    marks: MarkTable = field(default_factory=MarkTable)
    keys_by_hour: dict[int, list[bytes]] = field(default_factory=dict)
    replays: dict[str, dict[str, Any]] = field(default_factory=dict)
    records_read: int = 0

    @property
    def seq(self) -> int:
        return self.cursor.seq if self.cursor else 0


def apply_records(
    state: JobState, records: list[tuple[bytes, bytes | None]], *, oldest_hour: int
) -> None:
    """Fold state-topic records (in offset order) into ``state``. Pure.

    Marks are buffered per key and added at the end, so a tombstone that follows its key's data
    (compaction has not run yet) removes that data instead of leaving ghosts in the table.
    """
    dedup_prefix = f"dedup/{state.org}/{state.job}/".encode()
    cursor = cursor_key(state.org, state.job)
    pending: dict[bytes, tuple[int, array[int]]] = {}
    for key, value in records:
        state.records_read += 1
        if key == cursor:
            if value is not None:
                state.cursor = Cursor.decode(value)
        elif key.startswith(dedup_prefix):
            if value is None:
                pending.pop(key, None)
                continue
            hour = int(key[len(dedup_prefix) :].split(b"/", 1)[0])
            pending[key] = (hour, unpack_marks(value))
        elif key.startswith(b"replay/"):
            replay_id = key[len(b"replay/") :].decode()
            if value is None:
                state.replays.pop(replay_id, None)
            else:
                state.replays[replay_id] = orjson.loads(value)
    total = sum(len(marks) for _, marks in pending.values())
    state.marks = MarkTable(max(total, len(state.marks)))
    for key, (hour, marks) in pending.items():
        # Expired but not yet tombstoned: remember the key so the next commit deletes it.
        state.keys_by_hour.setdefault(hour, []).append(key)
        if hour >= oldest_hour:
            state.marks.add_many(marks, hour)


def read_topic(
    config: dict[str, Any], topic: str, timeout: float = RESTORE_TIMEOUT_S
) -> list[tuple[bytes, bytes | None]]:
    """Every committed (key, value) of ``topic`` from the start to its current end, in order."""
    consumer = Consumer({**config, "group.id": f"cdr-publisher-restore-{uuid.uuid4().hex}"})
    records: list[tuple[bytes, bytes | None]] = []
    try:
        meta = consumer.list_topics(topic, timeout=30)
        if meta.topics[topic].error is not None:
            raise KafkaError(f"state topic {topic!r}: {meta.topics[topic].error}", retriable=True)
        partitions = sorted(meta.topics[topic].partitions)
        ends = end_offsets(consumer, topic, partitions)
        starts = dict.fromkeys(partitions, 0)
        for msg in drain(consumer, topic, starts, ends, timeout=timeout, what="restoring"):
            key = msg.key()
            if key is not None:
                records.append((key, msg.value()))
    except KafkaException as exc:
        raise KafkaError(f"restoring {topic!r}: {exc}", retriable=True) from exc
    finally:
        consumer.close()
    return records
