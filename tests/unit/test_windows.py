"""Window arithmetic: every boundary of both endpoints, with the clock-skew margin."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from publisher.errors import WindowError
from publisher.webex.windows import (
    Endpoint,
    Window,
    check,
    format_time,
    longest,
    newest_end,
    oldest_start,
    split,
)

NOW = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
SKEW = timedelta(seconds=30)


def test_endpoint_paths() -> None:
    """The two endpoints map to the documented paths."""
    assert Endpoint.STREAM.path == "/v1/cdr_stream"
    assert Endpoint.FEED.path == "/v1/cdr_feed"
    assert Endpoint("feed") is Endpoint.FEED


def test_format_time_is_the_wire_form() -> None:
    """Times go out as YYYY-MM-DDTHH:MM:SS.mmmZ in UTC, sub-millisecond digits dropped."""
    plus_two = timezone(timedelta(hours=2))
    assert format_time(datetime(2026, 3, 1, 14, 5, 6, 789999, tzinfo=plus_two)) == (
        "2026-03-01T12:05:06.789Z"
    )


def test_stream_bounds_keep_the_margin() -> None:
    """Stream: start >= now-12h+skew, end <= now-1min-skew, both on whole milliseconds."""
    assert oldest_start(Endpoint.STREAM, NOW, SKEW) == datetime(
        2026, 3, 1, 0, 0, 30, 124000, tzinfo=UTC
    )
    assert newest_end(Endpoint.STREAM, NOW, SKEW) == datetime(
        2026, 3, 1, 11, 58, 30, 123000, tzinfo=UTC
    )


def test_feed_bounds_keep_the_margin_and_strictness() -> None:
    """Feed: start >= now-30d+skew; end strictly more than 5 min ago (one more second)."""
    assert oldest_start(Endpoint.FEED, NOW, 0) == datetime(
        2026, 1, 30, 12, 0, 0, 124000, tzinfo=UTC
    )
    assert newest_end(Endpoint.FEED, NOW, 0) == datetime(2026, 3, 1, 11, 54, 59, 123000, tzinfo=UTC)
    assert newest_end(Endpoint.FEED, NOW, 30.0) == datetime(
        2026, 3, 1, 11, 54, 29, 123000, tzinfo=UTC
    )


def test_longest_window_keeps_the_margin() -> None:
    """The longest window sent is the limit minus the margin."""
    assert longest(Endpoint.STREAM, SKEW) == timedelta(hours=2) - SKEW
    assert longest(Endpoint.FEED, 0) == timedelta(hours=12)


@pytest.mark.parametrize(
    ("endpoint", "start", "end", "limit"),
    [
        (Endpoint.STREAM, NOW - timedelta(hours=12), NOW - timedelta(hours=11), "12 hours"),
        (Endpoint.STREAM, NOW - timedelta(hours=1), NOW - timedelta(seconds=60), "1 minute"),
        (Endpoint.STREAM, NOW - timedelta(hours=3), NOW - timedelta(minutes=30), "2 hours"),
        (Endpoint.FEED, NOW - timedelta(days=30), NOW - timedelta(days=29), "30 days"),
        (Endpoint.FEED, NOW - timedelta(hours=1), NOW - timedelta(minutes=5), "5 minutes"),
        (Endpoint.FEED, NOW - timedelta(hours=13), NOW - timedelta(minutes=30), "12 hours"),
    ],
)
def test_check_names_the_broken_limit(
    endpoint: Endpoint, start: datetime, end: datetime, limit: str
) -> None:
    """An illegal window raises WindowError whose message names the limit it breaks."""
    with pytest.raises(WindowError, match=limit):
        check(endpoint, Window(start, end), NOW, SKEW)


def test_check_accepts_the_exact_bounds() -> None:
    """A window from the oldest start to the newest end of the right length is legal."""
    end = newest_end(Endpoint.STREAM, NOW, SKEW)
    check(Endpoint.STREAM, Window(end - longest(Endpoint.STREAM, SKEW), end), NOW, SKEW)
    start = oldest_start(Endpoint.FEED, NOW, SKEW)
    check(Endpoint.FEED, Window(start, start + longest(Endpoint.FEED, SKEW)), NOW, SKEW)


def test_split_cuts_a_long_span_into_contiguous_legal_windows() -> None:
    """A 10-hour stream span becomes 6 windows of at most 2h-30s that tile it exactly."""
    start = NOW - timedelta(hours=11)
    end = NOW - timedelta(hours=1)
    windows = split(Endpoint.STREAM, start, end, NOW, SKEW)

    assert len(windows) == 6
    assert windows[0].start == start.replace(microsecond=123000)
    assert windows[-1].end == end.replace(microsecond=123000)
    for left, right in itertools.pairwise(windows):
        assert left.end == right.start
    for window in windows:
        check(Endpoint.STREAM, window, NOW, SKEW)


def test_split_refuses_what_cutting_cannot_fix() -> None:
    """Too old, too recent, or empty spans raise WindowError instead of being trimmed."""
    with pytest.raises(WindowError, match="12 hours"):
        split(Endpoint.STREAM, NOW - timedelta(hours=13), NOW - timedelta(hours=2), NOW, SKEW)
    with pytest.raises(WindowError, match="5 minutes"):
        split(Endpoint.FEED, NOW - timedelta(hours=1), NOW, NOW, SKEW)
    with pytest.raises(WindowError, match="after the start"):
        split(Endpoint.FEED, NOW - timedelta(hours=1), NOW - timedelta(hours=2), NOW, SKEW)


def test_naive_datetimes_are_refused() -> None:
    """A datetime without a zone is a programming error, not a guess."""
    with pytest.raises(ValueError, match="time zone"):
        Window(datetime(2026, 1, 1), datetime(2026, 1, 1, 1, tzinfo=UTC))  # noqa: DTZ001


@given(
    endpoint=st.sampled_from(list(Endpoint)),
    age=st.floats(min_value=0.0, max_value=1.0),
    length=st.floats(min_value=0.0, max_value=1.0),
    skew_s=st.integers(min_value=0, max_value=120),
)
def test_split_of_any_legal_span_is_legal_and_exact(
    endpoint: Endpoint, age: float, length: float, skew_s: int
) -> None:
    """For any span inside the bounds, split returns legal windows that tile it exactly."""
    oldest = oldest_start(endpoint, NOW, skew_s)
    newest = newest_end(endpoint, NOW, skew_s)
    room = newest - oldest
    start = oldest + room * age * 0.999
    end = start + (newest - start) * length + timedelta(milliseconds=1)
    end = min(end, newest)
    if end.replace(microsecond=end.microsecond // 1000 * 1000) <= start.replace(
        microsecond=start.microsecond // 1000 * 1000
    ):
        return
    windows = split(endpoint, start, end, NOW, skew_s)

    assert windows[0].start <= start
    assert start - windows[0].start < timedelta(milliseconds=1)
    assert end - windows[-1].end < timedelta(milliseconds=1)
    for left, right in itertools.pairwise(windows):
        assert left.end == right.start
    for window in windows:
        check(endpoint, window, NOW, skew_s)
