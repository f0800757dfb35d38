"""A replay's progress as kept in the state topic (``replay/<deployment>/<org>/<id>``). Pure."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import orjson

from publisher.replay.request import Origin, Plan, ReplayMode, ReplayRequest
from publisher.webex.record import format_timestamp, parse_timestamp
from publisher.webex.windows import Window

if TYPE_CHECKING:
    from publisher.batch import Batch

PROGRESS_VERSION = 1


class Status(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    CANCELLED = "cancelled"
    STOPPED = "stopped"
    """Interrupted by a shutdown: resumable, and still ``running`` in the state topic."""
    FAILED = "failed"
    LOST = "lost"
    """A gap older than cdr_feed's 30 days: nothing can fill it."""


FINISHED = frozenset({Status.DONE, Status.CANCELLED, Status.STOPPED, Status.FAILED, Status.LOST})


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
    origin: Origin = Origin.OPERATOR

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
            origin=request.origin,
        )

    def committed(self, seq: int, now: datetime) -> Progress:
        return replace(self, seq=seq, updated_at=now)

    def request(self) -> ReplayRequest:
        """The request this progress carries out (to resume it)."""
        return ReplayRequest(
            replay_id=self.replay_id,
            start=self.start,
            end=self.end,
            mode=self.mode,
            org=self.org,
            topic=self.topic,
            locations=self.locations,
            origin=self.origin,
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
            "origin": self.origin.value,
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
            origin=Origin(data.get("origin") or Origin.OPERATOR.value),
        )
