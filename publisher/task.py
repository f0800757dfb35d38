"""One task model for every job: the live stream, gap fills and replays.

A task is one job of one org. Its context is what it shares with the org's other jobs and with
the process: the org's dedup state and lock, the producer, the encoder and topics, the API client
and the state restore. Its position is how far it got: the stream cursor, or a replay's progress
through its feed windows. Every job moves its position the same way, page by page, and every page
is one transaction, :meth:`Task.commit`, in numbered steps:

0. (:meth:`Task.publish_page`, under the org's lock) drop the records the org's marks already
   hold and build the batch: events, DLQ entries and the marks of what the batch publishes;
1. build the state records: the batch's marks (``dedup/...``), tombstones for the org's expired
   marks (and, once, for keys of the old layout), and the task's position record with the next
   ``seq``, which names the marks' key;
2. commit events, DLQ entries and state records in one transaction;
3. only then let memory follow: marks added, expired ones dropped, the position moved.

Steps 0 to 3 hold the org's lock, so no two jobs of a process can publish one Report ID, and
memory only ever holds what is committed. A crash anywhere leaves all of a batch or none of it.
After a Kafka error whose outcome is unknown, or a new producer, the task reads its org's state
back from the topic (:meth:`Task.recover`), because another owner may have committed meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Generic, Protocol, Self, TypeVar

import orjson

from publisher import malloc
from publisher.batch import Batch, Topics, build_batch
from publisher.clock import Clock
from publisher.errors import (
    FencedError,
    KafkaError,
    ProducerLostError,
    PublisherError,
    WebexBadPageError,
)
from publisher.events import EventEncoder, Source
from publisher.health import Health
from publisher.kafka.owner import TransactionalOwner
from publisher.kafka.sink import OutRecord
from publisher.settings import Settings
from publisher.state.memory import OrgState
from publisher.webex.client import CdrClient, RawPage
from publisher.webex.record import (
    ParsedPage,
    RejectedRecord,
    format_timestamp,
    parse_page,
)
from publisher.webex.windows import Window

log = logging.getLogger("publisher.task")
T = TypeVar("T")


class TaskStoppedError(BaseException):
    """Raised inside a task's waits when it is told to stop (shutdown, cancel). A BaseException
    so that no retry loop that catches Exception can swallow it."""


class Position(Protocol):
    """A task's position record: the stream cursor, or a replay's progress."""

    @property
    def seq(self) -> int: ...

    def committed(self, seq: int, now: datetime) -> Self:
        """This position as written by commit ``seq`` at ``now``."""
        ...

    def encode(self) -> bytes: ...


P = TypeVar("P", bound=Position)


def stop_aware_sleep(stop: threading.Event, health: Health) -> Callable[[float], None]:
    """A sleep that wakes at once when ``stop`` is set (raising TaskStoppedError)."""

    def sleep(seconds: float) -> None:
        health.loop_heartbeat = time.monotonic()
        if stop.wait(max(0.0, seconds)):
            raise TaskStoppedError

    return sleep


def hour_of(moment: datetime) -> int:
    return int(moment.timestamp() // 3600)


def split_page(page: ParsedPage, size: int) -> list[ParsedPage]:
    """``page`` in parts of at most ``size`` records (good ones first, then rejected), one
    transaction each; an empty page is one empty part. Pure. The records are sliced, not read:
    the fast path's rows stay rows (reading them would build a Cdr for each)."""
    records, rejected = page.records, page.rejected
    count = len(records)
    if count + len(rejected) <= size:
        return [page]
    parts = []
    for start in range(0, count + len(rejected), size):
        stop = start + size
        parts.append(
            ParsedPage(
                records=records[start:stop] if start < count else [],
                rejected=rejected[max(0, start - count) : max(0, stop - count)],
            )
        )
    return parts


def parse_or_reject(body: bytes) -> ParsedPage:
    """The page's records, or the whole page as one rejected record when it cannot be read (its
    bytes go to the DLQ rather than being lost)."""
    try:
        return parse_page(body)
    except WebexBadPageError as exc:
        log.error("unreadable page sent to the DLQ: %s", exc.message)  # noqa: TRY400 - expected, no traceback
        return ParsedPage(records=[], rejected=[RejectedRecord(body, exc.message, None)])


def retry(
    what: str,
    action: Callable[[], T],
    *,
    sleep: Callable[[float], None],
    health: Health,
    attempts: int | None = None,
) -> T:
    """``action()``, again after a retriable error (backing off up to 30 s, degraded meanwhile);
    at most ``attempts`` times (None: until it works or ``sleep`` raises to stop)."""
    delay, attempt = 1.0, 0
    while True:
        attempt += 1
        try:
            return action()
        except PublisherError as exc:
            if not exc.retriable or (attempts is not None and attempt >= attempts):
                raise
            health.degraded = f"{what}: {exc}"
            log.warning("%s failed, retrying in %.0fs: %s", what, delay, exc)
            sleep(delay)
            delay = min(delay * 2, 30.0)


@dataclass
class TaskContext:
    """What a task works with. Everything here is injected, so a task runs on fakes in tests."""

    settings: Settings
    org: OrgState
    owner: TransactionalOwner
    encoder: EventEncoder
    topics: Topics
    restore: Callable[[], None]
    """Reads the org's committed state back into :attr:`org` (state-topic I/O)."""
    client: Callable[[], CdrClient]
    clock: Clock
    stop: threading.Event
    health: Health


class Task(Generic[P]):
    """The mechanism every job shares; subclasses decide which windows to fetch and how their
    position moves."""

    job: str
    replay_id: str | None = None
    """Set on republish replays: their events carry it."""

    def __init__(self, ctx: TaskContext, job: str, position: P | None, position_key: bytes) -> None:
        self.ctx = ctx
        self.job = job
        self.position = position
        self.position_key = position_key

    # --- waiting -------------------------------------------------------------------------------

    def sleep(self, seconds: float) -> None:
        """Wait, but wake at once when the task is told to stop."""
        self.ctx.health.loop_heartbeat = time.monotonic()
        if self.ctx.stop.wait(max(0.0, seconds)):
            raise TaskStoppedError

    def check_stop(self) -> None:
        if self.ctx.stop.is_set():
            raise TaskStoppedError

    def retry(self, what: str, action: Callable[[], T], *, attempts: int | None = None) -> T:
        return retry(what, action, sleep=self.sleep, health=self.ctx.health, attempts=attempts)

    # --- recovering from Kafka errors ------------------------------------------------------------

    def recover(self, exc: KafkaError | FencedError) -> None:
        """After a failed transaction: a new producer if it is lost or was fenced (FencedError
        propagates when another instance owns the work), then read the committed state back."""
        if isinstance(exc, FencedError | ProducerLostError):
            self.ctx.owner.recover(exc)
        elif not exc.retriable:
            raise exc
        self.retry("state restore", self.ctx.restore)
        self.reload()

    def reload(self) -> None:
        """Take this task's position from the org's state after a restore (subclasses)."""

    # --- one page, one transaction ---------------------------------------------------------------

    def parse(self, page: RawPage) -> ParsedPage:
        return parse_or_reject(page.body)

    def publish_page(
        self,
        page: ParsedPage | list[ParsedPage],
        source: Source,
        position: Callable[[Batch], P],
        *,
        always: bool = False,
    ) -> list[Batch]:
        """Step 0 and the commit of one page: dedup against the org's marks, build, commit (when
        there is something to publish, or ``always``: the position moves with every page). A page
        larger than ``batch_max_records`` is committed in several transactions, each short.

        The page may be handed over in a one-item list that the caller keeps no other reference
        to: the list is emptied, and each part's rows are freed once its events are built, not
        held through the transaction beside them (a 5,000-record page's rows are about 12 MB)."""
        ctx = self.ctx
        batches = []
        parts = split_page(
            page.pop() if isinstance(page, list) else page, ctx.settings.batch_max_records
        )
        with ctx.org.lock:
            while parts:
                part = parts.pop(0)
                batch = build_batch(
                    part,
                    committed=ctx.org.table(self.job),
                    encoder=ctx.encoder,
                    topics=ctx.topics,
                    org_id=ctx.org.org,
                    source=source,
                    replay_id=self.replay_id,
                )
                del part
                if batch.size or always:
                    self.commit(batch, position(batch))
                batches.append(batch)
        if sum(b.published + b.dlq + b.duplicates for b in batches) >= malloc.TRIM_MIN_RECORDS:
            # Committed: the page's bytes, rows and events are freed (librdkafka's copies too,
            # once delivered); give the pages they leave free back to the system.
            malloc.trim()
        return batches

    def publish_refused(
        self,
        error: WebexBadPageError,
        window: Window,
        source: Source,
        position: Callable[[Batch], P],
    ) -> None:
        """A page the client would not take (too large, a next link it refuses or that repeats)
        goes to the DLQ with what was read of it and why, in a transaction of its own."""
        log.error(
            "a page of the window was refused, the rest of the window is not fetched: %s",
            error.message,
            extra={"window_start": source.window_start, "window_end": source.window_end},
        )
        # With no bytes to keep, the description is the record: distinct per window and reason.
        raw = error.body or orjson.dumps(
            {
                "refused": error.message,
                "url": getattr(error, "url", None),
                "tracking_id": error.tracking_id,
                "window": [format_timestamp(window.start), format_timestamp(window.end)],
            }
        )
        reason = f"page refused: {error.message}"
        page = ParsedPage(records=[], rejected=[RejectedRecord(raw, reason, None)])
        self.publish_page(page, source, position, always=True)

    def commit(self, batch: Batch, position: P, *, extra: Sequence[OutRecord] = ()) -> None:
        """Steps 1-3 (see the module docstring): ``batch``, its marks, ``extra`` records and
        ``position`` in one transaction; memory follows only once it is committed."""
        ctx = self.ctx
        org, state_topic = ctx.org, ctx.settings.state_topic
        with org.lock:
            now = ctx.clock()
            # 1. The state records: marks, expiry tombstones, the position with the next seq.
            seq = (self.position.seq if self.position is not None else 0) + 1
            write = org.plan_write(
                self.job, batch.marks, hour=hour_of(now), seq=seq, oldest_hour=self.oldest_hour()
            )
            new_position = position.committed(seq, now)
            part = org.partition
            records = [
                *batch.records,
                *(replace(r, partition=part) if r.topic == state_topic else r for r in extra),
                *(OutRecord(state_topic, k, v, partition=part) for k, v in write.records),
                OutRecord(state_topic, self.position_key, new_position.encode(), partition=part),
            ]
            # 2. One transaction.
            ctx.owner.commit(records, batch.events)
            # 3. Committed: only now does memory follow.
            org.committed(write)
            self.position = new_position
            self.after_commit(batch, new_position)

    def after_commit(self, batch: Batch, position: P) -> None:
        """Called once a commit landed (metrics, health; subclasses)."""

    def oldest_hour(self) -> int:
        horizon = timedelta(seconds=self.ctx.settings.dedup_horizon_seconds)
        return hour_of(self.ctx.clock() - horizon)
