"""The feed job: a replay (or gap fill) moving its progress through its planned feed windows.

Each page is one transaction through :meth:`publisher.task.Task.commit`: its events (and DLQ
entries), its marks and the progress record; the window count moves in the transaction after a
window's last page. A run killed anywhere resumes at its first unfinished window, and the org's
marks (which every fill-gaps job shares with the live stream) drop what was already published.
``fill-gaps`` also skips what the events topic already holds (:mod:`publisher.published_index`).
A fill-gaps job's marks stay for the dedup horizon when it is done, so a record the stream hands
over late is not published again; a republish deletes its own marks when done.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from functools import partial

from publisher import metrics
from publisher.batch import Batch
from publisher.dedup import MarkTable, mark_of
from publisher.errors import FencedError, KafkaError, WebexBadPageError, WebexError
from publisher.events import Source
from publisher.kafka.sink import OutRecord
from publisher.replay.progress import Progress, Status
from publisher.replay.request import Origin, ReplayMode, ReplayRequest
from publisher.settings import Settings
from publisher.state.codec import FILL_PREFIX, REPUBLISH_PREFIX, replay_key, request_key
from publisher.task import Task, TaskContext
from publisher.webex.client import CdrClient
from publisher.webex.record import ParsedPage, format_timestamp
from publisher.webex.windows import Endpoint, Window

log = logging.getLogger("publisher.replay")

# Below the live stream's 0: the shared limiter serves a waiting live request first.
REPLAY_PRIORITY = -10
MAX_ATTEMPTS = 8


def skip_published(page: ParsedPage, published: MarkTable | None) -> tuple[ParsedPage, int]:
    """The page without the records the index holds, and how many were dropped. Pure."""
    if published is None or not published:
        return page, 0
    kept = [cdr for cdr in page.records if mark_of(cdr.report_id) not in published]
    return ParsedPage(records=kept, rejected=page.rejected), len(page.records) - len(kept)


def feed_source(window: Window) -> Source:
    return Source("feed", format_timestamp(window.start), format_timestamp(window.end))


def job_name(request: ReplayRequest) -> str:
    """The job part of the replay's state keys: ``dedup/<deployment>/<org>/<job>/...``."""
    prefix = REPUBLISH_PREFIX if request.mode is ReplayMode.REPUBLISH else FILL_PREFIX
    return prefix + request.replay_id


def transactional_id(settings: Settings, org: str, replay_id: str) -> str:
    return f"cdr-publisher.{settings.deployment_id}.{org}.replay.{replay_id}"


class ReplayTask(Task[Progress]):
    """One replay's windows, published. Its context is open (producer initialised, state
    restored) before it is made; :meth:`run` raises on failure."""

    def __init__(
        self,
        ctx: TaskContext,
        request: ReplayRequest,
        planned: Progress,
        *,
        published: Callable[[], MarkTable] | None = None,
    ) -> None:
        org = ctx.org
        super().__init__(
            ctx, job_name(request), planned, replay_key(org.deployment, org.org, request.replay_id)
        )
        self.request = request
        self.replay_id = request.replay_id if request.mode is ReplayMode.REPUBLISH else None
        self._published_source = published
        self._published: MarkTable | None = None
        self.on_progress: Callable[[Progress], None] = lambda _p: None
        self.reload()

    @property
    def progress(self) -> Progress:
        if self.position is None:  # set in __init__; None only on a broken subclass
            raise RuntimeError("a replay task without progress")
        return self.position

    def reload(self) -> None:
        """Take the committed progress of this replay from the org's state, if any."""
        saved = self.ctx.org.replays.get(self.request.replay_id)
        if saved is None:
            return
        progress = Progress.decode(saved)
        if progress.status is not Status.DONE:
            progress = replace(progress, status=Status.RUNNING, error=None)
        self.position = progress
        self.on_progress(progress)

    # --- running --------------------------------------------------------------------------------

    def run(self) -> None:
        """Publish every window left, then finish. Retries retriable errors: a gap fill without
        end (the daemon depends on it), an operator's replay ``MAX_ATTEMPTS`` times a window."""
        if self.progress.status is Status.DONE:
            log.info("replay already done", extra={"replay_id": self.request.replay_id})
            return
        if self.request.mode is ReplayMode.FILL_GAPS and self._published_source is not None:
            self._published = self._published_source()
        endless = self.request.origin is Origin.GAP
        with self.ctx.client() as client:
            attempt = 0
            while True:
                done_before = self.progress.windows_done
                try:
                    for index in range(self.progress.windows_done, len(self.progress.windows)):
                        self._publish_window(client, index)
                    self._finish()
                    return
                except (KafkaError, FencedError, WebexError) as exc:
                    attempt = 1 if self.progress.windows_done > done_before else attempt + 1
                    if not exc.retriable and not isinstance(exc, FencedError):
                        raise
                    if not endless and attempt >= MAX_ATTEMPTS:
                        raise
                    log.warning(
                        "replay window failed, retrying: %s",
                        exc,
                        extra={"replay_id": self.request.replay_id},
                    )
                    self.sleep(min(2.0**attempt, 30.0 if not endless else 300.0))
                    if isinstance(exc, KafkaError | FencedError):
                        self.recover(exc)  # back to what is really committed

    def _publish_window(self, client: CdrClient, index: int) -> None:
        window = self.progress.windows[index]
        source = feed_source(window)
        note = None
        try:
            for raw in client.pages(Endpoint.FEED, window):
                self.check_stop()
                parsed = self.parse(raw)
                del raw  # parsed: its bytes go before the events are built (Task.publish_page)
                fetched = len(parsed.records) + len(parsed.rejected)
                metrics.RECORDS_FETCHED.labels(org=self.ctx.org.org, endpoint="feed").inc(fetched)
                page, already = skip_published(parsed, self._published)
                del parsed
                moved = self._page_counter(fetched=fetched, already=already)
                # Handed over: its rows go once its events are built (Task.publish_page).
                handed = [page]
                del page
                self.publish_page(handed, source, moved, always=True)
        except WebexBadPageError as exc:
            # The feed is the last source of these records: the refused page is kept in the DLQ
            # and the progress says the window was cut short; the replay goes on.
            self.publish_refused(exc, window, source, partial(self._counted, fetched=0, already=0))
            note = f"window {index + 1} cut short: {exc.message}"
        done = replace(self.progress, windows_done=index + 1)
        self.commit(Batch(), replace(done, error=note) if note else done)
        metrics.REPLAY_WINDOWS_DONE.labels(replay_id=self.request.replay_id).set(index + 1)
        log.info(
            "replay window done",
            extra={
                "replay_id": self.request.replay_id,
                "window": f"{index + 1}/{len(self.progress.windows)}",
                "published": self.progress.published,
            },
        )

    def _counted(self, batch: Batch, *, fetched: int, already: int) -> Progress:
        return self.progress.counted(batch, fetched=fetched, already=already, pages=1)

    def _page_counter(self, *, fetched: int, already: int) -> Callable[[Batch], Progress]:
        """The progress after each part of one page: the page is counted with its first part
        (a page over batch_max_records is committed in several)."""
        first = [True]

        def moved(batch: Batch) -> Progress:
            if first[0]:
                first[0] = False
                return self._counted(batch, fetched=fetched, already=already)
            return self.progress.counted(batch, fetched=0, already=0, pages=0)

        return moved

    def _finish(self) -> None:
        """Done. A republish deletes its own marks (they only guarded its resumption) in the
        transaction that says so; a fill-gaps job's marks stay, shared, for the horizon."""
        org = self.ctx.org
        with org.lock:
            tombstones = [
                OutRecord(self.ctx.settings.state_topic, key, None)
                for key in [*org.private_keys(self.job), self._request_key()]
            ]
            self.commit(Batch(), replace(self.progress, status=Status.DONE), extra=tombstones)
            org.drop_private(self.job)
        log.info(
            "replay done",
            extra={
                "replay_id": self.request.replay_id,
                "published": self.progress.published,
                "dlq": self.progress.dlq,
                "duplicates": self.progress.duplicates,
                "already_published": self.progress.already_published,
            },
        )

    def record_end(self, status: Status, error: str | None) -> None:
        """Save a cancelled or failed status, so a daemon restart does not resume it."""
        self.ctx.owner.abort()
        request = OutRecord(self.ctx.settings.state_topic, self._request_key(), None)
        self.commit(Batch(), replace(self.progress, status=status, error=error), extra=[request])

    def _request_key(self) -> bytes:
        """Where another replica may have handed this replay over (deleted when it ends)."""
        org = self.ctx.org
        return request_key(org.deployment, org.org, self.request.replay_id)

    def after_commit(self, batch: Batch, position: Progress) -> None:
        replay_id, org = self.request.replay_id, self.ctx.org.org
        metrics.REPLAY_RECORDS.labels(replay_id=replay_id).inc(batch.published)
        metrics.RECORDS_PUBLISHED.labels(org=org, source="replay").inc(batch.published)
        metrics.RECORDS_DEDUPLICATED.labels(org=org, source="replay").inc(batch.duplicates)
        metrics.RECORDS_DLQ.labels(org=org, source="replay").inc(batch.dlq)
        self.ctx.org.replays[replay_id] = position.as_dict()
        self.on_progress(position)
