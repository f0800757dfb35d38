"""Client-side rate limits of the Webex CDR API, per token. No I/O: clock and sleep are injected.

Webex allows, per token, 1 initial request and 10 pagination requests a minute and answers 429
beyond that. Its counters are per token, not per caller, so every caller using one token in this
process (the live stream, a replay, the ``fetch`` command) must draw from ONE limiter:
:func:`limiter_for` keeps them in a registry keyed by a hash of the token's identity.

Each kind of request is a sliding window: at most ``n`` requests in any ``n * 60 / rate``
seconds (``n`` = the whole part of the rate, at least 1; so 10/min allows a burst of 10, and
0.2/min one request every 5 minutes). A sliding window is never looser than the server's own
count, whether Webex counts per calendar minute or over any 60 seconds, where a token bucket
of the same rate would allow nearly twice the rate in its first minute.

A request counts from when its reply came back, not from when it was sent: Webex counts it
somewhere between the two, so only ``send(n + limit) >= reply(n) + span`` guarantees that
Webex never sees ``limit + 1`` in one span, however long the network or a loaded host delays a
request (counting from the send alone let a fleet test see 31 requests in a minute of 30).
:meth:`RateLimiter.take` hands out a :class:`Slot` that the caller marks answered; a request in
flight holds its place in the window until then.

Waiters queue by priority (higher first, then first come first served), so the live stream goes
before a replay when both wait for the same kind of slot. A 429 from Webex is reported with
:meth:`RateLimiter.defer`, which holds every caller of the token until the ``Retry-After`` ends.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import math
import threading
import time
from collections.abc import Callable
from enum import Enum

Clock = Callable[[], float]
Sleep = Callable[[float], None]


class Kind(Enum):
    """Webex counts initial requests (a new window) apart from next-page requests."""

    INITIAL = "initial"
    PAGE = "page"


# A waiter that is not first in line re-checks at least this often (in clock seconds) once the
# slot it waits behind is due: the head may have given up, and no waiter ever spins.
_QUEUE_RECHECK_S = 0.05


class Slot:
    """One request's place in its window: ``at`` is when it counts from (infinity while the
    request is in flight). Call :meth:`answered` when the reply, or the failure, is back."""

    __slots__ = ("_clock", "at", "waited")

    def __init__(self, waited: float, clock: Clock) -> None:
        self.waited = waited
        self.at = math.inf
        self._clock = clock

    def answered(self) -> None:
        if self.at == math.inf:
            self.at = self._clock()


class _Window:
    """The sliding window of one kind: the last ``limit`` requests, by when each counts from."""

    def __init__(self, per_minute: float, slack: float) -> None:
        if per_minute <= 0:
            raise ValueError("a rate must be positive")
        self.limit = max(1, int(per_minute))
        self.period = self.limit * 60.0 / per_minute
        # Slack covers clock drift between our count and Webex's.
        self.span = self.period * (1.0 + slack)
        self.slots: list[Slot] = []

    def free_at(self) -> float:
        """When one more request may go: the earliest-counted of the last ``limit`` requests
        must be a span old (never, while all of them are in flight)."""
        if len(self.slots) < self.limit:
            return -math.inf
        return min(slot.at for slot in self.slots) + self.span

    def take(self, slot: Slot) -> None:
        if len(self.slots) >= self.limit:
            self.slots.remove(min(self.slots, key=lambda one: one.at))
        self.slots.append(slot)


class RateLimiter:
    """One token's limits: :meth:`acquire` blocks (with the injected sleep) until a slot is free.

    Thread-safe; the lock is never held while sleeping.
    """

    def __init__(
        self,
        *,
        initial_per_minute: float = 1.0,
        page_per_minute: float = 10.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
        slack: float = 0.01,
    ) -> None:
        self.initial_per_minute = initial_per_minute
        self.page_per_minute = page_per_minute
        self._clock = clock
        self._sleep = sleep
        self._windows = {
            Kind.INITIAL: _Window(initial_per_minute, slack),
            Kind.PAGE: _Window(page_per_minute, slack),
        }
        self._held_until = float("-inf")
        self._queues: dict[Kind, list[tuple[int, int]]] = {Kind.INITIAL: [], Kind.PAGE: []}
        self._tickets = itertools.count()
        self._lock = threading.Lock()

    def acquire(self, kind: Kind, priority: int = 0, *, sleep: Sleep | None = None) -> float:
        """Wait for a slot of ``kind`` and take it, counted from now; return the clock seconds
        waited. For a request whose reply takes time, use :meth:`take`."""
        slot = self.take(kind, priority, sleep=sleep)
        slot.answered()
        return slot.waited

    def take(self, kind: Kind, priority: int = 0, *, sleep: Sleep | None = None) -> Slot:
        """Wait for a slot of ``kind`` and take it; the caller marks it answered once the reply
        is back (until then it counts as in flight).

        A higher ``priority`` goes first among waiters of the same kind. ``sleep`` overrides the
        limiter's (a caller's own sleep may raise to abort the wait, e.g. on shutdown).
        """
        nap = sleep or self._sleep
        started = self._clock()
        entry = (-priority, next(self._tickets))
        queue = self._queues[kind]
        with self._lock:
            heapq.heappush(queue, entry)
        try:
            while True:
                with self._lock:
                    now = self._clock()
                    due = self._due(kind)
                    first = queue[0] == entry
                    if first and due <= now:
                        heapq.heappop(queue)
                        slot = Slot(now - started, self._clock)
                        self._windows[kind].take(slot)
                        return slot
                    if due == math.inf:  # every slot in flight: re-check when one is answered
                        delay = _QUEUE_RECHECK_S
                    else:
                        delay = due - now if first else max(due - now, _QUEUE_RECHECK_S)
                nap(delay)
        except BaseException:
            with self._lock:
                if entry in queue:
                    queue.remove(entry)
                    heapq.heapify(queue)
            raise

    def sends(self, kind: Kind) -> list[float]:
        """The clock times the last requests of ``kind`` count from (one in flight: now)."""
        with self._lock:
            now = self._clock()
            return sorted(min(slot.at, now) for slot in self._windows[kind].slots)

    def seed(self, kind: Kind, times: list[float]) -> None:
        """Count requests made before this limiter existed (by a previous process of the same
        token, as its last commit recorded them, and its unrecorded tail): a restart must not
        spend the same minute's budget twice."""
        with self._lock:
            window = self._windows[kind]
            seeded = []
            for at in times:
                slot = Slot(0.0, self._clock)
                slot.at = at
                seeded.append(slot)
            merged = sorted([*window.slots, *seeded], key=lambda one: one.at)
            window.slots = merged[-window.limit :]

    def limit(self, kind: Kind) -> int:
        return self._windows[kind].limit

    def sends_possible(self, kind: Kind, held: list[float], *, since: float, until: float) -> int:
        """How many requests of ``kind`` a limiter of these rates holding ``held`` at ``since``
        could have let go by ``until`` (at most the limit: more never count in one span).

        An upper bound: each counted as answered the moment it was sent, each sent the moment
        its place came free, with no slack."""
        window = self._windows[kind]
        times = sorted(held)
        count = 0
        at = since
        while count < window.limit:
            if len(times) >= window.limit:
                at = max(at, times[-window.limit] + window.period)
            if at > until:
                break
            times = sorted([*times, at])
            count += 1
        return count

    def defer(self, seconds: float) -> None:
        """Hold every request of this token for ``seconds`` from now (a 429's Retry-After)."""
        with self._lock:
            self._held_until = max(self._held_until, self._clock() + seconds)

    def next_free(self, kind: Kind) -> float:
        """The clock time at which a request of ``kind`` could be sent (<= now: at once)."""
        with self._lock:
            return self._due(kind)

    def _due(self, kind: Kind) -> float:
        return max(self._windows[kind].free_at(), self._held_until)


class LimiterRegistry:
    """The limiters of this process, one per token, keyed by a hash of the token's identity."""

    def __init__(self) -> None:
        self._limiters: dict[str, RateLimiter] = {}
        self._lock = threading.Lock()

    def get(
        self,
        identity: str,
        *,
        initial_per_minute: float,
        page_per_minute: float,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> RateLimiter:
        """The limiter shared by every caller of ``identity``; created with these rates if new.

        Only a SHA-256 of ``identity`` is kept, so a token used as its own identity is never held
        here in the clear.
        """
        key = hashlib.sha256(identity.encode("utf-8")).hexdigest()
        with self._lock:
            limiter = self._limiters.get(key)
            if limiter is None:
                limiter = RateLimiter(
                    initial_per_minute=initial_per_minute,
                    page_per_minute=page_per_minute,
                    clock=clock,
                    sleep=sleep,
                )
                self._limiters[key] = limiter
            return limiter

    def drop(self, identity: str) -> None:
        """Forget ``identity``'s limiter: the next :meth:`get` makes a new one."""
        key = hashlib.sha256(identity.encode("utf-8")).hexdigest()
        with self._lock:
            self._limiters.pop(key, None)

    def __len__(self) -> int:
        return len(self._limiters)


REGISTRY = LimiterRegistry()


def limiter_for(identity: str, *, initial_per_minute: float, page_per_minute: float) -> RateLimiter:
    """The process-wide limiter of the token named by ``identity`` (see LimiterRegistry)."""
    return REGISTRY.get(
        identity, initial_per_minute=initial_per_minute, page_per_minute=page_per_minute
    )


_RECORDED_PRECISION_S = 0.001
"""The state topic keeps send times to the millisecond (:func:`sends_as_unix`)."""


def sends_as_unix(
    limiter: RateLimiter,
    kind: Kind,
    *,
    unix: Clock = time.time,
    monotonic: Clock = time.monotonic,
) -> tuple[float, ...]:
    """The limiter's recent sends of ``kind`` as Unix times (to keep in the state topic)."""
    offset = unix() - monotonic()
    return tuple(round(t + offset, 3) for t in limiter.sends(kind))


def seed_from_unix(
    limiter: RateLimiter,
    kind: Kind,
    times: tuple[float, ...],
    *,
    unrecorded: int,
    recorded_at: float | None = None,
    unix: Clock = time.time,
    monotonic: Clock = time.monotonic,
) -> None:
    """Count a previous process's recorded sends (Unix times, read from its limiter at Unix
    time ``recorded_at``) and the requests it may have made after that, taken as made just now:
    at most ``unrecorded`` (a request and its retries), and no more than its own limiter could
    have let go since ``recorded_at``.

    That last bound is what keeps a move cheap: a token that spent its one request of the
    minute just before the move could send no other, so the new owner waits out what is left of
    that minute, not a whole new one from the move."""
    now = monotonic()
    offset = now - unix()
    held = [t + offset for t in times if t + offset <= now]
    possible = min(unrecorded, limiter.limit(kind))
    if recorded_at is not None and recorded_at + offset <= now:
        # Recorded to the millisecond, so up to half of one later than they were: the bound
        # takes them a millisecond earlier, which can only let it count more.
        earliest = [t - _RECORDED_PRECISION_S for t in held]
        possible = min(
            possible, limiter.sends_possible(kind, earliest, since=recorded_at + offset, until=now)
        )
    limiter.seed(kind, held + [now] * possible)
