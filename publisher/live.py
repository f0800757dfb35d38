"""The live job: follow ``cdr_stream`` from the cursor, one window at a time, forever.

The next window is chosen by :func:`next_window` (pure): from the cursor minus the overlap to the
newest end the stream accepts, in windows of at most 2 h. Whatever the stream can no longer serve
(the cursor fell behind its 12 h, or the client had to start a window later after a long wait) is
a :class:`~publisher.gaps.Gap`; it is recorded as a fill-gaps replay of ``cdr_feed`` in the
transaction that moves the cursor past it, and handed to ``on_gap`` to run.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson

from publisher import metrics
from publisher.batch import Batch
from publisher.errors import (
    FencedError,
    KafkaError,
    WebexBadPageError,
    WebexError,
    WindowError,
)
from publisher.events import Source
from publisher.gaps import Gap, join
from publisher.kafka.sink import OutRecord
from publisher.state.codec import LIVE_JOB, Cursor, cursor_key, status_key
from publisher.task import Task, TaskContext
from publisher.webex.client import CdrClient
from publisher.webex.ratelimit import Kind, sends_as_unix
from publisher.webex.record import format_timestamp
from publisher.webex.windows import Endpoint, Window, newest_end, oldest_start, split

log = logging.getLogger("publisher.daemon")

# A window starting right at the retention edge would be too old a moment later, by the time the
# limiter lets it go: keep a minute's headroom.
RETENTION_HEADROOM = timedelta(minutes=1)
RETENTION_GAP = "the cursor fell behind the stream's 12 h retention"
MOVED_GAP = "the window's start aged past the stream's retention while waiting for the API"
REFUSED_GAP = "a page of the window was refused"


@dataclass(frozen=True, slots=True)
class NextWindow:
    window: Window | None
    """None: nothing new can be asked yet."""
    gap: Gap | None = None
    """What before ``window`` the stream can no longer serve."""


def next_window(
    cursor: datetime | None, now: datetime, *, overlap: timedelta, skew: timedelta
) -> NextWindow:
    """The next stream window to fetch and the gap before it, if any. Pure."""
    oldest = oldest_start(Endpoint.STREAM, now, skew) + RETENTION_HEADROOM
    newest = newest_end(Endpoint.STREAM, now, skew)
    wanted = oldest if cursor is None else cursor - overlap
    start = max(wanted, oldest)
    if cursor is not None and newest <= cursor:
        return NextWindow(None)
    if newest <= start:
        return NextWindow(None)
    gap = Gap(wanted, start, RETENTION_GAP) if wanted < start else None
    return NextWindow(split(Endpoint.STREAM, start, newest, now, skew)[0], gap)


GapRecorder = Callable[[Gap, datetime], list[OutRecord]]
"""The records that register a gap's filling (written with the cursor that passes it)."""


class LiveTask(Task[Cursor]):
    """The stream job of one org."""

    def __init__(
        self,
        ctx: TaskContext,
        *,
        record_gap: GapRecorder | None = None,
        on_gap: Callable[[Gap], None] | None = None,
    ) -> None:
        org = ctx.org
        super().__init__(
            ctx, LIVE_JOB, org.cursors.get(LIVE_JOB), cursor_key(org.deployment, org.org)
        )
        self._record_gap = record_gap
        self._on_gap = on_gap or (lambda _gap: None)

    def reload(self) -> None:
        self.position = self.ctx.org.cursors.get(LIVE_JOB)

    @property
    def cursor(self) -> datetime | None:
        return self.position.position if self.position else None

    # --- the loop ------------------------------------------------------------------------------

    def run(self) -> None:
        """Poll until stopped. Raises FencedError (another owner) and non-retriable errors."""
        ctx = self.ctx
        settings = ctx.settings
        overlap = timedelta(seconds=settings.overlap_seconds)
        skew = timedelta(seconds=settings.webex_clock_skew_seconds)
        backoff = settings.poll_interval_seconds
        ceiling = max(settings.org_backoff_max_seconds, backoff)
        with ctx.client() as client:
            while True:
                self.check_stop()
                ctx.health.loop_heartbeat = time.monotonic()
                planned = next_window(self.cursor, ctx.clock(), overlap=overlap, skew=skew)
                if planned.window is None:
                    self.sleep(settings.poll_interval_seconds)
                    continue
                try:
                    self.publish_window(client, planned.window, planned.gap)
                    ctx.health.last_poll_ok = time.monotonic()
                    ctx.health.degraded = None
                    ctx.health.last_error = None
                    metrics.ORG_UP.labels(org=ctx.org.org).set(1)
                    backoff = settings.poll_interval_seconds
                except (KafkaError, FencedError) as exc:
                    self.degraded(f"kafka: {exc}")
                    self.recover(exc)
                    continue
                except (WebexError, WindowError) as exc:
                    self.degraded(f"webex: {exc}")
                    metrics.ORG_UP.labels(org=ctx.org.org).set(0)
                    if exc.retriable:
                        self.sleep(min(settings.poll_interval_seconds, 60.0))
                    else:
                        # The org's own problem (token revoked, role missing, region unknown):
                        # recorded for `state`, then back off, doubling, until it works again.
                        self._report_problem(f"webex: {exc}")
                        self.sleep(backoff)
                        backoff = min(backoff * 2, ceiling)
                    continue
                if self.position is not None:
                    lag = (ctx.clock() - self.position.position).total_seconds()
                    metrics.CURSOR_LAG.labels(org=ctx.org.org).set(lag)
                    # Caught up: wait for the next poll; behind: on at once (the limiter paces).
                    if lag < settings.poll_interval_seconds + 120:
                        self.sleep(settings.poll_interval_seconds)

    def degraded(self, reason: str) -> None:
        self.ctx.health.degraded = reason
        self.ctx.health.last_error = reason
        log.warning("degraded: %s", reason, extra={"org_id": self.ctx.org.org})

    # --- one window ----------------------------------------------------------------------------

    def publish_window(self, client: CdrClient, window: Window, gap: Gap | None = None) -> None:
        """Every page of ``window``, then the cursor to its end (with ``gap``'s record)."""
        source = Source("stream", format_timestamp(window.start), format_timestamp(window.end))
        # A new org (no cursor) was promised nothing before its first window: it starts where
        # the stream's data starts when its first request goes out, and until that window is
        # done its cursor stays at that start (never at the clock, which would skip the rest).
        fresh = self.cursor is None
        start = window.start
        try:
            for raw in client.pages(Endpoint.STREAM, window):
                self.check_stop()
                start = raw.window.start
                if start > window.start and not fresh:
                    # The client started the window later than asked (it aged while waiting).
                    gap = join(gap, Gap(window.start, start, MOVED_GAP))
                # The page is handed over (Task.publish_page) and its bytes go once parsed: not
                # held while its events are built, nor while the next page is read.
                page = [self.parse(raw)]
                del raw
                metrics.RECORDS_FETCHED.labels(org=self.ctx.org.org, endpoint="stream").inc(
                    len(page[0].records) + len(page[0].rejected)
                )
                hold = start if fresh else None  # None: where the cursor is
                batches = self.publish_page(page, source, self._cursor_at(hold, client))
                metrics.observe_lateness(
                    [r for batch in batches for r in batch.release_times], window.end
                )
                del batches
        except WebexBadPageError as exc:
            # A page the client refuses (too large, a next link it will not follow, one that
            # repeats) comes back the same at every poll: keep it in the DLQ, and let the feed
            # fill what the rest of the window held, instead of stalling here until the stream
            # forgets the window.
            hold = start if fresh else None
            self.publish_refused(exc, window, source, self._cursor_at(hold, client))
            gap = join(gap, Gap(window.start, window.end, f"{REFUSED_GAP}: {exc.message}"))
        self._pass(window, gap, client)

    def _cursor_at(self, position: datetime | None, client: CdrClient) -> Callable[[Batch], Cursor]:
        return lambda _batch: self._cursor(position, client)

    def _cursor(self, position: datetime | None, client: CdrClient) -> Cursor:
        """The cursor record: ``position`` (None: where it is now), the region Webex sent us to.

        Every commit rewrites it so that its ``seq`` (which names the marks' keys) survives."""
        if position is None:
            position = self.cursor or self.ctx.clock()
        seq = self.position.seq if self.position else 0
        limiter = client.limiter
        # Read before the sends, and rounded down: never later than what they show.
        read_at = math.floor(time.time() * 1000) / 1000
        sends = (sends_as_unix(limiter, Kind.INITIAL), sends_as_unix(limiter, Kind.PAGE))
        return Cursor(position, client.base_url, seq, self.ctx.clock(), sends, read_at)

    def _report_problem(self, problem: str) -> None:
        """Write the org's problem to the state topic (once per change), for ``state``."""
        ctx, org = self.ctx, self.ctx.org
        with org.lock:
            if org.status is not None and org.status.get("problem") == problem:
                return
            status = {"problem": problem, "since": format_timestamp(ctx.clock())}
            record = OutRecord(
                ctx.settings.state_topic,
                status_key(org.deployment, org.org),
                orjson.dumps(status),
                partition=org.partition,
            )
            try:
                ctx.owner.commit([record])
            except (KafkaError, FencedError) as exc:
                log.warning("could not record the org's problem: %s", exc)
                return
            org.status = status

    def _pass(self, window: Window, gap: Gap | None, client: CdrClient) -> None:
        """The window is done: move the cursor to its end in a transaction of its own, with the
        record that registers the gap before it, if any (and the end of a recorded problem)."""
        extra = self._record_gap(gap, self.ctx.clock()) if gap and self._record_gap else []
        org = self.ctx.org
        cleared = org.status is not None
        if cleared:
            key = status_key(org.deployment, org.org)
            extra = [*extra, OutRecord(self.ctx.settings.state_topic, key, None)]
        self.commit(Batch(), self._cursor(window.end, client), extra=extra)
        if cleared:
            org.status = None
        if gap is not None:
            metrics.GAPS.labels(org=org.org).inc()
            metrics.GAP_SECONDS.labels(org=org.org).inc(gap.seconds)
            log.error(
                "gap: records inserted in %s can no longer come from cdr_stream (%s); filling it "
                "from cdr_feed",
                gap.describe(),
                gap.reason,
                extra={"org_id": org.org, "gap_start": format_timestamp(gap.start)},
            )
            self._on_gap(gap)

    def after_commit(self, batch: Batch, position: Cursor) -> None:
        org = self.ctx.org.org
        metrics.RECORDS_PUBLISHED.labels(org=org, source="live").inc(batch.published)
        metrics.RECORDS_DEDUPLICATED.labels(org=org, source="live").inc(batch.duplicates)
        metrics.RECORDS_DLQ.labels(org=org, source="live").inc(batch.dlq)
        metrics.DEDUP_MARKS.labels(org=org).set(self.ctx.org.mark_count)
        if batch.unknown_keys:
            metrics.UNKNOWN_KEYS.inc(batch.unknown_keys)
        for field_name, count in batch.new_enum_values.items():
            metrics.UNKNOWN_ENUM_VALUES.labels(field=field_name).inc(count)
        self.ctx.health.cursor = position.position
        self.ctx.org.cursors[LIVE_JOB] = position
