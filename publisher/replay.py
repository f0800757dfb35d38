"""Replay a past span from ``cdr_feed`` into Kafka, exactly once and resumable.

A replay is a bounded job over the daemon's flow (pages -> ``build_batch`` -> one transaction):

1. Plan (pure): check the span against the feed's rules, widen its start by ``widen`` (the feed
   filters on a leg's start time, so a long call that began before the span would be missed) and
   cut it into legal 12 h windows. The plan is saved with the progress and reused on resume.
2. ``init_transactions()`` with the replay's own ``transactional.id``
   (``cdr-publisher.<deployment>.<org>.replay.<id>``): fences a killed run of the same id and
   aborts what it left open. Only then read the state topic (read_committed): the progress record
   ``replay/<id>`` and the replay's own dedup marks ``dedup/<org>/replay.<id>/<hour>/<seq>``.
3. ``fill-gaps`` only: index the Report IDs the target topic already holds for the span
   (:mod:`publisher.published_index`); such records are skipped and counted.
4. Each page is one transaction: its events (and DLQ entries), its dedup marks and the progress
   record. The window count moves in the transaction after a window's last page. A run killed
   anywhere resumes at the first unfinished window; its own marks drop what was already
   published. The last transaction deletes the marks (tombstones) and marks the replay done.

Live traffic keeps priority: the replay's client draws from the token's process-wide limiter
with a lower priority than the daemon, so it only takes slots the live stream does not wait for.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import orjson
from confluent_kafka.admin import AdminClient

from publisher import metrics
from publisher.batch import Batch, Topics, build_batch
from publisher.clock import Clock, utcnow
from publisher.dedup import MarkTable, mark_of, pack_marks
from publisher.errors import (
    FencedError,
    KafkaError,
    PublisherError,
    UsageError,
    WebexBadPageError,
    WebexError,
    WindowError,
)
from publisher.events import EventEncoder, Source
from publisher.kafka.config import client_config, consumer_config, producer_config, registry_config
from publisher.kafka.sink import OutRecord, TransactionalSink
from publisher.kafka.state import JobState, apply_records, dedup_key, read_topic, replay_key
from publisher.kafka.topics import ensure_topics
from publisher.published_index import IndexStats, read_published
from publisher.registry import ensure_event_schema
from publisher.settings import Settings
from publisher.webex.client import MAX_LOCATIONS, CdrClient
from publisher.webex.record import (
    ParsedPage,
    RejectedRecord,
    format_timestamp,
    parse_page,
    parse_timestamp,
)
from publisher.webex.windows import Endpoint, Window, oldest_start, split

log = logging.getLogger("publisher.replay")

# Below the live stream's 0: the shared limiter serves a waiting live request first.
REPLAY_PRIORITY = -10
DEFAULT_WIDEN = timedelta(hours=1)
MAX_WIDEN = timedelta(hours=24)
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_MAX_ATTEMPTS = 8
PROGRESS_VERSION = 1


class ReplayMode(StrEnum):
    FILL_GAPS = "fill-gaps"
    REPUBLISH = "republish"


class Status(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    CANCELLED = "cancelled"
    STOPPED = "stopped"
    """Interrupted by a shutdown: resumable, and still ``running`` in the state topic."""
    FAILED = "failed"


FINISHED = frozenset({Status.DONE, Status.CANCELLED, Status.STOPPED, Status.FAILED})


class ReplayStoppedError(BaseException):
    """Raised inside a replay's waits when it is cancelled or the process shuts down. A
    BaseException so that no retry loop that catches Exception swallows it."""


# --- the request and its plan (pure) ------------------------------------------------------------


def new_replay_id(now: datetime) -> str:
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


def parse_time(text: str, what: str) -> datetime:
    """An ISO-8601 time (UTC when it names no zone); UsageError naming ``what`` otherwise."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except (ValueError, AttributeError):
        raise UsageError(
            f"{what} {text!r} is not an ISO-8601 time (e.g. 2026-03-01T10:00:00Z)"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True)
class ReplayRequest:
    replay_id: str
    start: datetime
    end: datetime
    mode: ReplayMode = ReplayMode.FILL_GAPS
    org: str | None = None
    topic: str | None = None
    locations: tuple[str, ...] = ()
    dry_run: bool = False
    widen: timedelta = DEFAULT_WIDEN

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.replay_id,
            "start": format_timestamp(self.start),
            "end": format_timestamp(self.end),
            "mode": self.mode.value,
            "org": self.org,
            "topic": self.topic,
            "locations": list(self.locations),
            "dry_run": self.dry_run,
            "widen_minutes": self.widen.total_seconds() / 60,
        }

    @classmethod
    def from_json(cls, data: object, *, now: datetime) -> ReplayRequest:
        """The request an admin client posted; UsageError naming the bad field."""
        if not isinstance(data, dict):
            raise UsageError("the body must be a JSON object with at least start and end")
        unknown = sorted(set(data) - {*cls_fields()})
        if unknown:
            raise UsageError(f"unknown field {unknown[0]!r}; known: {', '.join(cls_fields())}")
        for name in ("start", "end"):
            if not isinstance(data.get(name), str):
                raise UsageError(f"{name} is required (an ISO-8601 time)")
        locations = data.get("locations") or []
        if isinstance(locations, str):
            locations = [locations]
        if not isinstance(locations, list) or not all(isinstance(x, str) for x in locations):
            raise UsageError("locations must be a list of location names")
        widen = data.get("widen_minutes", DEFAULT_WIDEN.total_seconds() / 60)
        if isinstance(widen, bool) or not isinstance(widen, int | float):
            raise UsageError("widen_minutes must be a number")
        replay_id = data.get("id") or new_replay_id(now)
        if not isinstance(replay_id, str):
            raise UsageError("id must be a string")
        for name in ("org", "topic"):
            if data.get(name) is not None and not isinstance(data.get(name), str):
                raise UsageError(f"{name} must be a string")
        return cls(
            replay_id=replay_id,
            start=parse_time(data["start"], "start"),
            end=parse_time(data["end"], "end"),
            mode=parse_mode(data.get("mode") or ReplayMode.FILL_GAPS.value),
            org=data.get("org"),
            topic=data.get("topic"),
            locations=split_locations(locations),
            dry_run=bool(data.get("dry_run", False)),
            widen=timedelta(minutes=float(widen)),
        )


def cls_fields() -> tuple[str, ...]:
    return ("id", "start", "end", "mode", "org", "topic", "locations", "dry_run", "widen_minutes")


def parse_mode(value: str) -> ReplayMode:
    try:
        return ReplayMode(value)
    except ValueError:
        raise UsageError(
            f"unknown mode {value!r}: use {ReplayMode.FILL_GAPS.value} or "
            f"{ReplayMode.REPUBLISH.value}"
        ) from None


def split_locations(values: Iterable[str]) -> tuple[str, ...]:
    """Location names from repeated and comma-separated values; at most Webex's 10."""
    names = tuple(n.strip() for value in values for n in value.split(",") if n.strip())
    if len(names) > MAX_LOCATIONS:
        raise UsageError(
            f"{len(names)} locations named; Webex filters on at most {MAX_LOCATIONS} locations"
        )
    return names


@dataclass(frozen=True)
class Plan:
    fetch_start: datetime
    windows: tuple[Window, ...]


def plan(request: ReplayRequest, *, now: datetime, org_id: str, skew: timedelta) -> Plan:
    """Check the request and cut its (widened) span into feed windows. Pure.

    UsageError names the limit broken: the id's form, an unknown org, an end not after the
    start, a span the feed does not serve (30 days back, ending more than 5 minutes ago).
    """
    if not _ID.fullmatch(request.replay_id):
        raise UsageError(
            f"replay id {request.replay_id!r}: 1 to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    if request.org is not None and request.org != org_id:
        raise UsageError(
            f"unknown org {request.org!r}: this deployment serves org {org_id!r} "
            "(CDR_PUBLISHER_ORG_ID)"
        )
    if request.end <= request.start:
        raise UsageError(
            f"the end ({format_timestamp(request.end)}) must be after the start "
            f"({format_timestamp(request.start)})"
        )
    if not timedelta(0) <= request.widen <= MAX_WIDEN:
        raise UsageError(
            f"widen must be between 0 and {MAX_WIDEN.total_seconds() / 60:.0f} minutes"
        )
    if request.topic is not None and not request.topic.strip():
        raise UsageError("topic must not be empty")
    try:
        split(Endpoint.FEED, request.start, request.end, now, skew)
    except WindowError as exc:
        raise UsageError(f"span outside what cdr_feed serves: {exc.message}") from None
    # Widening is best effort: never past what the feed serves.
    fetch_start = max(request.start - request.widen, oldest_start(Endpoint.FEED, now, skew))
    fetch_start = min(fetch_start, request.start)
    windows = split(Endpoint.FEED, fetch_start, request.end, now, skew)
    return Plan(fetch_start=fetch_start, windows=tuple(windows))


def eta_seconds(
    *,
    windows_left: int,
    pages_done: int,
    windows_done: int,
    initial_per_minute: float,
    page_per_minute: float,
) -> float:
    """The least time the API's limits allow for the windows left. Pure.

    Each window costs one initial request and (as far as the windows done tell) some next-page
    requests; both kinds have their own budget per minute, which the live stream shares, so
    this is a lower bound.
    """
    if windows_left <= 0:
        return 0.0
    pages_per_window = pages_done / windows_done if windows_done else 1.0
    follow_ups = max(0.0, pages_per_window - 1.0) * windows_left
    return max(windows_left * 60.0 / initial_per_minute, follow_ups * 60.0 / page_per_minute)


# --- progress, as kept in the state topic (pure) ------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """A replay's committed progress: its request, plan, window count and counters."""

    replay_id: str
    org: str
    mode: ReplayMode
    topic: str
    start: datetime
    end: datetime
    fetch_start: datetime
    locations: tuple[str, ...]
    windows: tuple[Window, ...]
    windows_done: int = 0
    seq: int = 0
    status: Status = Status.RUNNING
    error: str | None = None
    pages: int = 0
    fetched: int = 0
    published: int = 0
    dlq: int = 0
    duplicates: int = 0
    already_published: int = 0
    updated_at: datetime | None = None

    @classmethod
    def new(cls, request: ReplayRequest, the_plan: Plan, *, org: str, topic: str) -> Progress:
        return cls(
            replay_id=request.replay_id,
            org=org,
            mode=request.mode,
            topic=topic,
            start=request.start,
            end=request.end,
            fetch_start=the_plan.fetch_start,
            locations=request.locations,
            windows=the_plan.windows,
        )

    def same_job(self, request: ReplayRequest, *, topic: str) -> str | None:
        """Why ``request`` is not this replay (None: it is), for a resume under the same id."""
        mine = (self.start, self.end, self.mode, self.topic, self.locations)
        theirs = (request.start, request.end, request.mode, topic, request.locations)
        if mine == theirs:
            return None
        return (
            f"replay {self.replay_id!r} already exists for {format_timestamp(self.start)} .. "
            f"{format_timestamp(self.end)}, mode {self.mode.value}, topic {self.topic}"
            f"{', locations ' + ','.join(self.locations) if self.locations else ''}; "
            "resume it with the same arguments or choose another --id"
        )

    def counted(self, batch: Batch, *, fetched: int, already: int, pages: int) -> Progress:
        return replace(
            self,
            pages=self.pages + pages,
            fetched=self.fetched + fetched,
            published=self.published + batch.published,
            dlq=self.dlq + batch.dlq,
            duplicates=self.duplicates + batch.duplicates,
            already_published=self.already_published + already,
        )

    def encode(self) -> bytes:
        return orjson.dumps(self.as_dict())

    def as_dict(self) -> dict[str, Any]:
        return {
            "v": PROGRESS_VERSION,
            "id": self.replay_id,
            "org": self.org,
            "mode": self.mode.value,
            "topic": self.topic,
            "start": format_timestamp(self.start),
            "end": format_timestamp(self.end),
            "fetch_start": format_timestamp(self.fetch_start),
            "locations": list(self.locations),
            "windows": [[format_timestamp(w.start), format_timestamp(w.end)] for w in self.windows],
            "windows_done": self.windows_done,
            "windows_total": len(self.windows),
            "seq": self.seq,
            "status": self.status.value,
            "error": self.error,
            "pages": self.pages,
            "fetched": self.fetched,
            "published": self.published,
            "dlq": self.dlq,
            "duplicates": self.duplicates,
            "already_published": self.already_published,
            "updated_at": format_timestamp(self.updated_at) if self.updated_at else None,
        }

    @classmethod
    def decode(cls, data: dict[str, Any]) -> Progress:
        return cls(
            replay_id=data["id"],
            org=data["org"],
            mode=ReplayMode(data["mode"]),
            topic=data["topic"],
            start=parse_timestamp(data["start"]),
            end=parse_timestamp(data["end"]),
            fetch_start=parse_timestamp(data["fetch_start"]),
            locations=tuple(data.get("locations") or ()),
            windows=tuple(
                Window(parse_timestamp(s), parse_timestamp(e)) for s, e in data["windows"]
            ),
            windows_done=int(data["windows_done"]),
            seq=int(data["seq"]),
            status=Status(data["status"]),
            error=data.get("error"),
            pages=int(data.get("pages", 0)),
            fetched=int(data.get("fetched", 0)),
            published=int(data.get("published", 0)),
            dlq=int(data.get("dlq", 0)),
            duplicates=int(data.get("duplicates", 0)),
            already_published=int(data.get("already_published", 0)),
            updated_at=parse_timestamp(data["updated_at"]) if data.get("updated_at") else None,
        )


def skip_published(page: ParsedPage, published: MarkTable | None) -> tuple[ParsedPage, int]:
    """The page without the records the index holds, and how many were dropped. Pure."""
    if published is None or not published:
        return page, 0
    kept = [cdr for cdr in page.records if mark_of(cdr.report_id) not in published]
    return ParsedPage(records=kept, rejected=page.rejected), len(page.records) - len(kept)


def hour_of(moment: datetime) -> int:
    return int(moment.timestamp() // 3600)


def transactional_id(settings: Settings, replay_id: str) -> str:
    return f"cdr-publisher.{settings.deployment_id}.{settings.org_id}.replay.{replay_id}"


def job_name(replay_id: str) -> str:
    """The job part of the replay's state keys: ``dedup/<org>/replay.<id>/...``."""
    return f"replay.{replay_id}"


# --- the job (I/O) ------------------------------------------------------------------------------


@dataclass
class _Live:
    """What a running job knows beyond its committed progress (memory only)."""

    status: Status = Status.PENDING
    waiting: bool = False
    wait_s: float = 0.0
    index: IndexStats | None = None
    error: str | None = None
    window_counts: list[dict[str, Any]] = field(default_factory=list)


class ReplayJob:
    """One replay. :meth:`run` blocks until it is done, cancelled, stopped or failed."""

    def __init__(
        self,
        settings: Settings,
        request: ReplayRequest,
        *,
        clock: Clock = utcnow,
        stop: threading.Event | None = None,
    ) -> None:
        self.settings = settings
        self.request = request
        self.clock = clock
        self.topic = request.topic or settings.events_topic
        self.stop = stop or threading.Event()
        self.cancelled = False
        self._lock = threading.Lock()
        self._live = _Live()
        self._plan = plan(
            request,
            now=clock(),
            org_id=settings.org_id,
            skew=timedelta(seconds=settings.webex_clock_skew_seconds),
        )
        self.progress = Progress.new(request, self._plan, org=settings.org_id, topic=self.topic)
        self._state = JobState(org=settings.org_id, job=job_name(request.replay_id))
        self._sink: TransactionalSink | None = None
        self._encoder: EventEncoder | None = None
        self._published: MarkTable | None = None
        # Only a run that owns the progress record may write its end into it.
        self._owns_progress = False

    @property
    def replay_id(self) -> str:
        return self.request.replay_id

    # --- status ---------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The figures an operator sees (CLI progress bar and ``GET /replays/<id>``)."""
        with self._lock:
            progress, live = self.progress, self._live
            out = progress.as_dict()
            out.update(
                {
                    "status": live.status.value,
                    "dry_run": self.request.dry_run,
                    "error": live.error or progress.error,
                    "waiting_rate_limit": live.waiting,
                    "rate_limit_wait_s": round(live.wait_s, 3),
                    "duplicates_skipped": progress.duplicates + progress.already_published,
                    "eta_s": round(
                        eta_seconds(
                            windows_left=len(progress.windows) - progress.windows_done,
                            pages_done=progress.pages,
                            windows_done=progress.windows_done,
                            initial_per_minute=self.settings.webex_initial_requests_per_minute,
                            page_per_minute=self.settings.webex_page_requests_per_minute,
                        ),
                        1,
                    ),
                    "index": live.index.as_dict() if live.index else None,
                }
            )
            if self.request.dry_run:
                out["window_counts"] = list(live.window_counts)
                out["would_publish"] = {
                    mode.value: sum(w[mode.value] for w in live.window_counts)
                    for mode in ReplayMode
                }
                out["would_dlq"] = {
                    mode.value: sum(w[f"dlq_{mode.value}"] for w in live.window_counts)
                    for mode in ReplayMode
                }
            return out

    def _set(self, **changes: Any) -> None:
        with self._lock:
            for name, value in changes.items():
                setattr(self._live, name, value)

    def cancel(self) -> None:
        self.cancelled = True
        self.stop.set()

    # --- waiting --------------------------------------------------------------------------------

    def _wait(self, seconds: float) -> None:
        if self.stop.wait(max(0.0, seconds)):
            raise ReplayStoppedError

    def _api_wait(self, seconds: float) -> None:
        """The client's sleep: the limiter's waits (and backoffs), counted for the progress."""
        started = time.monotonic()
        self._set(waiting=True)
        try:
            self._wait(seconds)
        finally:
            with self._lock:
                self._live.waiting = False
                self._live.wait_s += time.monotonic() - started

    # --- running --------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Run to the end; returns the final status. Raises on a failure (status ``failed``)."""
        self._set(status=Status.RUNNING)
        metrics.REPLAY_WINDOWS_TOTAL.labels(replay_id=self.replay_id).set(len(self._plan.windows))
        try:
            if self.request.dry_run:
                self._dry_run()
            else:
                self._publish()
            self._set(status=Status.DONE)
        except ReplayStoppedError:
            if self.cancelled:
                self._set(status=Status.CANCELLED)
                self._record_end(Status.CANCELLED, None)
            else:
                self._set(status=Status.STOPPED)
            log.info("replay stopped", extra={"replay_id": self.replay_id})
        except PublisherError as exc:
            self._set(status=Status.FAILED, error=str(exc))
            if not isinstance(exc, FencedError):
                self._record_end(Status.FAILED, str(exc))
            log.error("replay failed: %s", exc, extra={"replay_id": self.replay_id})  # noqa: TRY400 - expected, no traceback
            raise
        finally:
            if self._sink is not None:
                self._sink.close()
        return self.status()

    def _retry(self, what: str, action: Callable[[], Any]) -> Any:
        delay = 1.0
        for attempt in range(1, _MAX_ATTEMPTS + 1):
            try:
                return action()
            except PublisherError as exc:
                if not exc.retriable or attempt == _MAX_ATTEMPTS:
                    raise
                log.warning("%s failed, retrying in %.0fs: %s", what, delay, exc)
                self._wait(delay)
                delay = min(delay * 2, 30.0)
        raise AssertionError("unreachable")

    def _publish(self) -> None:
        settings = self.settings
        target = settings.model_copy(update={"events_topic": self.topic})
        admin = AdminClient(client_config(settings))
        self._retry("topics", lambda: ensure_topics(admin, target))
        schema_id = self._retry(
            "schema registry",
            lambda: ensure_event_schema(
                registry_config(settings), self.topic, auto_register=settings.schema_auto_register
            ),
        )
        self._encoder = EventEncoder(schema_id)
        self._sink = TransactionalSink(
            producer_config(settings, transactional_id(settings, self.replay_id)),
            sleep=self._wait,
        )
        # Fences a killed run of this id and aborts its open transaction before we read.
        self._sink.init()
        self._restore()
        if self.progress.status is Status.DONE:
            log.info("replay already done", extra={"replay_id": self.replay_id})
            return
        if self.request.mode is ReplayMode.FILL_GAPS:
            self._published = self._index()
        with self._client() as client:
            attempt = 0
            while True:
                done_before = self.progress.windows_done
                try:
                    for index in range(self.progress.windows_done, len(self.progress.windows)):
                        self._publish_window(client, index)
                    self._finish()
                    return
                except (KafkaError, WebexError) as exc:
                    attempt = 1 if self.progress.windows_done > done_before else attempt + 1
                    if not exc.retriable or attempt >= _MAX_ATTEMPTS:
                        raise
                    log.warning(
                        "replay window failed, retrying: %s",
                        exc,
                        extra={"replay_id": self.replay_id},
                    )
                    self._wait(min(2.0**attempt, 30.0))
                    if isinstance(exc, KafkaError):
                        self._restore()  # back to what is really committed

    def _client(self) -> CdrClient:
        settings = self.settings.model_copy(
            update={"webex_locations": list(self.progress.locations)}
        )
        return CdrClient.from_settings(
            settings, priority=REPLAY_PRIORITY, sleep=self._api_wait, clock=self.clock
        )

    def _restore(self) -> None:
        records = self._retry(
            "state restore",
            lambda: read_topic(
                consumer_config(self.settings, "cdr-publisher-replay"), self.settings.state_topic
            ),
        )
        state = JobState(org=self.settings.org_id, job=job_name(self.replay_id))
        # A replay's own marks never expire while it runs; its last transaction deletes them.
        apply_records(state, records, oldest_hour=0)
        self._state = state
        saved = state.replays.get(self.replay_id)
        if saved is None:
            progress = self.progress
        else:
            progress = Progress.decode(saved)
            why = progress.same_job(self.request, topic=self.topic)
            if why is not None:
                raise UsageError(why)
            if progress.status is not Status.DONE:
                progress = replace(progress, status=Status.RUNNING, error=None)
        with self._lock:
            self.progress = progress
        self._owns_progress = True
        metrics.REPLAY_WINDOWS_DONE.labels(replay_id=self.replay_id).set(progress.windows_done)
        log.info(
            "replay state restored",
            extra={
                "replay_id": self.replay_id,
                "windows_done": progress.windows_done,
                "windows": len(progress.windows),
                "marks": len(state.marks),
            },
        )

    def _index(self) -> MarkTable:
        published, stats = self._retry(
            "index of published events",
            lambda: read_published(
                consumer_config(self.settings, "cdr-publisher-index"),
                self.topic,
                start=self.progress.fetch_start,
                end=self.progress.end,
            ),
        )
        self._set(index=stats)
        return published  # type: ignore[no-any-return]

    def _pages(self, client: CdrClient, window: Window) -> Iterator[ParsedPage]:
        for page in client.pages(Endpoint.FEED, window):
            if self.stop.is_set():
                raise ReplayStoppedError
            try:
                parsed = parse_page(page.body)
            except WebexBadPageError as exc:
                # Unreadable as a whole: its bytes go to the DLQ rather than being lost.
                parsed = ParsedPage(
                    records=[], rejected=[RejectedRecord(page.body, exc.message, None)]
                )
            metrics.RECORDS_FETCHED.labels(endpoint="feed").inc(
                len(parsed.records) + len(parsed.rejected)
            )
            yield parsed

    def _source(self, window: Window) -> Source:
        return Source("feed", format_timestamp(window.start), format_timestamp(window.end))

    def _build(self, page: ParsedPage, source: Source, committed: MarkTable) -> Batch:
        if self._encoder is None:
            raise RuntimeError("no encoder")
        republish = self.request.mode is ReplayMode.REPUBLISH
        return build_batch(
            page,
            committed=committed,
            encoder=self._encoder,
            topics=Topics(events=self.topic, dlq=self.settings.dlq_topic),
            org_id=self.settings.org_id,
            source=source,
            # fill-gaps publishes records the topic never had: first publications, not replays.
            replay_id=self.replay_id if republish else None,
        )

    def _publish_window(self, client: CdrClient, index: int) -> None:
        window = self.progress.windows[index]
        source = self._source(window)
        for parsed in self._pages(client, window):
            page, already = skip_published(parsed, self._published)
            batch = self._build(page, source, self._state.marks)
            fetched = len(parsed.records) + len(parsed.rejected)
            self._commit(
                batch, self.progress.counted(batch, fetched=fetched, already=already, pages=1)
            )
        self._commit(Batch(), replace(self.progress, windows_done=index + 1))
        metrics.REPLAY_WINDOWS_DONE.labels(replay_id=self.replay_id).set(index + 1)
        log.info(
            "replay window done",
            extra={
                "replay_id": self.replay_id,
                "window": f"{index + 1}/{len(self.progress.windows)}",
                "published": self.progress.published,
            },
        )

    def _commit(self, batch: Batch, progress: Progress, *, extra: Iterable[OutRecord] = ()) -> None:
        """One transaction: the batch, its marks, ``extra`` and the progress record."""
        if self._sink is None:
            raise RuntimeError("no producer")
        now = self.clock()
        progress = replace(progress, seq=progress.seq + 1, updated_at=now)
        state_topic = self.settings.state_topic
        hour = hour_of(now)
        mark_key = dedup_key(self.settings.org_id, job_name(self.replay_id), hour, progress.seq)
        records = [*batch.records, *extra]
        if batch.marks:
            records.append(OutRecord(state_topic, mark_key, pack_marks(batch.marks)))
        records.append(OutRecord(state_topic, replay_key(self.replay_id), progress.encode()))
        self._sink.commit(records)
        # Committed: only now does memory follow.
        if batch.marks:
            self._state.marks.add_many(batch.marks, hour)
            self._state.keys_by_hour.setdefault(hour, []).append(mark_key)
        with self._lock:
            self.progress = progress
        metrics.REPLAY_RECORDS.labels(replay_id=self.replay_id).inc(batch.published)
        metrics.RECORDS_PUBLISHED.labels(source="replay").inc(batch.published)
        metrics.RECORDS_DEDUPLICATED.labels(source="replay").inc(batch.duplicates)
        metrics.RECORDS_DLQ.labels(source="replay").inc(batch.dlq)

    def _finish(self) -> None:
        """Done: delete the replay's marks (they only guard its own resumption) with the record
        that says so, in one transaction."""
        tombstones = [
            OutRecord(self.settings.state_topic, key, None)
            for keys in self._state.keys_by_hour.values()
            for key in keys
        ]
        self._commit(Batch(), replace(self.progress, status=Status.DONE), extra=tombstones)
        self._state.keys_by_hour.clear()
        log.info("replay done", extra={"replay_id": self.replay_id, **self._counts()})

    def _counts(self) -> dict[str, int]:
        p = self.progress
        return {
            "published": p.published,
            "dlq": p.dlq,
            "duplicates": p.duplicates,
            "already_published": p.already_published,
        }

    def _record_end(self, status: Status, error: str | None) -> None:
        """Best effort: save a cancelled or failed status so a daemon restart does not resume."""
        if self.request.dry_run or self._sink is None or not self._owns_progress:
            return
        try:
            self._sink.abort()
            self._commit(Batch(), replace(self.progress, status=status, error=error))
        except PublisherError as exc:
            log.warning("could not record the replay's end: %s", exc)

    # --- dry run --------------------------------------------------------------------------------

    def _dry_run(self) -> None:
        """Fetch and judge every page as both modes would; publish and write nothing."""
        self._encoder = EventEncoder(0)  # frames are thrown away; validation is what counts
        published = self._index()
        seen = {mode: MarkTable() for mode in ReplayMode}
        with self._client() as client:
            for index, window in enumerate(self.progress.windows):
                counts: dict[str, Any] = {
                    "start": format_timestamp(window.start),
                    "end": format_timestamp(window.end),
                    "fetched": 0,
                    "already_published": 0,
                    **{mode.value: 0 for mode in ReplayMode},
                    **{f"dlq_{mode.value}": 0 for mode in ReplayMode},
                }
                source = self._source(window)
                pages = 0
                for parsed in self._retry_pages(client, window):
                    pages += 1
                    counts["fetched"] += len(parsed.records) + len(parsed.rejected)
                    for mode in ReplayMode:
                        page, already = (
                            skip_published(parsed, published)
                            if mode is ReplayMode.FILL_GAPS
                            else (parsed, 0)
                        )
                        batch = self._build(page, source, seen[mode])
                        seen[mode].add_many(batch.marks, 0)
                        counts[mode.value] += batch.published
                        counts[f"dlq_{mode.value}"] += batch.dlq
                        if mode is ReplayMode.FILL_GAPS:
                            counts["already_published"] += already
                with self._lock:
                    self._live.window_counts.append(counts)
                    self.progress = replace(
                        self.progress,
                        windows_done=index + 1,
                        pages=self.progress.pages + pages,
                        fetched=self.progress.fetched + counts["fetched"],
                    )

    def _retry_pages(self, client: CdrClient, window: Window) -> list[ParsedPage]:
        """A window's pages, fetched again from its start after a retriable API failure."""
        return self._retry("window", lambda: list(self._pages(client, window)))  # type: ignore[no-any-return]


# --- hosting replays inside the daemon ----------------------------------------------------------

Route = Callable[[str, bytes], tuple[int, dict[str, Any]]]


class ReplayManager:
    """The daemon's replays: started by ``POST /replays``, resumed when the daemon restarts."""

    def __init__(self, settings: Settings, *, clock: Clock = utcnow) -> None:
        self.settings = settings
        self.clock = clock
        self._jobs: dict[str, ReplayJob] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._resumer: threading.Thread | None = None

    def submit(self, request: ReplayRequest) -> tuple[bool, dict[str, Any]]:
        """Start ``request`` unless a job of that id already runs here; (started, status)."""
        with self._lock:
            if self._closing.is_set():
                raise UsageError("the daemon is shutting down; no new replays")
            current = self._jobs.get(request.replay_id)
            if current is not None and Status(current.status()["status"]) not in FINISHED:
                return False, current.status()
            job = ReplayJob(self.settings, request, clock=self.clock)
            thread = threading.Thread(
                target=self._run, args=(job,), name=f"replay-{request.replay_id}", daemon=True
            )
            self._jobs[request.replay_id] = job
            self._threads[request.replay_id] = thread
            thread.start()
            return True, job.status()

    def _run(self, job: ReplayJob) -> None:
        try:
            job.run()
        except PublisherError:
            pass  # logged and kept in the job's status
        except Exception:
            log.exception("replay crashed", extra={"replay_id": job.replay_id})

    def get(self, replay_id: str) -> dict[str, Any] | None:
        with self._lock:
            job = self._jobs.get(replay_id)
        if job is not None:
            return job.status()
        saved = self._saved().get(replay_id)
        return Progress.decode(saved).as_dict() if saved else None

    def cancel(self, replay_id: str) -> dict[str, Any] | None:
        with self._lock:
            job = self._jobs.get(replay_id)
            thread = self._threads.get(replay_id)
        if job is None:
            return None
        job.cancel()
        if thread is not None:
            thread.join(timeout=30)
        return job.status()

    def _saved(self) -> dict[str, dict[str, Any]]:
        records = read_topic(
            consumer_config(self.settings, "cdr-publisher-replays"), self.settings.state_topic
        )
        state = JobState(org=self.settings.org_id, job="-")
        apply_records(state, records, oldest_hour=0)
        return state.replays

    def resume_unfinished(self) -> list[str]:
        """Start again every replay of this org the state topic says is running."""
        resumed = []
        for replay_id, data in sorted(self._saved().items()):
            try:
                progress = Progress.decode(data)
            except (KeyError, ValueError, TypeError):
                log.warning("unreadable replay progress ignored", extra={"replay_id": replay_id})
                continue
            if progress.org != self.settings.org_id or progress.status is not Status.RUNNING:
                continue
            request = ReplayRequest(
                replay_id=replay_id,
                start=progress.start,
                end=progress.end,
                mode=progress.mode,
                topic=progress.topic,
                locations=progress.locations,
            )
            try:
                started, _ = self.submit(request)
            except UsageError as exc:  # e.g. the span aged out of the feed while we were down
                log.error("replay %s cannot resume: %s", replay_id, exc)  # noqa: TRY400 - expected
                continue
            if started:
                resumed.append(replay_id)
        if resumed:
            log.info("replays resumed", extra={"replays": resumed})
        return resumed

    def resume_in_background(self) -> None:
        """Resume unfinished replays once the state topic can be read (retrying until then)."""

        def attempt() -> None:
            delay = 2.0
            while not self._closing.is_set():
                try:
                    self.resume_unfinished()
                    return
                except PublisherError as exc:
                    log.warning("replays not resumed yet: %s", exc)
                if self._closing.wait(delay):
                    return
                delay = min(delay * 2, 60.0)

        self._resumer = threading.Thread(target=attempt, name="replay-resume", daemon=True)
        self._resumer.start()

    def close(self) -> None:
        """Stop every replay (each stays resumable) and wait for them."""
        self._closing.set()
        with self._lock:
            jobs = list(self._jobs.values())
            threads = list(self._threads.values())
        for job in jobs:
            job.stop.set()
        for thread in threads:
            thread.join(timeout=30)
        if self._resumer is not None:
            self._resumer.join(timeout=30)

    # --- HTTP -----------------------------------------------------------------------------------

    def routes(self) -> list[tuple[str, str, Route, bool]]:
        """(method, path, route, prefix) for :meth:`publisher.http_api.HttpApi.add_route`."""
        return [
            ("POST", "/replays", self._post, False),
            ("GET", "/replays", self._list, False),
            ("GET", "/replays/", self._get_one, True),
            ("DELETE", "/replays/", self._delete, True),
        ]

    def identity(self) -> dict[str, str]:
        return {"org_id": self.settings.org_id, "deployment_id": self.settings.deployment_id}

    def _post(self, _path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        try:
            data = orjson.loads(body or b"{}")
            request = ReplayRequest.from_json(data, now=self.clock())
            started, status = self.submit(request)
        except orjson.JSONDecodeError:
            return 400, {"error": "the body is not JSON"}
        except UsageError as exc:
            return 400, {"error": exc.message}
        return (202 if started else 200), status

    def _list(self, _path: str, _body: bytes) -> tuple[int, dict[str, Any]]:
        with self._lock:
            jobs = list(self._jobs.values())
        return 200, {**self.identity(), "replays": [job.status() for job in jobs]}

    def _get_one(self, path: str, _body: bytes) -> tuple[int, dict[str, Any]]:
        replay_id = path.removeprefix("/replays/")
        try:
            status = self.get(replay_id)
        except KafkaError as exc:
            return 503, {"error": str(exc)}
        if status is None:
            return 404, {"error": f"no replay {replay_id!r}"}
        return 200, status

    def _delete(self, path: str, _body: bytes) -> tuple[int, dict[str, Any]]:
        replay_id = path.removeprefix("/replays/")
        status = self.cancel(replay_id)
        if status is None:
            return 404, {"error": f"replay {replay_id!r} is not running in this daemon"}
        return 200, status
