"""The daemon's replays and gap fills: started by ``POST /replays`` or by the live job for a gap,
resumed when the daemon restarts, each on a thread of its own.

Live traffic keeps priority: a replay's client draws from the token's limiter with a lower
priority than the live stream, so it only takes slots the live stream does not wait for.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from publisher import metrics
from publisher.clock import Clock, utcnow
from publisher.errors import KafkaError, PublisherError, UsageError
from publisher.gaps import GAP_WIDEN, Gap, fillable
from publisher.health import Health
from publisher.kafka.sink import OutRecord
from publisher.replay.job import Host, ReplayJob
from publisher.replay.progress import FINISHED, Progress, Status
from publisher.replay.request import Origin, ReplayMode, ReplayRequest, is_cancel, plan
from publisher.runtime import Services
from publisher.state.codec import replay_key
from publisher.state.memory import OrgState
from publisher.webex.record import format_timestamp

log = logging.getLogger("publisher.replay")

Route = Callable[[str, bytes], tuple[int, dict[str, Any]]]


class ReplayManager:
    """The replays of one org in this process."""

    def __init__(
        self,
        services: Services,
        org: OrgState,
        *,
        clock: Clock = utcnow,
        health: Health | None = None,
        slot: Host | None = None,
    ) -> None:
        self.slot = slot
        self.services = services
        self.settings = services.settings
        self.org = org
        self.clock = clock
        self.health = health or Health()
        self._jobs: dict[str, ReplayJob] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()
        self._closing = threading.Event()

    def submit(self, request: ReplayRequest) -> tuple[bool, dict[str, Any]]:
        """Start ``request`` unless a job of that id already runs here; (started, status)."""
        with self._lock:
            if self._closing.is_set():
                raise UsageError("the daemon is shutting down; no new replays")
            current = self._jobs.get(request.replay_id)
            if current is not None and Status(current.status()["status"]) not in FINISHED:
                return False, current.status()
            job = ReplayJob(self.services, self.org, request, clock=self.clock, slot=self.slot)
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
        finally:
            if job.request.origin is Origin.GAP:
                self._gap_ended(job)

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

    def cancel_handed_over(self, replay_id: str) -> None:
        """A cancel another replica handed over: cancel the job if it runs here (its end commit
        deletes the cancel record with the request); else there is nothing left to stop."""
        status = self.cancel(replay_id)
        log.info(
            "replay cancelled (handed over)" if status else "handed-over cancel: not running here",
            extra={"replay_id": replay_id},
        )

    def statuses(self) -> list[dict[str, Any]]:
        """The status of every job this manager ran or runs."""
        with self._lock:
            jobs = list(self._jobs.values())
        return [job.status() for job in jobs]

    def running(self, replay_id: str) -> bool:
        with self._lock:
            return replay_id in self._jobs

    def knows(self, replay_id: str) -> bool:
        """A job of this id here, or its record in the org's restored state."""
        with self.org.lock:
            return self.running(replay_id) or replay_id in self.org.replays

    def _saved(self) -> dict[str, dict[str, Any]]:
        """Every replay of the org the state topic holds (a replay another process ran too)."""
        scratch = OrgState(self.org.deployment, self.org.org, partition=self.org.partition)
        self.services.restore([scratch], partition=self.org.partition)
        return scratch.replays

    def resume_unfinished(self) -> list[str]:
        """Start again every replay of this org the restored state says is running."""
        resumed = []
        with self.org.lock:
            saved = dict(self.org.replays)
        for replay_id, data in sorted(saved.items()):
            try:
                progress = Progress.decode(data)
            except (KeyError, ValueError, TypeError):
                log.warning("unreadable replay progress ignored", extra={"replay_id": replay_id})
                continue
            if progress.status is Status.LOST:
                self._track_lost(progress)
            if progress.status is not Status.RUNNING:
                continue
            request = progress.request()
            try:
                started, _ = self.submit(request)
            except UsageError as exc:  # e.g. the span aged out of the feed while we were down
                log.error("replay %s cannot resume: %s", replay_id, exc)  # noqa: TRY400 - expected
                continue
            if started:
                resumed.append(replay_id)
                if request.origin is Origin.GAP:
                    self._gap_started(progress)
        with self.org.lock:
            requests = dict(self.org.requests)
        cancelled = {rid for rid, r in requests.items() if is_cancel(r)}
        for replay_id in sorted(cancelled & set(resumed)):
            # Cancelled by another replica while this one was away.
            self.cancel(replay_id)
        pending = {
            rid: r for rid, r in requests.items() if rid not in saved and rid not in cancelled
        }
        for replay_id, data in sorted(pending.items()):
            # Handed over by another replica and not started yet (or not committed before a crash).
            try:
                request = ReplayRequest.from_json(data, now=self.clock())
                started, _ = self.submit(request)
            except UsageError as exc:
                log.error("replay request %s refused: %s", replay_id, exc)  # noqa: TRY400 - expected
                continue
            if started:
                resumed.append(replay_id)
        if resumed:
            log.info("replays resumed", extra={"replays": resumed})
        return resumed

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

    # --- gaps -----------------------------------------------------------------------------------

    def gap_records(self, gap: Gap, now: datetime) -> list[OutRecord]:
        """The progress record that registers the filling of ``gap`` (written by the live job
        with the cursor that passes the gap), and a lost part's record when the feed's 30 days
        no longer reach all of it."""
        skew = timedelta(seconds=self.settings.webex_clock_skew_seconds)
        parts = fillable(gap, now, skew)
        records = []
        state_topic, org = self.settings.state_topic, self.org
        if parts.fill is not None:
            progress = self._fill_progress(gap, parts.fill.start, parts.fill.end, now)
            records.append(
                OutRecord(
                    state_topic,
                    replay_key(org.deployment, org.org, progress.replay_id),
                    progress.encode(),
                )
            )
        if parts.lost is not None:
            lost = Progress(
                replay_id=f"{gap.fill_id}-lost",
                org=org.org,
                mode=ReplayMode.FILL_GAPS,
                topic=self.settings.events_topic,
                start=parts.lost.start,
                end=parts.lost.end,
                fetch_start=parts.lost.start,
                locations=(),
                windows=(),
                status=Status.LOST,
                error="older than cdr_feed's 30 days: these records cannot be fetched any more",
                updated_at=now,
                origin=Origin.GAP,
            )
            records.append(
                OutRecord(
                    state_topic, replay_key(org.deployment, org.org, lost.replay_id), lost.encode()
                )
            )
        return records

    def _fill_progress(self, gap: Gap, start: datetime, end: datetime, now: datetime) -> Progress:
        request = ReplayRequest(
            replay_id=gap.fill_id,
            start=start,
            end=end,
            mode=ReplayMode.FILL_GAPS,
            widen=GAP_WIDEN,
            origin=Origin.GAP,
        )
        skew = timedelta(seconds=self.settings.webex_clock_skew_seconds)
        the_plan = plan(request, now=now, org_id=self.org.org, skew=skew)
        return Progress.new(request, the_plan, org=self.org.org, topic=self.settings.events_topic)

    def on_gap(self, gap: Gap) -> None:
        """The live job committed ``gap``'s record: start filling it (the lost part, if any, is
        only reported)."""
        skew = timedelta(seconds=self.settings.webex_clock_skew_seconds)
        parts = fillable(gap, self.clock(), skew)
        org = self.org.org
        if parts.lost is not None:
            seconds = (parts.lost.end - parts.lost.start).total_seconds()
            metrics.GAP_LOST_SECONDS.labels(org=org).inc(seconds)
            log.error(
                "gap [%s, %s) is older than cdr_feed's 30 days: those records are lost",
                format_timestamp(parts.lost.start),
                format_timestamp(parts.lost.end),
                extra={"org_id": org},
            )
            self.health.gaps[f"{gap.fill_id}-lost"] = (
                f"[{format_timestamp(parts.lost.start)}, {format_timestamp(parts.lost.end)}) "
                "lost: older than cdr_feed's 30 days"
            )
        if parts.fill is None:
            return
        progress = self._fill_progress(gap, parts.fill.start, parts.fill.end, self.clock())
        with self.org.lock:
            # Memory follows the record the live job committed.
            saved = self.org.replays.setdefault(progress.replay_id, progress.as_dict())
        self._gap_started(Progress.decode(saved))
        self.submit(progress.request())

    def _gap_started(self, progress: Progress) -> None:
        self.health.gaps[progress.replay_id] = (
            f"[{format_timestamp(progress.start)}, {format_timestamp(progress.end)}) being "
            "filled from cdr_feed"
        )
        metrics.GAPS_OPEN.labels(org=self.org.org).set(self._open_gaps())

    def _gap_ended(self, job: ReplayJob) -> None:
        status = job.status()
        if status["status"] == Status.DONE.value:
            self.health.gaps.pop(job.replay_id, None)
            log.info(
                "gap filled from cdr_feed",
                extra={"replay_id": job.replay_id, "published": status["published"]},
            )
        elif status["status"] == Status.FAILED.value:
            self.health.gaps[job.replay_id] = (
                f"[{status['start']}, {status['end']}) could not be filled: {status['error']}"
            )
        metrics.GAPS_OPEN.labels(org=self.org.org).set(self._open_gaps())

    def _track_lost(self, progress: Progress) -> None:
        # Lost gaps stay visible for a day after they were found; then only state shows them.
        found = progress.updated_at or datetime.now(UTC)
        if self.clock() - found < timedelta(days=1):
            self.health.gaps[progress.replay_id] = (
                f"[{format_timestamp(progress.start)}, {format_timestamp(progress.end)}) lost: "
                "older than cdr_feed's 30 days"
            )

    def _open_gaps(self) -> int:
        return sum(1 for key in self.health.gaps if not key.endswith("-lost"))

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
        return {"org_id": self.org.org, "deployment_id": self.settings.deployment_id}

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
        return 200, {**self.identity(), "replays": self.statuses()}

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
