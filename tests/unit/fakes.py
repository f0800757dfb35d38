"""Fakes for unit tests of tasks and the worker: a producer that records what it commits, an API
client that serves given pages, and services wiring them together. Real parsing, batching, dedup
and state bookkeeping run on top of them."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

import orjson

from publisher.dedup import MarkTable
from publisher.errors import FencedError, KafkaError, ProducerLostError
from publisher.events import EventEncoder, unframe
from publisher.kafka.sink import EventColumns, OutRecord
from publisher.orgs import build_catalogue
from publisher.published_index import IndexStats
from publisher.settings import Settings
from publisher.simulator.generator import MINUTE_MS, Traffic, build_records
from publisher.state.codec import OrgRecords, fold
from publisher.state.memory import OrgState, restore
from publisher.task import hour_of
from publisher.webex.client import RawPage
from publisher.webex.ratelimit import RateLimiter
from publisher.webex.windows import Endpoint, Window

BASE_URL = "https://analytics-calling.webexapis.com"


def records(count: int, *, seed: int = 3) -> list[dict[str, Any]]:
    """``count`` raw 87-key records with distinct Report IDs, from the simulator's generator."""
    start_ms = 1_790_000_000_000
    traffic = Traffic(seed, 600.0, history_start_ms=start_ms)
    minute = start_ms // MINUTE_MS
    out: list[dict[str, Any]] = []
    while len(out) < count:
        for plan in traffic.plans(minute):
            out.extend(dict(r) for r in build_records(traffic.org, plan))
        minute += 1
    return out[:count]


def page(items: list[dict[str, Any]]) -> bytes:
    return orjson.dumps({"items": items})


@dataclass
class FakeOwner:
    """Stands in for TransactionalOwner: commits go to ``log`` (shared by owners, like a topic),
    and queued errors are raised by the next commits."""

    log: list[OutRecord]
    lock: threading.Lock
    transactional_id: str = "fake"
    fail: list[Exception] = field(default_factory=list)
    recovered: list[Exception] = field(default_factory=list)
    transactions: list[list[OutRecord]] = field(default_factory=list)
    on_committed: Callable[[], None] = lambda: None

    def start(self) -> None:
        pass

    def commit(self, records: list[OutRecord], events: EventColumns | None = None) -> int:
        if self.fail:
            raise self.fail.pop(0)
        if events is not None:  # the events first, as the sink produces them
            produced = zip(events.keys, events.values, strict=True)
            records = [OutRecord(events.topic, k, v, events.headers) for k, v in produced] + records
        with self.lock:
            self.log.extend(records)
            self.transactions.append(list(records))
        self.on_committed()
        return len(records)

    def recover(self, error: FencedError | ProducerLostError) -> None:
        self.recovered.append(error)

    def abort(self) -> None:
        pass

    def close(self) -> None:
        pass


class FakeClient:
    """Stands in for CdrClient: ``serve(endpoint, window)`` gives the page bodies of a window."""

    base_url = BASE_URL

    def __init__(self, serve: Callable[[Endpoint, Window], list[bytes]]) -> None:
        self.serve = serve
        self.asked: list[tuple[Endpoint, Window]] = []
        self.limiter = RateLimiter(initial_per_minute=6000, page_per_minute=60000)

    def pages(self, endpoint: Endpoint, window: Window) -> Iterator[RawPage]:
        self.asked.append((endpoint, window))
        for body in self.serve(endpoint, window):
            yield RawPage(body, BASE_URL + endpoint.path, "tracking", window, endpoint)

    def __enter__(self) -> FakeClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


class FakeServices:
    """Services over one in-memory "cluster": a list of committed records per topic."""

    def __init__(
        self,
        settings: Settings,
        serve: Callable[[Endpoint, Window], list[bytes]],
        *,
        partitions: int = 1,
    ) -> None:
        self.settings = settings
        self.catalogue = build_catalogue(settings)
        self.partitions = partitions
        self.log: list[OutRecord] = []
        self.lock = threading.Lock()
        self.serve = serve
        self.owners: dict[str, FakeOwner] = {}
        self.clients: list[FakeClient] = []
        self.forgotten: list[str] = []
        self.restores = 0

    def encoder(self, topic: str) -> EventEncoder:  # noqa: ARG002 - the Services signature
        return EventEncoder(7)

    def owner(self, transactional_id: str, **_kwargs: Any) -> FakeOwner:
        return self.owners.setdefault(
            transactional_id, FakeOwner(self.log, self.lock, transactional_id)
        )

    def state_partitions(self) -> int:
        return self.partitions

    def restore(self, states: list[OrgState], *, partition: int | None = None) -> None:
        self.restores += 1

        def read() -> dict[str, OrgRecords]:
            with self.lock:
                state = [
                    (r.key, r.value)
                    for r in self.log
                    if r.topic == self.settings.state_topic
                    and r.key
                    and (partition is None or r.partition in (None, partition))
                ]
            return fold(state, deployment=self.settings.deployment_id, orgs=[s.org for s in states])

        horizon = timedelta(seconds=self.settings.dedup_horizon_seconds)
        restore(states, read, oldest_hour=hour_of(datetime.now(UTC) - horizon))

    def index(self, topic: str, start: datetime, end: datetime) -> tuple[MarkTable, IndexStats]:  # noqa: ARG002
        from publisher.dedup import mark_of

        table = MarkTable()
        for report_id in self.published(topic):
            table.add(mark_of(report_id), 0)
        return table, IndexStats()

    def client(self, org: OrgState, **_kwargs: Any) -> FakeClient:  # noqa: ARG002
        client = FakeClient(self.serve)
        self.clients.append(client)
        return client

    def forget_org(self, org: str) -> None:
        self.forgotten.append(org)

    def published(self, topic: str | None = None) -> list[str]:
        """Report IDs of the events committed to ``topic`` (the events topic by default)."""
        wanted = topic or self.settings.events_topic
        with self.lock:
            values = [r.value for r in self.log if r.topic == wanted and r.value is not None]
        return [unframe(value)[1]["event_id"] for value in values]


def settings(**changes: Any) -> Settings:
    values: dict[str, Any] = {
        "org_id": "org-1",
        "deployment_id": "dep",
        "webex_token": "t0ken-for-tests",
        "poll_interval_seconds": 0.01,
        # Unit tests drive one process that owns every slot; groups run against real Kafka.
        "coordination": "none",
    }
    values.update(changes)
    return Settings(**values)


def live_owner(services: FakeServices, slot: int = 0) -> FakeOwner:
    """The producer of ``slot`` (a state topic of one partition: every org's)."""
    return services.owners[f"cdr-publisher.{services.settings.deployment_id}.slot.{slot}"]


__all__ = ["FakeClient", "FakeOwner", "FakeServices", "KafkaError", "page", "records", "settings"]
