"""Spans the stream can no longer serve, and the feed replay that fills them. Pure.

``cdr_stream`` keeps 12 hours. A cursor older than that (the daemon was down, a long rate-limit
wait, a 429 storm) leaves a span the stream will never hand over again: a **gap**. The stream
filters on insertion time, so the gap is ``[cursor - overlap, first start the stream accepts)``:
the overlap is re-read on every poll because records near the cursor may become visible late.
Every gap is recorded in the transaction that moves the cursor past it, as a fill-gaps replay of
``cdr_feed`` (30 days) whose progress record is written in that same transaction, so a crash can
lose neither the gap nor its filling. A gap older than the feed's 30 days is recorded as lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from publisher.webex.record import format_timestamp
from publisher.webex.windows import Endpoint, Window, floor_ms, newest_end, oldest_start

# The feed filters on a record's start time (the docs) or its creation, while the gap is a span
# of insertion time: a record inserted in the gap may have started hours before it (late
# records). Fetching from 12 h before the gap, the stream's own retention, catches any record
# the stream itself would still have delivered; dedup and the index drop what is published.
GAP_WIDEN = timedelta(hours=12)
FEED_HEADROOM = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Gap:
    """``[start, end)`` of insertion time that the stream can no longer serve, and why."""

    start: datetime
    end: datetime
    reason: str

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    @property
    def fill_id(self) -> str:
        """The id of the replay that fills this gap: the same gap always gets the same id."""
        start, end = self.start.astimezone(UTC), self.end.astimezone(UTC)
        return f"gap-{start:%Y%m%dT%H%M%S}-{end:%Y%m%dT%H%M%S}"

    def describe(self) -> str:
        return f"[{format_timestamp(self.start)}, {format_timestamp(self.end)})"


def join(first: Gap | None, second: Gap | None) -> Gap | None:
    """One gap covering both (they are adjacent or overlap), or whichever exists."""
    if first is None or second is None:
        return first or second
    return Gap(min(first.start, second.start), max(first.end, second.end), first.reason)


@dataclass(frozen=True, slots=True)
class Fillable:
    """What of a gap the feed can still serve (``fill``) and what it cannot (``lost``)."""

    fill: Window | None
    lost: Window | None


def fillable(gap: Gap, now: datetime, skew: timedelta) -> Fillable:
    """Cut ``gap`` at the oldest start the feed accepts now, keeping an hour for the replay to
    reach its first window through the rate limiter. Pure."""
    oldest = oldest_start(Endpoint.FEED, now, skew) + FEED_HEADROOM
    newest = newest_end(Endpoint.FEED, now, skew)
    # Whole milliseconds, as the progress record keeps them: the replay is the same job when
    # its request is compared with what was recorded.
    start, end = floor_ms(gap.start), floor_ms(min(gap.end, newest))
    lost = Window(start, min(end, oldest)) if start < oldest else None
    fill_start = max(start, oldest)
    fill = Window(fill_start, end) if fill_start < end else None
    return Fillable(fill=fill, lost=lost)
