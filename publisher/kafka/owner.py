"""The producer of one ``transactional.id``, kept alive through everything that does not mean
another instance owns the work.

- :class:`ProducerLostError` (a fatal error that is not fencing): a new producer.
- :class:`FencedError`: the coordinator bumps our epoch both when another instance calls
  ``init_transactions`` with our id and when it aborts a transaction of ours that outlived
  ``transaction.timeout.ms`` (a long pause, CPU throttling, a network partition), and librdkafka
  reports both as fencing. A transaction that had been open longer than that timeout when it
  failed was timed out: a new producer, and on. Otherwise it may be either, and a fresh
  producer's ``init_transactions`` tells them apart over time: it takes the id back, a real other
  owner then fences that producer in turn, and a second fencing within ``fence_window_s`` is taken
  for what it is: :class:`FencedError` propagates (the daemon exits 3).

A replica of a consumer group does not take its id back (``take_back=False``): the group decides
who owns the slot, and the daemon asks it.

After :meth:`TransactionalOwner.recover` the caller must read its state back from the topic:
whatever was open is aborted, but another owner may have committed meanwhile.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from publisher import metrics
from publisher.errors import FencedError, ProducerLostError
from publisher.kafka.sink import EventColumns, OutRecord, TransactionalSink

log = logging.getLogger("publisher.kafka")

FENCE_WINDOW_S = 600.0


class TransactionalOwner:
    def __init__(
        self,
        config: dict[str, Any],
        *,
        sleep: Callable[[float], None] = time.sleep,
        on_trouble: Callable[[str], None] | None = None,
        pause_in_transaction: Callable[[], float] | None = None,
        on_recovered: Callable[[], None] | None = None,
        take_back: bool = True,
        fence_window_s: float = FENCE_WINDOW_S,
        monotonic: Callable[[], float] = time.monotonic,
        sink_factory: Callable[..., TransactionalSink] = TransactionalSink,
    ) -> None:
        self.transactional_id = str(config["transactional.id"])
        self._config = config
        self._timeout_s = float(config.get("transaction.timeout.ms", 60000)) / 1000.0
        self._sleep = sleep
        self._report_trouble = on_trouble or (lambda _reason: None)
        self._on_recovered = on_recovered or (lambda: None)
        self._troubled = False
        self._take_back = take_back
        self.on_committed: Callable[[], None] = lambda: None
        self._pause = pause_in_transaction
        self._fence_window_s = fence_window_s
        self._monotonic = monotonic
        self._sink_factory = sink_factory
        self._sink: TransactionalSink | None = None
        self._last_fenced: float | None = None

    def start(self) -> None:
        """A new producer and ``init_transactions`` (which fences an older owner and aborts what
        it left open), waiting while the broker is away."""
        self.close()
        self._sink = self._sink_factory(
            self._config,
            sleep=self._sleep,
            on_trouble=self._trouble_reported,
            pause_in_transaction=self._pause,
        )
        self._sink.init()

    @property
    def started(self) -> bool:
        return self._sink is not None

    def _trouble_reported(self, reason: str) -> None:
        self._troubled = True
        self._report_trouble(reason)

    def commit(self, records: list[OutRecord], events: EventColumns | None = None) -> int:
        if self._sink is None:
            raise RuntimeError("start() was not called")
        count = self._sink.commit(records, events)
        self.on_committed()
        if self._troubled:
            # What librdkafka reported (all brokers down, a commit retried) is over.
            self._troubled = False
            self._on_recovered()
        return count

    def recover(self, error: FencedError | ProducerLostError) -> None:
        """Replace the producer after ``error``, or re-raise a fencing that means another owner."""
        if isinstance(error, FencedError) and not self._take_back:
            # A replica of a consumer group: the group, not this producer, says who owns the
            # slot (publisher.daemon asks it before opening the slot again).
            raise error
        if isinstance(error, FencedError):
            age = error.transaction_age_s
            timed_out = age is not None and age >= self._timeout_s
            now = self._monotonic()
            if not timed_out:
                if self._last_fenced is not None and now - self._last_fenced < self._fence_window_s:
                    raise FencedError(
                        f"{error.message}; fenced again {now - self._last_fenced:.0f}s after "
                        "taking the id back: another instance owns this work now"
                    ) from error
                self._last_fenced = now
            reason = (
                f"a transaction open {age:.0f}s outlived transaction.timeout.ms "
                f"({self._timeout_s:.0f}s) and the coordinator aborted it"
                if timed_out
                else "fenced; taking the transactional.id back to see whether another instance "
                "holds it"
            )
            metrics.PRODUCER_RECOVERIES.labels(reason="timed_out" if timed_out else "fenced").inc()
        else:
            reason = error.message
            metrics.PRODUCER_RECOVERIES.labels(reason="lost").inc()
        log.warning(
            "new producer for %s: %s",
            self.transactional_id,
            reason,
            extra={"transactional_id": self.transactional_id},
        )
        self.start()

    def abort(self) -> None:
        if self._sink is not None:
            self._sink.abort()

    def close(self) -> None:
        if self._sink is not None:
            self._sink.close()
            self._sink = None
