"""The daemon: follow cdr_stream and publish every record exactly once.

Start-up, in this order (see ARCHITECTURE.md "Exactly once"):
1. Create or check the topics; register (or find) the event schema.
2. ``init_transactions()``: fences an older instance with our transactional.id and aborts what it
   left open, so that what we read next is final.
3. Read the state topic with read_committed: cursor, region host, dedup marks inside the horizon.
4. Poll: window = [cursor - overlap, newest legal end], page by page; each page is one transaction
   holding its events, DLQ entries, dedup marks, expiry tombstones and the cursor record.
   The cursor's position moves to the window's end only in the transaction after its last page.
On an abortable Kafka error the transaction is aborted and the state is read back from the topic,
so the next fetch starts from what is really committed; dedup removes what is fetched again.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from types import FrameType
from typing import TypeVar

from confluent_kafka.admin import AdminClient

from publisher import metrics
from publisher.batch import Batch, Topics, build_batch
from publisher.clock import Clock, utcnow
from publisher.dedup import pack_marks
from publisher.errors import (
    KafkaError,
    ProducerLostError,
    PublisherError,
    WebexBadPageError,
    WebexError,
    WindowError,
)
from publisher.events import EventEncoder, Source
from publisher.health import Health
from publisher.kafka.config import client_config, consumer_config, producer_config, registry_config
from publisher.kafka.sink import OutRecord, TransactionalSink
from publisher.kafka.state import Cursor, JobState, apply_records, cursor_key, dedup_key, read_topic
from publisher.kafka.topics import ensure_topics
from publisher.registry import ensure_event_schema
from publisher.settings import Settings
from publisher.webex.client import CdrClient
from publisher.webex.record import ParsedPage, RejectedRecord, format_timestamp, parse_page
from publisher.webex.windows import Endpoint, Window, newest_end, oldest_start, split

log = logging.getLogger("publisher.daemon")
LIVE_JOB = "live"
RETENTION_HEADROOM = timedelta(minutes=1)
T = TypeVar("T")


class ShutdownRequestedError(BaseException):
    """Raised inside waits when SIGTERM/SIGINT arrived. A BaseException so that no retry loop
    that catches Exception can swallow it."""


def transactional_id(settings: Settings, job: str = LIVE_JOB) -> str:
    """Stable per (deployment, org, job): a second instance of the same job fences the first."""
    return f"cdr-publisher.{settings.deployment_id}.{settings.org_id}.{job}"


def hour_of(moment: datetime) -> int:
    return int(moment.timestamp() // 3600)


def next_window(
    cursor: datetime | None, now: datetime, *, overlap: timedelta, skew: timedelta
) -> Window | None:
    """The next stream window to fetch, or None when nothing new can be asked yet. Pure."""
    # A window starting right at the retention edge would be too old a moment later, by the time
    # the limiter lets it go: keep a minute's headroom.
    oldest = oldest_start(Endpoint.STREAM, now, skew) + RETENTION_HEADROOM
    newest = newest_end(Endpoint.STREAM, now, skew)
    start = oldest if cursor is None else max(cursor - overlap, oldest)
    if cursor is not None and newest <= cursor:
        return None
    if newest <= start:
        return None
    return split(Endpoint.STREAM, start, newest, now, skew)[0]


class Daemon:
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock = utcnow,
        stop: threading.Event | None = None,
        health: Health | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.stop = stop or threading.Event()
        self.health = health or Health()
        self.topics = Topics(events=settings.events_topic, dlq=settings.dlq_topic)
        self.state = JobState(org=settings.org_id, job=LIVE_JOB)
        self._sink: TransactionalSink | None = None
        self._encoder: EventEncoder | None = None

    # --- waiting -------------------------------------------------------------------------------

    def sleep(self, seconds: float) -> None:
        """Wait, but wake at once on shutdown."""
        self.health.loop_heartbeat = time.monotonic()
        if self.stop.wait(max(0.0, seconds)):
            raise ShutdownRequestedError

    def _retry(self, what: str, action: Callable[[], T]) -> T:
        delay = 1.0
        while True:
            try:
                return action()
            except PublisherError as exc:
                if not exc.retriable:
                    raise
                self.health.degraded = f"{what}: {exc}"
                log.warning("%s failed, retrying in %.0fs: %s", what, delay, exc)
                self.sleep(delay)
                delay = min(delay * 2, 30.0)

    # --- start-up ------------------------------------------------------------------------------

    def start(self) -> None:
        settings = self.settings
        admin = AdminClient(client_config(settings))
        self._retry("topics", lambda: ensure_topics(admin, settings))

        sid = self._retry(
            "schema registry",
            lambda: ensure_event_schema(
                registry_config(settings),
                settings.events_topic,
                auto_register=settings.schema_auto_register,
            ),
        )
        self._encoder = EventEncoder(sid)
        self._new_producer()
        self.restore()
        log.info(
            "started",
            extra={
                "transactional_id": transactional_id(settings),
                "schema_id": sid,
                "cursor": format_timestamp(self.state.cursor.position)
                if self.state.cursor
                else None,
                "dedup_marks": len(self.state.marks),
            },
        )

    def _new_producer(self) -> None:
        """A fresh transactional producer; init_transactions fences whatever the old one left."""
        if self._sink is not None:
            self._sink.close()
        self.health.producer_ready = False
        self._sink = TransactionalSink(
            producer_config(self.settings, transactional_id(self.settings)),
            sleep=self.sleep,
            on_trouble=self._degraded,
        )
        self._sink.init()
        self.health.producer_ready = True

    def restore(self) -> None:
        """Read the state topic (read_committed) back into memory."""
        started = time.monotonic()
        records = self._retry(
            "state restore",
            lambda: read_topic(
                consumer_config(self.settings, "cdr-publisher-restore"), self.settings.state_topic
            ),
        )
        state = JobState(org=self.settings.org_id, job=LIVE_JOB)
        apply_records(state, records, oldest_hour=self._oldest_hour())
        self.state = state
        self.health.state_restored = True
        self.health.cursor = state.cursor.position if state.cursor else None
        metrics.DEDUP_MARKS.set(len(state.marks))
        log.info(
            "state restored",
            extra={
                "records": len(records),
                "dedup_marks": len(state.marks),
                "seconds": round(time.monotonic() - started, 3),
            },
        )

    def _oldest_hour(self) -> int:
        return hour_of(self.clock() - timedelta(seconds=self.settings.dedup_horizon_seconds))

    # --- the loop ------------------------------------------------------------------------------

    def run(self) -> None:
        """Start, then poll until shutdown. Raises FencedError and non-retriable errors."""
        self.health.loop_heartbeat = time.monotonic()
        try:
            self.start()
            with CdrClient.from_settings(
                self.settings,
                sleep=self.sleep,
                region_base_url=self.state.cursor.region_base_url if self.state.cursor else None,
            ) as client:
                self._loop(client)
        except ShutdownRequestedError:
            log.info("shutting down")
        finally:
            if self._sink is not None:
                self._sink.close()

    def _loop(self, client: CdrClient) -> None:
        settings = self.settings
        overlap = timedelta(seconds=settings.overlap_seconds)
        skew = timedelta(seconds=settings.webex_clock_skew_seconds)
        while not self.stop.is_set():
            self.health.loop_heartbeat = time.monotonic()
            now = self.clock()
            cursor = self.state.cursor.position if self.state.cursor else None
            window = next_window(cursor, now, overlap=overlap, skew=skew)
            if window is None:
                self.sleep(settings.poll_interval_seconds)
                continue
            self._warn_if_behind_retention(cursor, now, skew)
            try:
                self.publish_window(client, window)
                self.health.last_poll_ok = time.monotonic()
                self.health.degraded = None
                self.health.last_error = None
            except KafkaError as exc:
                if not exc.retriable:
                    raise
                self._degraded(f"kafka: {exc}")
                if isinstance(exc, ProducerLostError):
                    self._new_producer()
                self.restore()  # back to what is really committed
                continue
            except (WebexError, WindowError) as exc:
                self._degraded(f"webex: {exc}")
                self.sleep(min(settings.poll_interval_seconds, 60.0))
                continue
            if self.state.cursor is not None:
                lag = (self.clock() - self.state.cursor.position).total_seconds()
                metrics.CURSOR_LAG.labels(org=settings.org_id).set(lag)
                # Caught up: wait for the next poll; behind: go on at once (the limiter paces us).
                if lag < settings.poll_interval_seconds + 120:
                    self.sleep(settings.poll_interval_seconds)

    def _degraded(self, reason: str) -> None:
        self.health.degraded = reason
        self.health.last_error = reason
        log.warning("degraded: %s", reason)

    def _warn_if_behind_retention(
        self, cursor: datetime | None, now: datetime, skew: timedelta
    ) -> None:
        oldest = oldest_start(Endpoint.STREAM, now, skew)
        if cursor is not None and cursor < oldest:
            log.error(
                "the cursor is older than the stream's 12 h retention: records inserted between "
                "%s and %s cannot come from cdr_stream; replay that span from cdr_feed",
                format_timestamp(cursor),
                format_timestamp(oldest),
            )

    # --- one window ----------------------------------------------------------------------------

    def publish_window(self, client: CdrClient, window: Window) -> None:
        source = Source("stream", format_timestamp(window.start), format_timestamp(window.end))
        for body in self._pages(client, window):
            if self.stop.is_set():
                raise ShutdownRequestedError
            page = self._parse(body)
            metrics.RECORDS_FETCHED.labels(endpoint="stream").inc(
                len(page.records) + len(page.rejected)
            )
            batch = self._build(page, source)
            if batch.records:
                self._commit(batch, window, done=False, region=client.base_url)
        # The window is done: move the cursor (with any expiry) in a transaction of its own.
        self._commit(Batch(), window, done=True, region=client.base_url)

    def _pages(self, client: CdrClient, window: Window) -> Iterator[bytes]:
        for page in client.pages(Endpoint.STREAM, window):
            yield page.body

    def _parse(self, body: bytes) -> ParsedPage:
        try:
            return parse_page(body)
        except WebexBadPageError as exc:
            # The whole page is unreadable: keep its bytes in the DLQ rather than lose them.
            log.error("unreadable page sent to the DLQ: %s", exc.message)  # noqa: TRY400 - expected, no traceback
            return ParsedPage(records=[], rejected=[RejectedRecord(body, exc.message, None)])

    def _build(self, page: ParsedPage, source: Source) -> Batch:
        if self._encoder is None:
            raise RuntimeError("start() was not called")
        return build_batch(
            page,
            committed=self.state.marks,
            encoder=self._encoder,
            topics=self.topics,
            org_id=self.settings.org_id,
            source=source,
        )

    def _commit(self, batch: Batch, window: Window, *, done: bool, region: str | None) -> None:
        """Commit one transaction; every one rewrites the cursor record so that its ``seq`` (which
        names the dedup keys) survives a crash. The position moves only when the window is done."""
        if self._sink is None:
            raise RuntimeError("start() was not called")
        settings, state = self.settings, self.state
        now = self.clock()
        seq = state.seq + 1
        hour = hour_of(now)
        position = window.end if done else (state.cursor.position if state.cursor else window.start)
        cursor = Cursor(position=position, region_base_url=region, seq=seq, committed_at=now)
        expired = [h for h in state.keys_by_hour if h < self._oldest_hour()]
        state_records = [
            OutRecord(settings.state_topic, key, None)
            for h in expired
            for key in state.keys_by_hour[h]
        ]
        mark_key = dedup_key(settings.org_id, LIVE_JOB, hour, seq)
        if batch.marks:
            state_records.append(OutRecord(settings.state_topic, mark_key, pack_marks(batch.marks)))
        state_records.append(
            OutRecord(settings.state_topic, cursor_key(settings.org_id, LIVE_JOB), cursor.encode())
        )
        self._sink.commit([*batch.records, *state_records])
        # Committed: only now does memory follow.
        state.cursor = cursor
        for h in expired:
            del state.keys_by_hour[h]
        if expired:
            state.marks.expire_before(self._oldest_hour())
        if batch.marks:
            state.marks.add_many(batch.marks, hour)
            state.keys_by_hour.setdefault(hour, []).append(mark_key)
        self._count(batch, window.end)
        self.health.cursor = cursor.position

    def _count(self, batch: Batch, window_end: datetime) -> None:
        metrics.RECORDS_PUBLISHED.labels(source="live").inc(batch.published)
        metrics.RECORDS_DEDUPLICATED.labels(source="live").inc(batch.duplicates)
        metrics.RECORDS_DLQ.labels(source="live").inc(batch.dlq)
        metrics.DEDUP_MARKS.set(len(self.state.marks))
        if batch.unknown_keys:
            metrics.UNKNOWN_KEYS.inc(batch.unknown_keys)
        for field_name, count in batch.new_enum_values.items():
            metrics.UNKNOWN_ENUM_VALUES.labels(field=field_name).inc(count)
        end = window_end.timestamp()
        for release in batch.release_times:
            released = datetime.fromisoformat(release).timestamp()
            metrics.LATENESS.observe(max(0.0, end - released))


SHUTDOWN_DEADLINE_S = 9.0


def _exit_now() -> None:
    log.warning("shutdown took longer than %.0fs; exiting without waiting", SHUTDOWN_DEADLINE_S)
    logging.shutdown()
    os._exit(0)


def install_signal_handlers(stop: threading.Event) -> None:
    """SIGTERM/SIGINT stop the loop at its next wait or page; the open transaction is aborted.

    A blocking call (an HTTP request near its timeout, a commit retried while the broker is away)
    could hold that past what orchestrators allow, so a watchdog exits 0 after 9 s regardless: an
    open transaction is safe to leave, the next instance's init_transactions aborts it.
    """

    def handler(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s received", signal.Signals(signum).name)
        if stop.is_set():
            return
        stop.set()
        watchdog = threading.Timer(SHUTDOWN_DEADLINE_S, _exit_now)
        watchdog.daemon = True
        watchdog.start()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
