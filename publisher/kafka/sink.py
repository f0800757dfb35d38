"""The transactional producer: one batch (events, DLQ entries, state records) = one transaction.

Error handling follows librdkafka's transactional API contract:
1. ``init_transactions()`` first: it fences an older instance with the same ``transactional.id``
   and aborts whatever that instance left open.
2. A retriable error from ``commit_transaction`` means the outcome is unknown: call it again (never
   assume; librdkafka does not implement KIP-890).
3. An error that requires abort: ``abort_transaction()`` and tell the caller to go back to its last
   committed state (:class:`KafkaError` with ``retriable=True``).
4. Fenced or fatal: :class:`FencedError`; another instance owns this work now.
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
# Another instance took over (or we may not use the id): stop. Other fatal errors (e.g. an epoch
# bumped because our transaction timed out while the broker was away) only cost this producer.
_FENCING_CODES = frozenset(
    {
        RdKafkaError._FENCED,
        RdKafkaError.PRODUCER_FENCED,
        RdKafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    }
)


@dataclass(frozen=True, slots=True)
class OutRecord:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers | None = None


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
    ) -> None:
        self._producer = Producer({**config, "error_cb": self._on_error})
        self._transactional_id = str(config["transactional.id"])
        self._op_timeout = op_timeout_s
        self._commit_deadline = commit_deadline_s
        self._sleep = sleep
        self._on_trouble = on_trouble or (lambda _reason: None)
        self._in_transaction = False
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
            return FencedError(
                f"{doing}: transactional.id {self._transactional_id!r} was fenced "
                f"({err.name()}); another instance owns this work now"
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

    def commit(self, records: Iterable[OutRecord]) -> int:
        """Write ``records`` in one transaction; returns how many. Raises KafkaError/FencedError."""
        started = time.monotonic()
        count = 0
        try:
            self._producer.begin_transaction()
            self._in_transaction = True
            for record in records:
                self._produce(record)
                count += 1
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
                )
                return
            except BufferError:
                # The local queue is full: let librdkafka send, then try again.
                self._producer.poll(0.1)

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
        if not self._in_transaction or self._lost:
            self._in_transaction = False
            return
        try:
            self._producer.abort_transaction(self._op_timeout)
        except KafkaException as exc:
            error = self._translate(exc, "abort_transaction")
            if isinstance(error, FencedError):
                raise error from exc
            log.warning("abort failed: %s", error)
        finally:
            self._in_transaction = False

    def close(self) -> None:
        """Abort an open transaction and flush; never raises (it runs on the way out, where an
        error would hide the one that brought us here)."""
        try:
            self.abort()
            if not self._lost:
                self._producer.flush(5)
        except (KafkaException, FencedError, KafkaError) as exc:
            log.warning("closing the producer: %s", exc)
