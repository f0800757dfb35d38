"""Which time windows the Webex CDR endpoints accept, and how to cut a span into them. Pure.

Webex refuses (400) a window that is one second too old, too recent or too long, judged by its
own clock when the request arrives. So every boundary here keeps ``skew`` of margin, and every
window edge is a whole millisecond (the wire format ``YYYY-MM-DDTHH:MM:SS.mmmZ`` has no finer
digit) rounded inward, so that what is sent is never looser than what was checked.

=========  ==================  ===========================  ===============
endpoint   oldest startTime    newest endTime               longest window
=========  ==================  ===========================  ===============
stream     12 h ago            at least 1 minute ago        2 h
feed       30 days ago         strictly more than 5 min ago 12 h
=========  ==================  ===========================  ===============
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum

from publisher.errors import WindowError

_MS = timedelta(milliseconds=1)


@dataclass(frozen=True)
class Rules:
    """One endpoint's window limits, as Webex states them (the margin is added on top)."""

    max_age: timedelta
    min_delay: timedelta
    # "more than 5 minutes ago" (feed) is strict where "at least 1 minute ago" (stream) is not;
    # Webex enforces to the second, so a strict bound costs one more second.
    strict_delay: bool
    max_length: timedelta
    describe_age: str
    describe_delay: str
    describe_length: str


_STREAM_RULES = Rules(
    max_age=timedelta(hours=12),
    min_delay=timedelta(minutes=1),
    strict_delay=False,
    max_length=timedelta(hours=2),
    describe_age="12 hours",
    describe_delay="at least 1 minute ago",
    describe_length="2 hours",
)
_FEED_RULES = Rules(
    max_age=timedelta(days=30),
    min_delay=timedelta(minutes=5),
    strict_delay=True,
    max_length=timedelta(hours=12),
    describe_age="30 days",
    describe_delay="more than 5 minutes ago",
    describe_length="12 hours",
)


class Endpoint(Enum):
    """The two CDR endpoints: ``stream`` for live ingestion, ``feed`` for history and replay."""

    STREAM = "stream"
    FEED = "feed"

    @property
    def path(self) -> str:
        return "/v1/cdr_stream" if self is Endpoint.STREAM else "/v1/cdr_feed"

    @property
    def rules(self) -> Rules:
        return _STREAM_RULES if self is Endpoint.STREAM else _FEED_RULES


@dataclass(frozen=True)
class Window:
    """A half-open span ``[start, end)`` of tz-aware UTC datetimes, as sent to Webex."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        _require_aware(self.start, "start")
        _require_aware(self.end, "end")

    @property
    def length(self) -> timedelta:
        return self.end - self.start


def format_time(moment: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.mmmZ`` in UTC, the form both endpoints take."""
    _require_aware(moment, "time")
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def newest_end(endpoint: Endpoint, now: datetime, skew: timedelta | float) -> datetime:
    """The most recent ``endTime`` Webex accepts at ``now`` (minus the margin), ms-aligned."""
    rules = endpoint.rules
    bound = now - rules.min_delay - _margin(skew)
    if rules.strict_delay:
        bound -= timedelta(seconds=1)
    return _floor_ms(bound)


def oldest_start(endpoint: Endpoint, now: datetime, skew: timedelta | float) -> datetime:
    """The oldest ``startTime`` Webex accepts at ``now`` (plus the margin), ms-aligned."""
    return _ceil_ms(now - endpoint.rules.max_age + _margin(skew))


def longest(endpoint: Endpoint, skew: timedelta | float) -> timedelta:
    """The longest window sent: the limit minus the margin (never below one second)."""
    length = endpoint.rules.max_length - _margin(skew)
    return max(_floor_delta_ms(length), timedelta(seconds=1))


def check(endpoint: Endpoint, window: Window, now: datetime, skew: timedelta | float) -> None:
    """Raise :class:`WindowError` naming the broken limit unless Webex would accept ``window``."""
    rules = endpoint.rules
    if window.end <= window.start:
        raise WindowError(
            f"{endpoint.value} window {_show(window)}: the end must be after the start"
        )
    oldest = oldest_start(endpoint, now, skew)
    if window.start < oldest:
        raise WindowError(
            f"{endpoint.value} window {_show(window)}: startTime may be at most "
            f"{rules.describe_age} old (oldest accepted now: {format_time(oldest)}, "
            f"keeping a {_margin(skew).total_seconds():g} s margin)"
        )
    newest = newest_end(endpoint, now, skew)
    if window.end > newest:
        raise WindowError(
            f"{endpoint.value} window {_show(window)}: endTime must be {rules.describe_delay} "
            f"(newest accepted now: {format_time(newest)}, keeping a "
            f"{_margin(skew).total_seconds():g} s margin)"
        )
    if window.length > longest(endpoint, skew):
        raise WindowError(
            f"{endpoint.value} window {_show(window)}: a window may be at most "
            f"{rules.describe_length} long"
        )


def split(
    endpoint: Endpoint, start: datetime, end: datetime, now: datetime, skew: timedelta | float
) -> list[Window]:
    """Cut ``[start, end)`` into consecutive legal windows, oldest first.

    Only the length can be fixed by cutting: a span that starts too long ago or ends too recently
    raises :class:`WindowError`, because moving its edges would silently drop records.
    """
    _require_aware(start, "start")
    _require_aware(end, "end")
    # The wire format has no digit below the millisecond; both edges drop it the same way, so
    # spans cut from one another stay contiguous.
    first, last = _floor_ms(start), _floor_ms(end)
    if last <= first:
        raise WindowError(
            f"{endpoint.value} span {_show(Window(start, end))}: the end must be after the start"
        )
    step = longest(endpoint, skew)
    windows: list[Window] = []
    cursor = first
    while cursor < last:
        stop = min(cursor + step, last)
        windows.append(Window(cursor, stop))
        cursor = stop
    # The first and last windows carry the span's age and recency; check both, and every
    # window's length by construction.
    check(endpoint, windows[0], now, skew)
    check(endpoint, windows[-1], now, skew)
    return windows


def _margin(skew: timedelta | float) -> timedelta:
    margin = skew if isinstance(skew, timedelta) else timedelta(seconds=skew)
    if margin < timedelta(0):
        raise ValueError("the clock skew margin cannot be negative")
    return margin


def _require_aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} {moment.isoformat()} has no time zone")


def floor_ms(moment: datetime) -> datetime:
    """``moment`` without its sub-millisecond digits (what the wire format can carry)."""
    return moment - timedelta(microseconds=moment.microsecond % 1000)


_floor_ms = floor_ms


def _ceil_ms(moment: datetime) -> datetime:
    floor = _floor_ms(moment)
    return floor if floor == moment else floor + _MS


def _floor_delta_ms(delta: timedelta) -> timedelta:
    return delta - timedelta(microseconds=delta.microseconds % 1000)


def _show(window: Window) -> str:
    return f"[{format_time(window.start)}, {format_time(window.end)})"
