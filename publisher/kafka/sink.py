"""The transactional producer: one batch (events, DLQ entries, state records) = one transaction.

Error handling follows librdkafka's transactional API contract:
1. ``init_transactions()`` first: it fences an older instance with the same ``transactional.id``
   and aborts whatever that instance left open.
2. A retriable error from ``commit_transaction`` means the outcome is unknown: call it again (never
   assume; librdkafka does not implement KIP-890).
3. An error that requires abort: ``abort_transaction()`` and tell the caller to go back to its last
   committed state (:class:`KafkaError` with ``retriable=True``).
4. Fenced: :class:`FencedError` (:mod:`publisher.kafka.owner` decides whether another instance
   owns the work now); other fatal errors: :class:`ProducerLostError` (make a new producer).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import KafkaException, Producer

from publisher import metrics
from publisher.errors import FencedError, KafkaError, ProducerLostError
from publisher.kafka.config import RDKAFKA_LOG

log = logging.getLogger("publisher.kafka")

Headers = list[tuple[str, bytes]]
_ProduceHeaders = list[tuple[str, str | bytes | None]]
# The epoch of our transactional.id moved on: another instance took over, or the coordinator
# aborted a transaction of ours that outlived transaction.timeout.ms (it bumps the epoch too, and
# the broker answers both with PRODUCER_FENCED: KAFKA-9911; the TRANSACTION_TIMED_OUT code of
# KAFKA-9910 was never merged). publisher.kafka.owner tells the two apart.
_FENCING_CODES = frozenset({RdKafkaError._FENCED, RdKafkaError.PRODUCER_FENCED})


@dataclass(frozen=True, slots=True)
class OutRecord:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers | None = None
    partition: int | None = None
    """None: the partitioner picks by key (murmur2, as Java's); state records name their slot."""


@dataclass(slots=True)
class EventColumns:
    """Many messages to one topic with one header list, as parallel key and value lists: a
    page's events, produced without an object per event.

    Producing them empties the lists (see :meth:`TransactionalSink.commit`): columns are
    produced once. A transaction that fails is aborted, and its task fetches the window again
    and builds new columns (publisher.task); producing spent columns raises, since an empty
    commit would move the cursor and the marks past events never written."""

    topic: str
    keys: list[bytes]
    values: list[bytes]
    headers: Headers | None
    produced: bool = False
    """Set when production began: the lists are being (or have been) emptied."""


class SpentColumnsError(RuntimeError):
    """Columns produced before were given to a transaction again (a bug: rebuild them)."""


def _check_unspent(events: EventColumns) -> None:
    if events.produced:
        raise SpentColumnsError(
            f"events to {events.topic!r} were produced before (the lists are emptied as they "
            "are): build them again from the page"
        )
    if len(events.keys) != len(events.values):
        raise ValueError(f"{len(events.keys)} keys for {len(events.values)} values")


class TransactionalSink:
    """Commits batches atomically; the caller never sees a half-written batch."""

    def __init__(
        self,
        config: dict[str, Any],
        *,
        op_timeout_s: float = 30.0,
        commit_deadline_s: float = 300.0,
        sleep: Callable[[float], None] = time.sleep,
        on_trouble: Callable[[str], None] | None = None,
        pause_in_transaction: Callable[[], float] | None = None,
    ) -> None:
        self._producer = Producer({**config, "error_cb": self._on_error})
        self._transactional_id = str(config["transactional.id"])
        # Fault injection for tests (CDR_PUBLISHER_FAULT_TRANSACTION_PAUSE_*): seconds to hold
        # the transaction open after producing, before committing.
        self._pause_in_transaction = pause_in_transaction
        self._began = 0.0
        self._op_timeout = op_timeout_s
        self._commit_deadline = commit_deadline_s
        self._sleep = sleep
        self._on_trouble = on_trouble or (lambda _reason: None)
        self._in_transaction = False
        self._abort_pending = False
        self._lost = False

    def _on_error(self, err: RdKafkaError) -> None:
        # Broker-down and similar are reported here and retried by librdkafka itself; the
        # throttled rdkafka logger keeps an outage to a line a minute.
        RDKAFKA_LOG.warning("kafka client: %s", err.name(), extra={"detail": err.str()})
        if err.code() == RdKafkaError._ALL_BROKERS_DOWN:
            self._on_trouble(f"kafka: all brokers down ({err.str()})")

    def _translate(self, exc: KafkaException, doing: str) -> KafkaError | FencedError:
        err: RdKafkaError = exc.args[0]
        if err.code() in _FENCING_CODES:
            age = time.monotonic() - self._began if self._in_transaction else None
            return FencedError(
                f"{doing}: transactional.id {self._transactional_id!r} was fenced "
                f"({err.name()}): another instance took it over, or a transaction of ours "
                "outlived transaction.timeout.ms",
                transaction_age_s=age,
            )
        if err.code() == RdKafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
            return KafkaError(
                f"{doing}: not authorised to use transactional.id {self._transactional_id!r} "
                "(grant this principal WRITE and DESCRIBE on it)",
                retriable=False,
            )
        if err.fatal():
            self._lost = True
            return ProducerLostError(f"{doing}: fatal producer error {err.name()}: {err.str()}")
        return KafkaError(
            f"{doing}: {err.str()}", retriable=err.retriable() or err.txn_requires_abort()
        )

    def init(self, retry_until: float | None = None) -> None:
        """init_transactions, retried while the broker is unreachable (until ``retry_until``)."""
        while True:
            try:
                self._producer.init_transactions(self._op_timeout)
                return
            except KafkaException as exc:
                error = self._translate(exc, "init_transactions")
                if isinstance(error, FencedError | ProducerLostError) or not error.retriable:
                    raise error from exc
                if retry_until is not None and time.monotonic() > retry_until:
                    raise error from exc
                log.warning("init_transactions failed, retrying: %s", error)
                self._on_trouble(f"kafka: {error}")
                self._sleep(2.0)

    def commit(self, records: Iterable[OutRecord], events: EventColumns | None = None) -> int:
        """Write ``events`` and ``records`` in one transaction; returns how many. Raises
        KafkaError/FencedError."""
        if events is not None:
            # Checked before the transaction begins: an error raised inside it would leave it open.
            _check_unspent(events)
        started = time.monotonic()
        count = 0
        try:
            if self._abort_pending:
                self._finish_abort()
            self._producer.begin_transaction()
            self._in_transaction = True
            self._began = started
            if events is not None:
                count += self._produce_columns(events)
            for record in records:
                self._produce(record)
                count += 1
            if self._pause_in_transaction is not None:
                pause = self._pause_in_transaction()
                if pause > 0:
                    self._producer.flush(self._op_timeout)
                    log.warning("fault injection: holding the transaction open %.1fs", pause)
                    self._sleep(pause)
            self._commit_with_retries()
        except KafkaException as exc:
            error = self._translate(exc, "transaction")
            if isinstance(error, FencedError | ProducerLostError):
                raise error from exc
            self.abort()
            raise error from exc
        metrics.COMMIT_LATENCY.observe(time.monotonic() - started)
        metrics.LAST_COMMIT.set(time.time())
        return count

    def _produce(self, record: OutRecord) -> None:
        while True:
            try:
                self._producer.produce(
                    record.topic,
                    value=record.value,
                    key=record.key,
                    headers=cast("_ProduceHeaders | None", record.headers),
                    partition=-1 if record.partition is None else record.partition,
                )
                return
            except BufferError:
                # The local queue is full: let librdkafka send, then try again.
                self._producer.poll(0.1)

    def _produce_columns(self, events: EventColumns) -> int:
        """Produce ``events`` in order, emptying them as it goes. produce() copies each message
        (confluent-kafka passes RD_KAFKA_MSG_F_COPY to rd_kafka_producev), so once a message is
        queued our bytes of it are garbage: freed at once, the 16 MB of a 5,000-record page
        are not held twice (ours and librdkafka's) until the commit, and librdkafka's copies
        reuse the blocks ours leave."""
        keys, values = events.keys, events.values
        count = len(values)
        events.produced = True
        produce, topic, poll = self._producer.produce, events.topic, self._producer.poll
        headers = cast("_ProduceHeaders | None", events.headers)
        # Popped from the end of the reversed lists: page order, each pop O(1).
        keys.reverse()
        values.reverse()
        while values:
            value, key = values.pop(), keys.pop()
            while True:
                try:
                    produce(topic, value, key, headers=headers)
                    break
                except BufferError:
                    poll(0.1)
        return count

    def _commit_with_retries(self) -> None:
        deadline = time.monotonic() + self._commit_deadline
        delay = 0.5
        while True:
            try:
                self._producer.commit_transaction(self._op_timeout)
                self._in_transaction = False
                return
            except KafkaException as exc:
                err: RdKafkaError = exc.args[0]
                if not err.retriable() or time.monotonic() > deadline:
                    raise
                # Outcome unknown (e.g. broker away): the same commit is asked again, so the
                # transaction ends committed exactly once or aborted as a whole.
                log.warning("commit outcome unknown (%s); retrying the commit", err.str())
                self._on_trouble(f"kafka: commit retrying ({err.str()})")
                self._sleep(delay)
                delay = min(delay * 2, 10.0)

    def abort(self) -> None:
        """Abort the open transaction. An abort that times out (broker away) goes on inside
        librdkafka, which refuses any other transactional call until ``abort_transaction`` is
        called again and completes (librdkafka#4054: the calls resume after a time-out); so it
        is remembered and finished before the next transaction begins."""
        if self._lost or not (self._in_transaction or self._abort_pending):
            self._in_transaction = False
            return
        try:
            self._producer.abort_transaction(self._op_timeout)
            self._abort_pending = False
        except KafkaException as exc:
            error = self._translate(exc, "abort_transaction")
            if isinstance(error, FencedError | ProducerLostError):
                # Only a new producer mends this (e.g. INVALID_TXN_STATE after the broker came
                # back): the caller makes one, and the abort is nothing to finish any more.
                self._abort_pending = False
                raise error from exc
            self._abort_pending = error.retriable
            log.warning("abort failed: %s", error)
        finally:
            self._in_transaction = False

    def _finish_abort(self) -> None:
        """Complete an abort that timed out earlier; retriable KafkaError while it cannot."""
        self.abort()
        if self._abort_pending:
            raise KafkaError("the previous transaction's abort is not complete yet", retriable=True)

    def close(self) -> None:
        """Abort an open transaction and flush; never raises (it runs on the way out, where an
        error would hide the one that brought us here)."""
        try:
            self.abort()
            if not self._lost:
                self._producer.flush(5)
        except (KafkaException, FencedError, KafkaError) as exc:
            log.warning("closing the producer: %s", exc)
