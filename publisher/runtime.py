"""The process's I/O, built once from the settings: topics and schemas, producers, the state
topic, the index of published events and the Webex API. Task contexts are made from it (see
:mod:`publisher.task`); unit tests hand the worker a fake with the same methods.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

import orjson
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient

from publisher.clock import Clock, Sleep, utcnow
from publisher.dedup import MarkTable
from publisher.errors import KafkaError
from publisher.events import EventEncoder
from publisher.health import Health
from publisher.kafka.config import (
    client_config,
    consumer_config,
    max_message_bytes,
    producer_config,
    registry_config,
)
from publisher.kafka.owner import TransactionalOwner
from publisher.kafka.partitioning import slot_of
from publisher.kafka.state import read_state
from publisher.kafka.topics import ensure_topics
from publisher.orgs import Catalogue, build_catalogue
from publisher.published_index import IndexStats, read_published
from publisher.registry import ensure_event_schema
from publisher.settings import Settings
from publisher.state.codec import LIVE_JOB, OrgRecords, fold, request_key
from publisher.state.memory import OrgState, restore
from publisher.task import hour_of
from publisher.webex.client import CLIENT_RETRIES, CdrClient
from publisher.webex.credentials import Credentials
from publisher.webex.ratelimit import Kind, LimiterRegistry, seed_from_unix


class Services(Protocol):
    """What tasks and their hosts need from the outside world."""

    settings: Settings
    catalogue: Catalogue

    def encoder(self, topic: str) -> EventEncoder: ...

    def state_partitions(self) -> int:
        """How many partitions (slots) the state topic has."""
        ...

    def owner(
        self,
        transactional_id: str,
        *,
        sleep: Sleep,
        on_trouble: Callable[[str], None],
        on_recovered: Callable[[], None] | None = None,
        take_back: bool = True,
    ) -> TransactionalOwner: ...

    def restore(self, states: list[OrgState], *, partition: int | None = None) -> None:
        """Read the state (of ``partition``, or all) into ``states``, which share one lock."""
        ...

    def index(self, topic: str, start: datetime, end: datetime) -> tuple[MarkTable, IndexStats]: ...

    def hand_over(self, org: str, request: dict[str, Any]) -> None: ...

    def find_replay(self, replay_id: str) -> dict[str, Any] | None: ...

    def forget_org(self, org: str) -> None: ...

    def client(
        self, org: OrgState, *, priority: int, sleep: Sleep, locations: tuple[str, ...] | None
    ) -> CdrClient: ...


class Runtime:
    """The real :class:`Services`: Kafka, the registry and the Webex API."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock = utcnow,
        health: Health,
        catalogue: Catalogue | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.health = health
        self.catalogue = catalogue or build_catalogue(settings)
        # Per org: its token's provider and (per token) its limiter; no process-wide registry.
        self._credentials = Credentials.from_settings(settings, self.catalogue)
        self._limiters = LimiterRegistry()
        self._limiter_orgs: dict[str, set[str]] = {}
        self._encoders: dict[str, EventEncoder] = {}
        self._lock = threading.Lock()
        self._transactions = itertools.count(1)

    def encoder(self, topic: str) -> EventEncoder:
        """The encoder of ``topic``'s events: the topics exist (created when allowed) and the
        event schema is registered under its subject. Raises retriable errors while the broker or
        the registry is away."""
        with self._lock:
            found = self._encoders.get(topic)
        if found is not None:
            return found
        settings = self.settings
        target = settings.model_copy(update={"events_topic": topic})
        ensure_topics(AdminClient(client_config(settings)), target)
        schema_id = ensure_event_schema(
            registry_config(settings),
            topic,
            auto_register=settings.schema_auto_register,
            compatibility=settings.schema_compatibility,
        )
        encoder = EventEncoder(schema_id, max_message_bytes=max_message_bytes(settings))
        with self._lock:
            self._encoders[topic] = encoder
        return encoder

    def owner(
        self,
        transactional_id: str,
        *,
        sleep: Sleep,
        on_trouble: Callable[[str], None],
        on_recovered: Callable[[], None] | None = None,
        take_back: bool = True,
    ) -> TransactionalOwner:
        return TransactionalOwner(
            producer_config(self.settings, transactional_id),
            sleep=sleep,
            on_trouble=on_trouble,
            on_recovered=on_recovered,
            take_back=take_back,
            pause_in_transaction=self._pause_rule(),
        )

    def _pause_rule(self) -> Callable[[], float] | None:
        """Fault injection for tests: hold every Nth transaction of the process open."""
        seconds = self.settings.fault_transaction_pause_seconds
        every = self.settings.fault_transaction_pause_every
        if seconds <= 0 or every <= 0:
            return None

        def pause() -> float:
            return seconds if next(self._transactions) % every == 0 else 0.0

        return pause

    def state_partitions(self) -> int:
        settings = self.settings
        admin = AdminClient(client_config(settings))
        try:
            described = admin.list_topics(settings.state_topic, timeout=30).topics.get(
                settings.state_topic
            )
        except KafkaException as exc:
            raise KafkaError(
                f"state topic {settings.state_topic!r}: {exc}", retriable=True
            ) from exc
        if described is None or described.error is not None or not described.partitions:
            raise KafkaError(f"state topic {settings.state_topic!r} not found", retriable=True)
        return len(described.partitions)

    def restore(self, states: list[OrgState], *, partition: int | None = None) -> None:
        """Read the state topic (read_committed, to the high watermark) into ``states``."""
        settings = self.settings

        def blocked(partition: int, reached: int, end: int, seconds: float) -> None:
            self.health.restore_blocked = (
                f"state partition {partition}: an open transaction holds read_committed readers "
                f"at offset {reached} below the high watermark {end} for {seconds:.0f}s; waiting "
                "for it to commit, abort or time out"
            )

        def read() -> dict[str, OrgRecords]:
            try:
                records = read_state(
                    consumer_config(settings, "cdr-publisher-restore"),
                    settings.state_topic,
                    partitions=None if partition is None else [partition],
                    on_blocked=blocked,
                )
            finally:
                self.health.restore_blocked = None
            return fold(records, deployment=settings.deployment_id, orgs=[s.org for s in states])

        oldest = hour_of(self.clock() - timedelta(seconds=settings.dedup_horizon_seconds))
        restore(states, read, oldest_hour=oldest)

    def hand_over(self, org: str, request: dict[str, Any]) -> None:
        """Write a replay request for ``org`` into its slot's state partition (a replica that
        does not own the slot hands it to the one that does)."""
        settings = self.settings
        partitions = self.state_partitions()
        key = request_key(settings.deployment_id, org, str(request["id"]))
        producer = Producer({**client_config(settings), "enable.idempotence": True, "acks": "all"})
        failed: list[str] = []

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                failed.append(str(err))

        try:
            producer.produce(
                settings.state_topic,
                key=key,
                value=orjson.dumps(request),
                partition=slot_of(org, partitions),
                on_delivery=delivered,
            )
            remaining = producer.flush(30)
        except (KafkaException, BufferError) as exc:
            raise KafkaError(f"handing the replay over: {exc}", retriable=True) from exc
        if remaining or failed:
            raise KafkaError(
                f"handing the replay over: {failed or 'not delivered'}", retriable=True
            )

    def forget_org(self, org: str) -> None:
        """The org's slot went to another replica: forget its token's limiter (when no open org
        here shares it), so that getting the slot back counts, from the state topic, what the
        other replica spent meanwhile instead of this process's stale history (a fleet test
        saw 32 initial requests in a minute of 30 so)."""
        with self._lock:
            for identity, orgs in list(self._limiter_orgs.items()):
                orgs.discard(org)
                if not orgs:
                    del self._limiter_orgs[identity]
                    self._limiters.drop(identity)

    def find_replay(self, replay_id: str) -> dict[str, Any] | None:
        """A replay's progress from the state topic, whichever org and replica it is of."""
        settings = self.settings
        records = read_state(consumer_config(settings, "cdr-publisher-find"), settings.state_topic)
        for org in fold(records, deployment=settings.deployment_id, orgs=None).values():
            found = org.replays.get(replay_id)
            if found is not None:
                return found
            if replay_id in org.requests:
                return {"id": replay_id, "status": "pending", "request": org.requests[replay_id]}
        return None

    def index(self, topic: str, start: datetime, end: datetime) -> tuple[MarkTable, IndexStats]:
        return read_published(
            consumer_config(self.settings, "cdr-publisher-index"), topic, start=start, end=end
        )

    def client(
        self, org: OrgState, *, priority: int, sleep: Sleep, locations: tuple[str, ...] | None
    ) -> CdrClient:
        """A client for ``org``: its token, its token's limiter, its region (the one Webex sent
        it to last, else the catalogue's), its locations (a replay may name others)."""
        entry = self.catalogue.get(org.org)
        tokens = self._credentials.for_org(entry)
        settings = self.settings
        fresh = len(self._limiters)
        limiter = self._limiters.get(
            tokens.identity,
            initial_per_minute=settings.webex_initial_requests_per_minute,
            page_per_minute=settings.webex_page_requests_per_minute,
        )
        with self._lock:
            self._limiter_orgs.setdefault(tokens.identity, set()).add(org.org)
        cursor = org.cursors.get(LIVE_JOB)
        if len(self._limiters) > fresh:
            # A new limiter in this process: a previous process may have spent this minute's
            # budget of the token. Count what its last commit recorded, and a request with its
            # retries it may have made after that commit (no more than its limiter allowed).
            unrecorded = 1 + CLIENT_RETRIES
            recorded = cursor.sends if cursor else ((), ())
            recorded_at = cursor.sends_at if cursor else None
            for kind, times in zip((Kind.INITIAL, Kind.PAGE), recorded, strict=True):
                seed_from_unix(limiter, kind, times, unrecorded=unrecorded, recorded_at=recorded_at)
        chosen = entry.locations if locations is None else locations
        if list(chosen) != settings.webex_locations:
            settings = settings.model_copy(update={"webex_locations": list(chosen)})
        region = cursor.region_base_url if cursor and cursor.region_base_url else None
        return CdrClient.from_settings(
            settings,
            priority=priority,
            sleep=sleep,
            clock=self.clock,
            region_base_url=region or entry.region_base_url,
            tokens=tokens,
            limiter=limiter,
            org=org.org,
        )
