"""A replay request and its plan: what an operator (or a gap) asks for, checked. Pure.

1. Check the span against the feed's rules (30 days back, ending more than 5 minutes ago).
2. Widen its start by ``widen`` (the feed filters on a leg's start time, so a long call that
   began before the span would be missed) and cut it into legal 12 h windows.
The plan is saved with the progress and reused on resume.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from publisher.errors import UsageError, WindowError
from publisher.webex.client import MAX_LOCATIONS
from publisher.webex.record import format_timestamp
from publisher.webex.windows import Endpoint, Window, oldest_start, split

DEFAULT_WIDEN = timedelta(hours=1)
MAX_WIDEN = timedelta(hours=24)
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class ReplayMode(StrEnum):
    FILL_GAPS = "fill-gaps"
    REPUBLISH = "republish"


class Origin(StrEnum):
    OPERATOR = "operator"
    """Asked for by an operator (CLI or POST /replays)."""
    GAP = "gap"
    """Started by the live job for a span the stream could no longer serve."""


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
    origin: Origin = Origin.OPERATOR
    """Not part of the admin API: only the live job starts gap fills."""

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


def plan(
    request: ReplayRequest,
    *,
    now: datetime,
    org_id: str,
    skew: timedelta,
    topic_pattern: re.Pattern[str] | None = None,
    reserved_topics: Collection[str] = (),
) -> Plan:
    """Check the request and cut its (widened) span into feed windows. Pure.

    UsageError names the limit broken: the id's form, an unknown org, an end not after the
    start, a span the feed does not serve (30 days back, ending more than 5 minutes ago), a
    ``topic`` that ``topic_pattern`` does not match in full or that is one of ``reserved_topics``
    (the state and DLQ topics: CDR events there would corrupt state or bury the DLQ).
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
    if request.topic is not None and (
        request.topic in reserved_topics
        or (topic_pattern is not None and not topic_pattern.fullmatch(request.topic))
    ):
        raise UsageError(
            f"topic {request.topic[:100]!r} is not allowed for replays: it must match "
            "CDR_PUBLISHER_REPLAY_TOPIC_PATTERN (default: the events topic or "
            "<events topic>.replay.<name>) and be neither the state nor the DLQ topic"
        )
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


def cancel_request(replay_id: str, org: str) -> dict[str, Any]:
    """The request record that asks a replay's owner to cancel it: it replaces the replay's own
    request record (same key), so a replay not started yet never starts."""
    return {"id": replay_id, "org": org, "cancel": True}


def is_cancel(request: Mapping[str, Any]) -> bool:
    return request.get("cancel") is True
