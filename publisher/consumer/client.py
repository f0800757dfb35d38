"""A read_committed consumer of the events topic that yields typed events.

Two ways to acknowledge, chosen when the consumer is made:

- **at least once** (default): an event counts as processed once the loop body that received it
  returns, i.e. when the next event is asked for. Processed offsets are committed every
  ``commit_every`` events, on :meth:`EventConsumer.commit`, when partitions are revoked and on
  :meth:`EventConsumer.close`. A crash re-delivers at most what was processed since the last commit,
  never skips an event.
- **exactly once** (``transactional=True``), for services that write their results to Kafka: the
  consumer never commits by itself; call :meth:`EventConsumer.send_offsets_to_transaction` inside
  your producer's transaction, before ``commit_transaction()``, so the results and the consumed
  position commit together (Kafka's consume-transform-produce, KIP-98/KIP-447). After an aborted
  transaction call :meth:`EventConsumer.rewind`.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka import KafkaError as RdKafkaError

from publisher.consumer.decoder import EventDecoder
from publisher.consumer.model import CdrEvent
from publisher.errors import DecodeError, KafkaError

log = logging.getLogger("publisher.consumer")
RDKAFKA_LOG = logging.getLogger("publisher.consumer.rdkafka")
"""Where librdkafka's own log lines go (configure or silence it like any Python logger)."""


@dataclass(frozen=True, slots=True)
class ConsumedEvent:
    """A typed event and where it was read from."""

    event: CdrEvent
    topic: str
    partition: int
    offset: int
    key: bytes | None
    schema_id: int


class EventConsumer:
    """Consumes events topics in a consumer group, decoding each value through the registry.

    ``kafka_config`` holds librdkafka properties (servers, security); the consumer adds
    ``group.id``, ``isolation.level=read_committed`` and its own offset handling.
    ``commit=False`` never commits (a one-off reader such as ``cdr-publisher calls``).
    Use as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        kafka_config: dict[str, Any],
        registry_config: dict[str, Any],
        *,
        topics: Sequence[str],
        group_id: str,
        from_beginning: bool = True,
        transactional: bool = False,
        validate: bool = True,
        commit_every: int = 1000,
        commit: bool = True,
        on_error: Callable[[RdKafkaError], None] | None = None,
    ) -> None:
        self._transactional = transactional
        self._reset = OFFSET_BEGINNING if from_beginning else OFFSET_END
        self._commit_every = commit_every
        self._commit = commit
        self._on_error = on_error or _log_error
        self._processed: dict[tuple[str, int], int] = {}
        self._since_commit = 0
        self._fatal: RdKafkaError | None = None
        config = {
            "logger": RDKAFKA_LOG,
            **kafka_config,
            "group.id": group_id,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": False,
            "auto.offset.reset": "earliest" if from_beginning else "latest",
            "error_cb": self._error,
        }
        self._decoder = EventDecoder(registry_config, validate=validate)
        self._consumer = Consumer(config)
        self._consumer.subscribe(list(topics), on_revoke=self._revoked)

    @classmethod
    def from_settings(
        cls, settings: Any, *, group_id: str, topic: str | None = None, **options: Any
    ) -> EventConsumer:
        """A consumer of ``topic`` (default: the EVENTS_TOPIC setting) with the servers, security
        and registry of a :class:`publisher.settings.Settings`."""
        from publisher.kafka.config import client_config, registry_config  # noqa: PLC0415

        kafka = {k: v for k, v in client_config(settings).items() if k != "logger"}
        return cls(
            kafka,
            registry_config(settings),
            topics=[topic or settings.events_topic],
            group_id=group_id,
            **options,
        )

    # --- reading -------------------------------------------------------------------------------

    def events(
        self, *, max_events: int | None = None, idle_timeout: float | None = None
    ) -> Iterator[ConsumedEvent]:
        """Yield events as they arrive; stop after ``max_events`` or ``idle_timeout`` seconds
        without one (default: never). In at-least-once mode an event is processed, and its
        offset may be committed, once the loop body returns."""
        yielded = 0
        last = time.monotonic()
        while max_events is None or yielded < max_events:
            msg = self._poll(0.5)
            if msg is None:
                if idle_timeout is not None and time.monotonic() - last > idle_timeout:
                    return
                continue
            last = time.monotonic()
            item = self._decode(msg)
            if self._transactional:
                # What is handed out goes into the caller's open transaction, offsets with it.
                self._processed_up_to(item)
                yield item
            else:
                yield item
                self._processed_up_to(item)
            yielded += 1

    def batches(
        self, *, max_events: int = 500, timeout: float = 1.0, idle_timeout: float | None = None
    ) -> Iterator[list[ConsumedEvent]]:
        """Yield lists of up to ``max_events`` events (whatever arrived within ``timeout``);
        stop after ``idle_timeout`` seconds without any. At least once, a batch counts as
        processed when the next one is asked for; exactly once, as soon as it is handed out (its
        offsets go into the transaction the caller commits or aborts)."""
        last = time.monotonic()
        while True:
            self._raise_fatal()
            try:
                messages = self._consumer.consume(max_events, timeout)
            except KafkaException as exc:
                raise KafkaError(f"consuming: {exc}", retriable=True) from exc
            batch = [self._decode(m) for m in messages if not self._skip(m)]
            if not batch:
                if idle_timeout is not None and time.monotonic() - last > idle_timeout:
                    return
                continue
            last = time.monotonic()
            if self._transactional:
                for item in batch:
                    self._processed_up_to(item)
                yield batch
            else:
                yield batch
                for item in batch:
                    self._processed_up_to(item)

    # --- acknowledging -------------------------------------------------------------------------

    def commit(self) -> None:
        """Commit the offsets of every processed event now (at-least-once mode)."""
        if self._transactional:
            raise RuntimeError("a transactional consumer commits through its producer")
        offsets = self._offsets() if self._commit else []
        if not offsets:
            return
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            raise KafkaError(f"committing offsets: {exc}", retriable=True) from exc
        self._since_commit = 0

    def send_offsets_to_transaction(self, producer: Producer, timeout: float = 30.0) -> None:
        """Put the processed offsets into ``producer``'s open transaction (exactly-once mode):
        they count as committed only if that transaction commits."""
        offsets = self._offsets()
        if not offsets:
            return
        producer.send_offsets_to_transaction(
            offsets, self._consumer.consumer_group_metadata(), timeout
        )

    def rewind(self) -> None:
        """After an aborted transaction: forget what was processed and go back to the group's
        committed offsets, so the events of the aborted transaction come again."""
        self._processed.clear()
        assigned = self._consumer.assignment()
        if not assigned:
            return
        for tp in self._consumer.committed(assigned, timeout=30):
            # No commit yet: start over where auto.offset.reset says.
            offset = tp.offset if tp.offset >= 0 else self._reset
            self._consumer.seek(TopicPartition(tp.topic, tp.partition, offset))

    def close(self) -> None:
        """Commit what was processed (at-least-once mode) and leave the group."""
        try:
            if not self._transactional:
                self.commit()
        finally:
            self._consumer.close()
            self._decoder.close()

    def __enter__(self) -> EventConsumer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- internals -----------------------------------------------------------------------------

    def _poll(self, timeout: float) -> Message | None:
        self._raise_fatal()
        try:
            msg = self._consumer.poll(timeout)
        except KafkaException as exc:
            raise KafkaError(f"consuming: {exc}", retriable=True) from exc
        if msg is None or self._skip(msg):
            return None
        return msg

    def _skip(self, msg: Message) -> bool:
        err = msg.error()
        if err is None:
            return False
        if err.fatal() or not err.retriable():
            raise KafkaError(f"consuming {msg.topic()}: {err.str()}", retriable=False)
        self._on_error(err)
        return True

    def _decode(self, msg: Message) -> ConsumedEvent:
        topic, partition, offset = msg.topic() or "", msg.partition() or 0, msg.offset() or 0
        try:
            schema_id, event = self._decoder.decode(msg.value() or b"")
        except DecodeError as exc:
            raise DecodeError(f"{topic}[{partition}]@{offset}: {exc.message}") from None
        return ConsumedEvent(event, topic, partition, offset, msg.key(), schema_id)

    def _processed_up_to(self, item: ConsumedEvent) -> None:
        self._processed[(item.topic, item.partition)] = item.offset + 1
        self._since_commit += 1
        if not self._transactional and self._since_commit >= self._commit_every:
            self.commit()

    def _offsets(self) -> list[TopicPartition]:
        return [TopicPartition(t, p, o) for (t, p), o in sorted(self._processed.items())]

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # The next owner starts from the committed offset: give it what we processed.
        gone = {(tp.topic, tp.partition) for tp in partitions}
        if not self._transactional and self._commit:
            mine = [tp for tp in self._offsets() if (tp.topic, tp.partition) in gone]
            if mine:
                try:
                    consumer.commit(offsets=mine, asynchronous=False)
                except KafkaException as exc:
                    log.warning("committing offsets of revoked partitions: %s", exc)
        for key in gone:
            self._processed.pop(key, None)

    def _error(self, err: RdKafkaError) -> None:
        if err.fatal():
            self._fatal = err
        self._on_error(err)

    def _raise_fatal(self) -> None:
        if self._fatal is not None:
            raise KafkaError(f"kafka consumer: {self._fatal.str()}", retriable=False)


def _log_error(err: RdKafkaError) -> None:
    log.warning("kafka: %s", err.str())


def unique_group(prefix: str) -> str:
    """A group id no one else uses (for one-off readers such as the CLI)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
