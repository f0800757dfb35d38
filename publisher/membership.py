"""This replica's place in its deployment: a member of the consumer group
``cdr-publisher.<deployment>`` subscribed to the state topic. The partitions it is assigned are
the slots it owns; Kafka's group protocol decides, no replica ever calls another (the model of
Kafka Streams' tasks and Kafka Connect's source tasks).

Choices, measured with librdkafka 2.16 against Kafka 4.1 (3 members, 12 partitions):

- The classic protocol with ``cooperative-sticky`` assignment: a move is incremental, so a
  member joining or leaving does not stop the slots that stay. KIP-848's ``group.protocol=consumer``
  works too (the same assignment, static members kept), but its session timeout is the broker's
  (``group.consumer.session.timeout.ms``, at least 45 s by default) and its first assignment waits
  a heartbeat interval (5 s), where the classic protocol took 0.25 s and lets us fail a dead
  replica's slots over after ``GROUP_SESSION_TIMEOUT_SECONDS``. ``GROUP_PROTOCOL`` picks.
- Static membership (``group.instance.id``, e.g. the pod name): a replica restarted within the
  session timeout gets its slots back and nothing moves (measured: the member closed and rejoined
  in 2 s with the same partitions, the others untouched).
- The consumer is polled on a thread that does nothing else, so ``max.poll.interval.ms`` stays
  honest: opening a slot (fence, restore) runs on the slot's own thread, never in a callback.
- A revoked slot's tasks are stopped and its producer closed before the callback returns, so the
  next owner never polls an org while this replica still does.

The consumer reads its slots' partitions from their end: the records it acts on are replay
requests another replica handed over (``request/<deployment>/<org>/<id>``).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from publisher import metrics
from publisher.kafka.config import consumer_config
from publisher.settings import Settings

log = logging.getLogger("publisher.membership")

POLL_S = 0.5


def group_id(settings: Settings) -> str:
    return f"cdr-publisher.{settings.deployment_id}"


def membership_config(settings: Settings) -> dict[str, Any]:
    config = consumer_config(settings, group_id(settings))
    config.update({"auto.offset.reset": "latest", "enable.partition.eof": False})
    if settings.group_instance_id:
        config["group.instance.id"] = settings.group_instance_id
    if settings.group_protocol == "consumer":
        config["group.protocol"] = "consumer"
    else:
        config["partition.assignment.strategy"] = "cooperative-sticky"
        config["session.timeout.ms"] = int(settings.group_session_timeout_seconds * 1000)
        config["heartbeat.interval.ms"] = max(
            500, int(settings.group_session_timeout_seconds * 1000 / 5)
        )
    # A revocation stops the slot's tasks in the callback: allow it its time, no more.
    config.setdefault("max.poll.interval.ms", 300000)
    config["client.id"] = f"cdr-publisher-{settings.deployment_id}-{uuid.uuid4().hex[:6]}"
    return config


class Membership:
    """The replica's group consumer, polled on its own thread; callbacks name the slots."""

    def __init__(
        self,
        settings: Settings,
        *,
        on_assigned: Callable[[list[int]], None],
        on_revoked: Callable[[list[int], bool], None],
        on_request: Callable[[int, bytes, bytes], None],
    ) -> None:
        self.settings = settings
        self._on_assigned = on_assigned
        self._on_revoked = on_revoked
        self._on_request = on_request
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.owned: set[int] = set()
        self.last_poll = 0.0
        self._consumer: Consumer | None = None

    def start(self) -> None:
        self._consumer = Consumer(membership_config(self.settings))
        self._consumer.subscribe(
            [self.settings.state_topic],
            on_assign=self._assign,
            on_revoke=self._revoke,
            on_lost=self._lose,
        )
        self._thread = threading.Thread(target=self._run, name="membership", daemon=True)
        self._thread.start()

    def assigned(self, slot: int) -> bool:
        with self._lock:
            return slot in self.owned

    def _run(self) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        while not self._stop.is_set():
            self.last_poll = time.monotonic()
            try:
                msg = consumer.poll(POLL_S)
            except KafkaException as exc:
                log.warning("group consumer: %s", exc)
                continue
            if msg is None or msg.error() is not None:
                continue
            key, value = msg.key(), msg.value()
            if key and value and key.startswith(b"request/"):
                self._on_request(msg.partition() or 0, key, value)

    # --- rebalance callbacks (on this thread, inside poll) ------------------------------------

    def _assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self.settings.group_protocol != "consumer":
            consumer.incremental_assign(partitions)
        numbers = sorted(p.partition for p in partitions)
        with self._lock:
            self.owned.update(numbers)
        metrics.REBALANCES.labels(kind="assigned").inc()
        metrics.SLOTS_OWNED.set(len(self.owned))
        log.info("slots assigned", extra={"slots": numbers})
        if numbers:
            self._on_assigned(numbers)

    def _revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._give_up(consumer, partitions, lost=False)

    def _lose(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._give_up(consumer, partitions, lost=True)

    def _give_up(self, consumer: Consumer, partitions: list[TopicPartition], *, lost: bool) -> None:
        numbers = sorted(p.partition for p in partitions)
        with self._lock:
            self.owned.difference_update(numbers)
        metrics.REBALANCES.labels(kind="lost" if lost else "revoked").inc()
        metrics.SLOTS_OWNED.set(len(self.owned))
        log.info("slots lost" if lost else "slots revoked", extra={"slots": numbers})
        if numbers:
            # Stopped before returning: the next owner starts only after we stopped polling.
            self._on_revoked(numbers, lost)
        if self.settings.group_protocol != "consumer":
            try:
                consumer.incremental_unassign(partitions)
            except KafkaException as exc:
                log.warning("unassigning %s: %s", numbers, exc)

    def close(self) -> None:
        """Leave (a static member keeps its slots for the session timeout) and stop polling."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._consumer is not None:
            try:
                self._consumer.close()
            except KafkaException as exc:
                log.warning("closing the group consumer: %s", exc)
