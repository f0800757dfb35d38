"""One replay as its host (the daemon, or the ``replay`` command) holds it: status, cancel, run.

Start-up, in this order: the target topic and its schema; the replay's own producer
(``cdr-publisher.<deployment>.<org>.replay.<id>``), whose ``init_transactions()`` fences a killed
run of the same id and aborts what it left open; only then the state topic is read, so that what
is read is final; then :class:`~publisher.replay.task.ReplayTask` runs. A dry run fetches and
judges every page as both modes would, and publishes and writes nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, Protocol

from publisher import metrics
from publisher.batch import Topics, build_batch
from publisher.clock import Clock, utcnow
from publisher.dedup import MarkTable
from publisher.errors import FencedError, PublisherError, UsageError
from publisher.events import EventEncoder
from publisher.health import Health
from publisher.kafka.config import max_message_bytes
from publisher.kafka.owner import TransactionalOwner
from publisher.kafka.partitioning import slot_of
from publisher.published_index import IndexStats
from publisher.replay.progress import Progress, Status
from publisher.replay.request import ReplayMode, ReplayRequest, eta_seconds, plan
from publisher.replay.task import (
    REPLAY_PRIORITY,
    ReplayTask,
    feed_source,
    skip_published,
    transactional_id,
)
from publisher.runtime import Services
from publisher.state.memory import OrgState
from publisher.task import TaskContext, TaskStoppedError, parse_or_reject, retry
from publisher.webex.client import CdrClient
from publisher.webex.record import ParsedPage, format_timestamp
from publisher.webex.windows import Endpoint, Window

log = logging.getLogger("publisher.replay")


class Host(Protocol):
    """What a job borrows from the slot it runs in."""

    @property
    def owner(self) -> TransactionalOwner: ...

    def restore(self) -> None: ...


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
        services: Services,
        org: OrgState,
        request: ReplayRequest,
        *,
        clock: Clock = utcnow,
        stop: threading.Event | None = None,
        slot: Host | None = None,
    ) -> None:
        settings = services.settings
        self.slot = slot
        """The slot this job runs in (its producer and restore); None: it runs by itself."""
        self.services = services
        self.settings = settings
        self.org = org
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
            org_id=org.org,
            skew=timedelta(seconds=settings.webex_clock_skew_seconds),
            topic_pattern=settings.replay_topic_regex(),
            reserved_topics=(settings.state_topic, settings.dlq_topic),
        )
        self.progress = Progress.new(request, self._plan, org=org.org, topic=self.topic)
        self._owner: TransactionalOwner | None = None
        self._task: ReplayTask | None = None

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

    def _progressed(self, progress: Progress) -> None:
        with self._lock:
            self.progress = progress

    def cancel(self) -> None:
        self.cancelled = True
        self.stop.set()

    # --- waiting --------------------------------------------------------------------------------

    def _wait(self, seconds: float) -> None:
        if self.stop.wait(max(0.0, seconds)):
            raise TaskStoppedError

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
        except TaskStoppedError:
            if self.cancelled:
                self._set(status=Status.CANCELLED)
                self._record_end(Status.CANCELLED, None)
            else:
                self._set(status=Status.STOPPED)
            log.info("replay stopped", extra={"replay_id": self.replay_id})
        except PublisherError as exc:
            self._set(status=Status.FAILED, error=str(exc))
            if not isinstance(exc, FencedError | UsageError):
                self._record_end(Status.FAILED, str(exc))
            log.error("replay failed: %s", exc, extra={"replay_id": self.replay_id})  # noqa: TRY400 - expected, no traceback
            raise
        finally:
            if self._owner is not None:
                self._owner.close()
        return self.status()

    def _retry(self, what: str, action: Any) -> Any:
        return retry(what, action, sleep=self._wait, health=Health(), attempts=8)

    def _publish(self) -> None:
        services, settings, org = self.services, self.settings, self.org
        encoder: EventEncoder = self._retry(
            "topics and schema", lambda: services.encoder(self.topic)
        )
        # The id a replay of this name has when a `replay` command runs it by itself (and had
        # before slots): initialised first, it fences such a run and aborts what it left open.
        standalone = services.owner(
            transactional_id(settings, org.org, self.replay_id),
            sleep=self._wait,
            on_trouble=lambda _reason: None,
        )
        standalone.start()
        if self.slot is None:
            if org.partition is None:
                org.partition = self._partition()
            self._owner = standalone
            owner, restore = standalone, lambda: services.restore([org], partition=org.partition)
        else:
            standalone.close()
            owner, restore = self.slot.owner, self.slot.restore
        self._retry("state restore", restore)
        saved = org.replays.get(self.replay_id)
        if saved is not None:
            why = Progress.decode(saved).same_job(self.request, topic=self.topic)
            if why is not None:
                raise UsageError(why)
        ctx = TaskContext(
            settings=settings,
            org=org,
            owner=owner,
            encoder=encoder,
            topics=Topics(events=self.topic, dlq=settings.dlq_topic),
            restore=restore,
            client=self._client,
            clock=self.clock,
            stop=self.stop,
            health=Health(),
        )
        task = ReplayTask(ctx, self.request, self.progress, published=self._index)
        task.on_progress = self._progressed
        self._progressed(task.progress)
        self._task = task
        metrics.REPLAY_WINDOWS_DONE.labels(replay_id=self.replay_id).set(task.progress.windows_done)
        task.run()

    def _partition(self) -> int | None:
        """The org's slot when this job runs by itself (the daemon hands it to its jobs)."""
        count: int = self._retry("state topic", self.services.state_partitions)
        return slot_of(self.org.org, count) if count > 1 else None

    def _client(self) -> CdrClient:
        return self.services.client(
            self.org,
            priority=REPLAY_PRIORITY,
            sleep=self._api_wait,
            locations=self.progress.locations,
        )

    def _index(self) -> MarkTable:
        published, stats = self._retry(
            "index of published events",
            lambda: self.services.index(self.topic, self.progress.fetch_start, self.progress.end),
        )
        self._set(index=stats)
        return published  # type: ignore[no-any-return]

    def _record_end(self, status: Status, error: str | None) -> None:
        """Best effort: save a cancelled or failed status so a daemon restart does not resume."""
        if self._task is None:
            return
        try:
            self._task.record_end(status, error)
        except (PublisherError, TaskStoppedError) as exc:
            log.warning("could not record the replay's end: %s", exc)

    # --- dry run --------------------------------------------------------------------------------

    def _dry_run(self) -> None:
        """Fetch and judge every page as both modes would; publish and write nothing."""
        # Frames are thrown away; what would be published or sent to the DLQ is what counts.
        encoder = EventEncoder(0, max_message_bytes=max_message_bytes(self.settings))
        published = self._index()
        seen = {mode: MarkTable() for mode in ReplayMode}
        topics = Topics(events=self.topic, dlq=self.settings.dlq_topic)
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
                source = feed_source(window)
                pages = 0
                for parsed in self._retry("window", lambda w=window: list(self._pages(client, w))):
                    pages += 1
                    counts["fetched"] += len(parsed.records) + len(parsed.rejected)
                    for mode in ReplayMode:
                        page, already = (
                            skip_published(parsed, published)
                            if mode is ReplayMode.FILL_GAPS
                            else (parsed, 0)
                        )
                        batch = build_batch(
                            page,
                            committed=seen[mode],
                            encoder=encoder,
                            topics=topics,
                            org_id=self.org.org,
                            source=source,
                            replay_id=self.replay_id if mode is ReplayMode.REPUBLISH else None,
                        )
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

    def _pages(self, client: CdrClient, window: Window) -> Iterator[ParsedPage]:
        for page in client.pages(Endpoint.FEED, window):
            self._wait(0)
            parsed = parse_or_reject(page.body)
            metrics.RECORDS_FETCHED.labels(org=self.org.org, endpoint="feed").inc(
                len(parsed.records) + len(parsed.rejected)
            )
            yield parsed
