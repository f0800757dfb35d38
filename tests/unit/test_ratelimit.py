"""The per-token limiter: sliding-window limits, 429 holds, priority, and the shared registry."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from publisher.webex.ratelimit import (
    Kind,
    LimiterRegistry,
    RateLimiter,
    seed_from_unix,
    sends_as_unix,
)


class FakeTime:
    """A clock that only moves when someone sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def limiter(t: FakeTime, initial: float = 1.0, page: float = 10.0) -> RateLimiter:
    return RateLimiter(
        initial_per_minute=initial, page_per_minute=page, clock=t.clock, sleep=t.sleep, slack=0.0
    )


def test_one_initial_request_a_minute() -> None:
    """The first initial request goes at once; the second waits a full minute."""
    t = FakeTime()
    lim = limiter(t)

    assert lim.acquire(Kind.INITIAL) == 0.0
    assert lim.acquire(Kind.INITIAL) == pytest.approx(60.0)
    assert t.now == pytest.approx(1060.0)


def test_ten_pages_a_minute_in_any_sixty_seconds() -> None:
    """Ten page requests go at once, the eleventh waits until the first is 60 s old."""
    t = FakeTime()
    lim = limiter(t)
    sent = []
    for _ in range(21):
        lim.acquire(Kind.PAGE)
        sent.append(t.now)

    assert sent[:10] == [1000.0] * 10
    assert sent[10] == pytest.approx(1060.0)
    # Never more than ten in any 60-second span.
    for i in range(len(sent) - 10):
        assert sent[i + 10] - sent[i] >= 60.0 - 1e-9


def test_kinds_are_counted_apart() -> None:
    """An initial request does not use up a page slot, nor the reverse."""
    t = FakeTime()
    lim = limiter(t)
    lim.acquire(Kind.INITIAL)
    for _ in range(10):
        lim.acquire(Kind.PAGE)

    assert t.now == 1000.0


def test_fractional_rate_spaces_requests() -> None:
    """0.2 initial requests a minute (the older documented limit) is one every 5 minutes."""
    t = FakeTime()
    lim = limiter(t, initial=0.2)
    lim.acquire(Kind.INITIAL)
    lim.acquire(Kind.INITIAL)

    assert t.now == pytest.approx(1300.0)


def test_defer_holds_every_kind() -> None:
    """After a 429's Retry-After, both kinds wait until the hold ends."""
    t = FakeTime()
    lim = limiter(t)
    lim.defer(42.0)

    assert lim.acquire(Kind.PAGE) == pytest.approx(42.0)
    lim.defer(5.0)
    assert lim.acquire(Kind.INITIAL) == pytest.approx(5.0)


def test_a_sleep_that_raises_leaves_the_queue_clean() -> None:
    """A waiter aborted by its sleep (shutdown) gives up its place; others are not blocked."""
    t = FakeTime()
    lim = limiter(t)
    lim.acquire(Kind.INITIAL)

    def abort(_seconds: float) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        lim.acquire(Kind.INITIAL, sleep=abort)
    assert lim.acquire(Kind.INITIAL) == pytest.approx(60.0)


def test_higher_priority_waiter_goes_first() -> None:
    """When a replay and the live stream both wait for the next slot, the stream gets it."""
    lock = threading.Lock()
    now = [0.0]
    order: list[str] = []
    both_waiting = threading.Barrier(2)

    def clock() -> float:
        with lock:
            return now[0]

    lim = RateLimiter(initial_per_minute=1.0, clock=clock, sleep=lambda _s: None, slack=0.0)
    lim.acquire(Kind.INITIAL)  # the slot is taken until t=60
    release = threading.Event()

    def sleeper(seconds: float) -> None:
        # Time stands still until both callers are queued, then jumps past the slot.
        release.wait(5)
        with lock:
            now[0] = max(now[0], 60.0)
        threading.Event().wait(min(seconds, 0.01))

    def caller(name: str, priority: int) -> None:
        both_waiting.wait(5)
        lim.acquire(Kind.INITIAL, priority, sleep=sleeper)
        order.append(name)

    replay = threading.Thread(target=caller, args=("replay", 0))
    live = threading.Thread(target=caller, args=("live", 10))
    replay.start()
    live.start()
    while len(lim._queues[Kind.INITIAL]) < 2:
        threading.Event().wait(0.001)
    release.set()
    live.join(10)
    with lock:
        now[0] = 200.0
    replay.join(10)

    assert order == ["live", "replay"]


def test_registry_shares_one_limiter_per_identity_and_keeps_only_a_hash() -> None:
    """Two callers of one token get the same limiter; the registry never holds the token."""
    registry = LimiterRegistry()
    a = registry.get("static:secret-token-value", initial_per_minute=1, page_per_minute=10)
    b = registry.get("static:secret-token-value", initial_per_minute=5, page_per_minute=50)
    c = registry.get("other", initial_per_minute=1, page_per_minute=10)

    assert a is b
    assert a is not c
    assert len(registry) == 2
    assert all("secret" not in key for key in registry._limiters)


def test_rates_must_be_positive() -> None:
    """A zero rate is a configuration mistake, refused at once."""
    with pytest.raises(ValueError, match="positive"):
        RateLimiter(initial_per_minute=0)


def test_a_restart_counts_what_the_previous_process_spent() -> None:
    """Sends recorded by the previous process (Unix times) are counted: a limiter made after a
    restart waits out the minute instead of spending it again."""
    t = FakeTime()
    before = limiter(t, initial=2.0)
    before.acquire(Kind.INITIAL)
    t.sleep(10)
    before.acquire(Kind.INITIAL)
    unix = lambda: 1_000_000.0 + t.now  # noqa: E731 - a clock
    recorded = sends_as_unix(before, Kind.INITIAL, unix=unix, monotonic=t.clock)

    t.sleep(5)
    after = limiter(t, initial=2.0)
    seed_from_unix(after, Kind.INITIAL, recorded, unrecorded=0, unix=unix, monotonic=t.clock)

    # Two sends, at 0 s and 10 s, allow the next at 60 s (2 a minute): 45 s after the restart.
    assert after.acquire(Kind.INITIAL) == pytest.approx(45.0)


def test_an_unrecorded_request_after_the_last_commit_is_taken_as_just_made() -> None:
    """With nothing recorded, the tail (a request and its retries) counts up to the limit: a
    1-a-minute token waits the minute; a 10-a-minute one keeps 4 of its 10."""
    t = FakeTime()
    lim = limiter(t)
    seed_from_unix(lim, Kind.INITIAL, (), unrecorded=6, unix=t.clock, monotonic=t.clock)
    seed_from_unix(lim, Kind.PAGE, (), unrecorded=6, unix=t.clock, monotonic=t.clock)

    assert [lim.acquire(Kind.PAGE) for _ in range(4)] == [0.0] * 4
    assert lim.acquire(Kind.INITIAL) == pytest.approx(60.0)


@settings(max_examples=200, deadline=None)
@given(
    kind=st.sampled_from([Kind.INITIAL, Kind.PAGE]),
    delays=st.lists(
        st.tuples(st.floats(0.0, 20.0), st.floats(0.0, 20.0)), min_size=12, max_size=40
    ),
)
def test_webex_never_counts_more_than_the_limit_whatever_the_network_delays(
    kind: Kind, delays: list[tuple[float, float]]
) -> None:
    """Each request reaches Webex ``there`` seconds after it was sent and its reply comes back
    ``back`` seconds later. Webex counts it on arrival; counted from the send, a request slowed
    on the way (a loaded host, a slow network) put ``limit + 1`` in one of Webex's minutes
    (31 of 30 in a fleet test). Counted from the reply, never."""
    t = FakeTime()
    lim = limiter(t)
    limit = lim.limit(kind)
    arrivals: list[float] = []
    for there, back in delays:
        slot = lim.take(kind)
        arrivals.append(t.now + there)
        t.sleep(there + back)
        slot.answered()
    arrivals.sort()
    for i in range(len(arrivals) - limit):
        assert arrivals[i + limit] - arrivals[i] >= 60.0 - 1e-6, arrivals


def test_a_request_in_flight_holds_its_place_until_answered() -> None:
    """Ten page requests in flight at once: the eleventh waits for one of them to be answered,
    then for that one's minute."""
    t = FakeTime()
    lim = limiter(t)
    in_flight = [lim.take(Kind.PAGE) for _ in range(10)]

    def sleep(seconds: float) -> None:
        t.sleep(seconds)
        if t.now >= 1030.0 and in_flight:
            in_flight.pop().answered()  # one reply comes back 30 s on

    eleventh = lim.take(Kind.PAGE, sleep=sleep)

    assert t.now == pytest.approx(1030.0 + 60.0, abs=0.1)
    assert eleventh.waited == pytest.approx(90.0, abs=0.1)
    # The nine still in flight count as now; the answered one is gone from the window.
    assert len(lim.sends(Kind.PAGE)) == 10


# --- a move to another process: what the new owner counts ---------------------------------------

UNIX = 1_000_000.0


class Owner:
    """One process owning the token in turn: its own limiter on the shared fake time, seeded
    from the last record in the state topic as ``Runtime.client`` seeds it."""

    def __init__(self, t: FakeTime, per_minute: float, before: Owner | None = None) -> None:
        self.t = t
        self.lim = limiter(t, initial=per_minute)
        # The record in the state topic: the one before, until this owner commits.
        self.record: tuple[tuple[float, ...], float | None] | None = None
        if before is not None:
            self.record = before.record
            recorded, at = self.record or ((), None)
            seed_from_unix(
                self.lim, Kind.INITIAL, recorded, unrecorded=6, recorded_at=at,
                unix=self.unix, monotonic=t.clock,
            )  # fmt: skip
        self.sent: list[float] = []

    def unix(self) -> float:
        return UNIX + self.t.now

    def send(self) -> float:
        waited = self.lim.acquire(Kind.INITIAL)
        self.sent.append(self.t.now)
        return waited

    def commit(self) -> None:
        """What LiveTask._cursor writes: the time first, then the sends."""
        at = self.unix()
        sends = sends_as_unix(self.lim, Kind.INITIAL, unix=self.unix, monotonic=self.t.clock)
        self.record = (sends, at)


def test_a_move_soon_after_the_minutes_request_waits_what_is_left_of_the_minute() -> None:
    """Webex's 1 initial request a minute: the owner sent it, recorded it and died; its limiter
    could send no other before the minute was out, so the next owner waits out that minute
    (35 s here), not a whole new one from the move (60 s, as when every move was taken to
    follow an unrecorded request)."""
    t = FakeTime()
    first = Owner(t, 1.0)
    first.send()
    t.sleep(1)
    first.commit()
    t.sleep(24)

    second = Owner(t, 1.0, before=first)

    assert second.send() == pytest.approx(35.0)


def test_a_move_after_the_minute_came_free_takes_a_request_as_just_made() -> None:
    """Once the minute is out the old owner may have sent again before it died, unrecorded:
    the new owner counts one as made at the move and waits a minute from it."""
    t = FakeTime()
    first = Owner(t, 1.0)
    first.send()
    first.commit()
    t.sleep(70)

    second = Owner(t, 1.0, before=first)

    assert second.send() == pytest.approx(60.0)


def test_a_token_polled_at_its_budget_moves_with_about_one_polls_wait() -> None:
    """A token polled at exactly its budget (30 a minute, every 2 s) moves three times in
    40 s, as the failover benchmark moves it (kill, give back, kill). Six requests taken as made
    at each move cost each new owner 7 s before its first request; counting only what the owner
    before could have sent in the 5 s since its last record, about one poll."""
    t = FakeTime()
    owner = Owner(t, 30.0)
    waits: list[float] = []
    for stint in (120, 10, 3, 10):
        for _ in range(stint // 2):
            owner.send()
            owner.commit()
            t.sleep(2)
        t.sleep(5)  # killed; the group moves the slot after the session timeout
        owner = Owner(t, 30.0, before=owner)
        waits.append(owner.send())

    assert max(waits) < 4.0, waits


@settings(max_examples=300, deadline=None)
@given(
    per_minute=st.sampled_from([1.0, 2.0, 10.0, 30.0]),
    stints=st.lists(
        st.tuples(
            st.lists(st.floats(0.0, 30.0), min_size=1, max_size=12),  # gaps between sends
            st.integers(0, 12),  # of those, how many come after the last commit
            st.floats(0.0, 90.0),  # from its death to the next owner's first send
        ),
        min_size=2,
        max_size=5,
    ),
)
def test_owners_in_turn_never_send_more_than_the_limit_in_a_minute(
    per_minute: float, stints: list[tuple[list[float], int, float]]
) -> None:
    """Whatever each owner sent after the last record in the state topic (at most a request
    and its five retries, as ``Runtime.client`` assumes, by one owner or by two when the second
    died before its first commit) and however soon the next took over, all their sends together
    never put more than the limit in one period: the bound on unrecorded requests is never too
    small."""
    t = FakeTime()
    owner: Owner | None = None
    everything: list[float] = []
    unrecorded_so_far = 0  # sends after the record the next owner will read
    for stint_gaps, unrecorded, handover in stints:
        owner = Owner(t, per_minute, before=owner)
        gaps = stint_gaps
        after_commit = min(unrecorded, len(gaps))
        if after_commit == len(gaps):  # no commit: the previous record stands
            after_commit = min(after_commit, 6 - unrecorded_so_far)
            gaps = gaps[:after_commit]
            unrecorded_so_far += after_commit
        else:
            after_commit = min(after_commit, 6)
            unrecorded_so_far = after_commit
        for i, gap in enumerate(gaps):
            t.sleep(gap)
            owner.send()
            if i < len(gaps) - after_commit:
                owner.commit()
        everything += owner.sent
        t.sleep(handover)
    everything.sort()
    limit = max(1, int(per_minute))
    period = limit * 60.0 / per_minute
    for i in range(len(everything) - limit):
        # 1 ms: the state topic keeps times to the millisecond (and the limiter's 1 % slack
        # covers far more).
        assert everything[i + limit] - everything[i] >= period - 1e-3, everything
