"""Deterministic, lazy Webex Calling CDR traffic: pure, no I/O, no clock.

Calls arrive as a Poisson process at ``calls_per_minute``. Each minute bucket's calls are derived
from ``(seed, minute)`` alone, so any window can be answered without holding the whole history:
a bucket is generated on demand and kept in a small LRU cache. Generation has two phases so that
scanning many buckets stays cheap:

1. the *plan* of a call (scenario, every leg's start, answer, release and insertion times, Report
   IDs, Correlation ID, location), drawn from the bucket's random stream;
2. the full 87-key *records*, drawn from the call's own seed only for the legs actually served.

A record becomes visible when it is *inserted* into the cloud, minutes to hours after its leg
ended (most within minutes, a long tail). ``cdr_stream`` windows filter on insertion time,
``cdr_feed`` windows on the record's ``Start time``.
"""

from __future__ import annotations

import bisect
import functools
import math
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

Endpoint = Literal["stream", "feed"]
Record = dict[str, Any]

MINUTE_MS = 60_000
# Bounds that let a window find every record it may hold: a leg starts at most MAX_CALL_SPAN_MS
# after its call, and is inserted at most MAX_LEG_MS + MAX_INSERTION_DELAY_MS after it starts.
MAX_CALL_SPAN_MS = 40 * MINUTE_MS
MAX_LEG_MS = 35 * MINUTE_MS
MAX_INSERTION_DELAY_MS = 3 * 60 * MINUTE_MS
STREAM_LOOKBACK_MS = MAX_CALL_SPAN_MS + MAX_LEG_MS + MAX_INSERTION_DELAY_MS

# The real payload's key order and spellings (tests/data/samples.json items[2]): 87 keys.
RAW_KEYS: tuple[str, ...] = (
    "Answer time", "Answered", "Direction", "Called line ID", "Call ID", "Calling line ID",
    "Start time", "Call type", "Client type", "Client version", "Correlation ID",
    "International country", "Device MAC", "Duration", "Inbound trunk", "Org UUID",
    "Original reason", "OS type", "Outbound trunk", "Redirect reason", "Related reason",
    "Report ID", "Report time", "Route group", "Site main number", "Site timezone",
    "Sub client type", "User UUID", "User type", "User", "Called number", "Calling number",
    "Location", "Dialed digits", "Releasing party", "Redirecting number", "Site UUID",
    "Department ID", "Transfer related call ID", "Authorization code", "Model",
    "Local SessionID", "Remote SessionID", "Call transfer time", "Local call ID",
    "Remote call ID", "Network call ID", "Related call ID", "User number", "Call outcome",
    "Call outcome reason", "Ring duration", "Answer indicator", "Release time",
    "Final local SessionID", "Final remote SessionID", "PSTN legal entity", "PSTN vendor org ID",
    "PSTN vendor name", "PSTN provider ID", "External customer ID", "Redirecting party UUID",
    "Public Calling IP Address", "Public Called IP Address", "Caller ID number",
    "External caller ID number", "Device owner UUID", "Call Recording Platform Name",
    "Call Recording Result", "Call Recording Trigger", "Original called party UUID",
    "Recall type", "Auto Attendant Key Pressed", "Queue type", "Answered elsewhere",
    "Hold duration", "Route list calls overage", "Caller Reputation Score",
    "Caller Reputation Service Result", "Caller Reputation Score Reason", "Interaction ID",
    "WxCC consult merge status", "ELIN", "Emergency number source", "Transfer type",
    "Transfer type context", "Answer reason",
)  # fmt: skip

# Absent values as real payloads send them: mostly "", a few "NA" (and "na" for OS type).
_TEMPLATE: Record = dict.fromkeys(RAW_KEYS, "")
_TEMPLATE.update(
    {
        "Called line ID": "NA",
        "Calling line ID": "NA",
        "OS type": "na",
        "Public Calling IP Address": "NA",
        "Public Called IP Address": "NA",
        "Auto Attendant Key Pressed": "NA",
        "Duration": 0,
        "Hold duration": 0,
        "Ring duration": "0",
        "Answered": "false",
        "Answer indicator": "No",
    }
)

_SCENARIOS: tuple[tuple[str, float], ...] = (
    ("outbound", 0.30),
    ("inbound", 0.25),
    ("internal", 0.20),
    ("transfer", 0.10),
    ("hunt_group", 0.08),
    ("call_queue", 0.07),
)
_SITES: tuple[tuple[str, str], ...] = (
    ("Site1", "-420"),
    ("Richardson", "-300"),
    ("Toronto", "-240"),
    ("London HQ", "60"),
    ("Berlin", "120"),
    ("Sydney", "600"),
)
_FIRST = ("Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Goran", "Hana", "Ivan", "Jo", "Kofi")
_LAST = ("Smith", "Okafor", "Novak", "Tanaka", "Garcia", "Muller", "Rossi", "Kim", "Silva")
_CLIENTS: tuple[tuple[str, str, str, str], ...] = (
    # (client type, client version, OS type, model)
    ("WXC_CLIENT", "45.9.0.33000", "windows", ""),
    ("WXC_CLIENT", "45.8.1.32911", "mac", ""),
    ("TEAMS_WXC_CLIENT", "45.8.0.32875", "windows", ""),
    ("WXC_DEVICE", "sip88xx.14-2-1MPP", "na", "8851-3PCC"),
    ("WXC_DEVICE", "sip78xx.12-0-1", "na", "DMS Cisco 7841"),
    ("SIP", "", "na", ""),
)
_PSTN = (
    ("Cisco Calling Plans", "Broadsoft Adaption LLC", "0b43a1a8-2efd-4892-b301-e7a5a6d2c884"),
    ("Cisco Calling Plans", "Cisco Systems Canada Co", "0b43a1a8-2efd-4892-b301-e7a5a6d2c884"),
)
_OUTBOUND_TYPES = (
    "SIP_NATIONAL",
    "SIP_MOBILE",
    "SIP_NATIONAL",
    "SIP_INTERNATIONAL",
    "SIP_TOLLFREE",
)
_FAILURES = (
    ("Failure", "UserBusy"),
    ("Refusal", "TemporarilyUnavailable"),
    ("Refusal", "CallRejected"),
    ("Failure", "NoAnswer"),
)


def ms_to_iso(ms: int) -> str:
    """Milliseconds since the epoch as Webex writes it: ``2026-09-24T07:49:10.939Z``."""
    return f"{_iso_second(ms // 1000)}.{ms % 1000:03d}Z"


@functools.lru_cache(maxsize=1 << 16)
def _iso_second(second: int) -> str:
    # strftime dominated record building; gmtime and %-formatting are several times cheaper.
    t = time.gmtime(second)
    return "%04d-%02d-%02dT%02d:%02d:%02d" % t[:6]  # noqa: UP031 - the fastest form here


def datetime_to_ms(value: datetime) -> int:
    """An aware datetime as whole milliseconds since the epoch (naive means UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


_UUID_MASK = ((1 << 128) - 1) ^ ((0xF << 76) | (0x3 << 62))


def _uuid(rng: random.Random, version: int = 4) -> str:
    """A well-formed UUID string (version nibble, RFC variant) from the seeded stream."""
    h = ((rng.getrandbits(128) & _UUID_MASK) | (version << 76) | (0x2 << 62)).to_bytes(16).hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _hex(rng: random.Random, digits: int) -> str:
    return f"{rng.getrandbits(digits * 4):0{digits}x}"


@dataclass(frozen=True, slots=True)
class Person:
    name: str
    uuid: str
    number: str
    extension: str
    client: int
    """Index into the client table: what the person calls from."""


@dataclass(frozen=True, slots=True)
class Site:
    name: str
    timezone: str
    uuid: str
    main_number: str
    people: tuple[Person, ...]
    hunt_group: Person
    call_queue: Person


@dataclass(frozen=True, slots=True)
class Org:
    uuid: str
    sites: tuple[Site, ...]


def _person(rng: random.Random, base: str, site: int, i: int, label: str | None = None) -> Person:
    who = label or f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
    return Person(who, _uuid(rng), f"{base}{1000 + i:04d}", f"{site + 1}{i:03d}", i % 6)


def build_org(seed: int) -> Org:
    """The simulated organisation: sites, people, a hunt group and a call queue per site."""
    rng = random.Random(f"{seed}/org")
    sites = []
    for s, (name, tz) in enumerate(_SITES):
        area = 200 + 111 * s
        base = f"+1{area}{rng.randint(200, 999)}"

        people = tuple(_person(rng, base, s, i) for i in range(1, 25))
        sites.append(
            Site(
                name=name,
                timezone=tz,
                uuid=_uuid(rng),
                main_number=f"{base}1000",
                people=people,
                hunt_group=_person(rng, base, s, 90, f"{name} Sales Hunt Group"),
                call_queue=_person(rng, base, s, 91, f"{name} Support Queue"),
            )
        )
    return Org(_uuid(rng), tuple(sites))


class LegPlan(NamedTuple):
    role: str
    start_ms: int
    answer_ms: int
    """-1 when the leg was not answered."""
    release_ms: int
    inserted_ms: int
    report_id: str


class CallPlan(NamedTuple):
    minute: int
    number: int
    """The call's position in its minute."""
    scenario: str
    correlation_id: str
    site: int
    details_seed: int
    legs: tuple[LegPlan, ...]


class Leg(NamedTuple):
    """One record of the traffic, as the window index sees it (the record is built lazily)."""

    inserted_ms: int
    start_ms: int
    report_id: str
    correlation_id: str
    location: str
    call: CallPlan
    leg: int
    """The leg's position in its call."""

    def key_ms(self, endpoint: Endpoint) -> int:
        return self.inserted_ms if endpoint == "stream" else self.start_ms


@dataclass(frozen=True, slots=True)
class _Bucket:
    by_inserted: list[Leg]
    inserted_keys: list[int]
    by_start: list[Leg]
    start_keys: list[int]


def _insertion_delay_ms(rnd: Callable[[], float]) -> int:
    """Skewed: most records arrive within minutes, a tail over hours, never past the maximum."""
    u = rnd()
    if u < 0.85:
        delay = 20_000 - 100_000 * math.log(1.0 - rnd())  # exponential, mean 100 s
    elif u < 0.98:
        delay = 5 * MINUTE_MS + rnd() * (40 * MINUTE_MS)
    else:
        delay = 45 * MINUTE_MS + rnd() * (MAX_INSERTION_DELAY_MS - 45 * MINUTE_MS)
    return int(min(delay, MAX_INSERTION_DELAY_MS))


def _between(rng: random.Random, lo: int, hi: int) -> int:
    """An int in [lo, hi): randint's exactness is not needed and it costs four times as much."""
    return lo + int(rng.random() * (hi - lo))


def _talk_ms(rng: random.Random) -> int:
    return int(min(math.exp(11.4 + rng.gauss()), 30 * MINUTE_MS))  # log-normal, median 90 s


def _ring_ms(rng: random.Random, answered: bool) -> int:
    return int(rng.uniform(1_500, 20_000) if answered else rng.uniform(5_000, 40_000))


def _pick_scenario(rng: random.Random) -> str:
    u = rng.random()
    for name, weight in _SCENARIOS:
        if u < weight:
            return name
        u -= weight
    return _SCENARIOS[-1][0]


class Traffic:
    """The traffic of one seed. Pure: callers pass ``now`` and history bounds explicitly.

    Thread-safety: the caches are plain dicts guarded by the caller (the server holds a lock).
    """

    def __init__(
        self,
        seed: int,
        calls_per_minute: float,
        *,
        history_start_ms: int,
        cache_buckets: int = 720,
        cache_calls: int = 20_000,
        recent_minutes: int = 0,
    ) -> None:
        """``recent_minutes`` > 0 keeps an index of the legs inserted in that many recent minutes,
        grown as time moves on, so that a caught-up stream poll generates only the new minute
        buckets instead of scanning the whole insertion lookback (what makes many orgs cheap)."""
        if calls_per_minute < 0:
            raise ValueError("calls_per_minute must be >= 0")
        self.seed = seed
        self.calls_per_minute = calls_per_minute
        self.history_start_ms = history_start_ms - history_start_ms % MINUTE_MS
        self.org = build_org(seed)
        self._cache_buckets = cache_buckets
        self._cache_calls = cache_calls
        self._buckets: OrderedDict[int, _Bucket] = OrderedDict()
        self._records: OrderedDict[tuple[int, int], list[Record]] = OrderedDict()
        self._recent = _RecentIndex(self, recent_minutes) if recent_minutes > 0 else None

    # --- phase 1: plans ------------------------------------------------------------------------

    def plans(self, minute: int) -> list[CallPlan]:
        """The calls that start in minute ``minute`` (minutes since the epoch)."""
        start = minute * MINUTE_MS
        if start < self.history_start_ms or self.calls_per_minute <= 0:
            return []
        rng = random.Random(f"{self.seed}/{minute}")
        plans: list[CallPlan] = []
        rnd = rng.random
        mean_gap = MINUTE_MS / self.calls_per_minute
        t = 0.0
        while True:
            t -= mean_gap * math.log(1.0 - rnd())  # exponential gaps: a Poisson process
            if t >= MINUTE_MS:
                return plans
            plans.append(self._plan(rng, minute, len(plans), start + int(t)))

    def _plan(self, rng: random.Random, minute: int, index: int, t0: int) -> CallPlan:
        scenario = _pick_scenario(rng)
        roles: list[tuple[str, int, int, int]] = []  # role, start, answer (-1), release

        def leg(role: str, start: int, answered: bool, talk: int | None = None) -> int:
            ring = _ring_ms(rng, answered)
            answer = start + ring if answered else -1
            release = (
                (answer + (talk if talk is not None else _talk_ms(rng)))
                if answered
                else (start + ring)
            )
            roles.append((role, start, answer, release))
            return answer

        answered = rng.random() < 0.8
        if scenario == "outbound":
            leg("out_pstn", t0, answered)
        elif scenario == "inbound":
            leg("in_pstn", t0, answered)
        elif scenario == "internal":
            talk = _talk_ms(rng)
            leg("int_orig", t0, answered, talk)
            leg("int_term", t0 + _between(rng, 40, 400), answered, talk)
        elif scenario == "transfer":
            # A PSTN caller reaches A; A consults B and transfers the caller to B.
            a_answer = leg("in_pstn_xfer", t0, answered=True, talk=_between(rng, 60_000, 600_000))
            consult = a_answer + _between(rng, 10_000, 120_000)
            leg("consult_orig", consult, answered=True, talk=_between(rng, 5_000, 60_000))
            leg(
                "consult_term",
                consult + _between(rng, 40, 400),
                answered=True,
                talk=_between(rng, 60_000, 900_000),
            )
        elif scenario == "hunt_group":
            leg("hg", t0, answered, _between(rng, 20_000, 400_000))
            for i in range(_between(rng, 1, 4)):
                role = "hg_agent" if i == 0 else "hg_member"
                leg(role, t0 + _between(rng, 50, 500), answered and i == 0)
        else:
            waited = _between(rng, 5_000, 300_000)
            leg("cq", t0, answered, waited + _between(rng, 30_000, 600_000))
            if answered:
                leg("cq_agent", t0 + waited, answered=True)
        legs = tuple(
            LegPlan(
                role,
                start,
                answer,
                release,
                release + _insertion_delay_ms(rng.random),
                _uuid(rng, version=3),
            )
            for role, start, answer, release in roles
        )
        return CallPlan(
            minute=minute,
            number=index,
            scenario=scenario,
            correlation_id=_uuid(rng),
            site=_between(rng, 0, len(self.org.sites)),
            details_seed=rng.getrandbits(64),
            legs=legs,
        )

    def legs_of(self, minute: int) -> list[Leg]:
        """Every leg of the calls that start in ``minute`` (not cached)."""
        return [
            Leg(
                lp.inserted_ms,
                lp.start_ms,
                lp.report_id,
                plan.correlation_id,
                self.org.sites[plan.site].name,
                plan,
                i,
            )
            for plan in self.plans(minute)
            for i, lp in enumerate(plan.legs)
        ]

    def _bucket(self, minute: int) -> _Bucket:
        bucket = self._buckets.get(minute)
        if bucket is not None:
            self._buckets.move_to_end(minute)
            return bucket
        legs = self.legs_of(minute)
        by_inserted = sorted(legs, key=lambda g: g.inserted_ms)
        by_start = sorted(legs, key=lambda g: g.start_ms)
        bucket = _Bucket(
            by_inserted,
            [g.inserted_ms for g in by_inserted],
            by_start,
            [g.start_ms for g in by_start],
        )
        self._buckets[minute] = bucket
        if len(self._buckets) > self._cache_buckets:
            self._buckets.popitem(last=False)
        return bucket

    def legs_between(
        self,
        endpoint: Endpoint,
        start_ms: int,
        end_ms: int,
        *,
        now_ms: int,
        lookback_ms: int = 0,
    ) -> Iterator[Leg]:
        """Visible legs (inserted by ``now_ms``) whose key time is in ``[start_ms, end_ms)``.

        ``lookback_ms`` widens a stream scan (for records inserted again, later).
        """
        if endpoint == "stream" and self._recent is not None:
            found = self._recent.legs(start_ms - lookback_ms, min(end_ms, now_ms + 1), now_ms)
            if found is not None:
                yield from found
                return
        if endpoint == "stream":
            first = start_ms - STREAM_LOOKBACK_MS - lookback_ms
            last = min(end_ms, now_ms)
        else:
            first = start_ms - MAX_CALL_SPAN_MS
            last = min(end_ms, now_ms)
        first = max(first, self.history_start_ms)
        for minute in range(first // MINUTE_MS, last // MINUTE_MS + 1):
            b = self._bucket(minute)
            if endpoint == "stream":
                lo = bisect.bisect_left(b.inserted_keys, start_ms - lookback_ms)
                hi = bisect.bisect_left(b.inserted_keys, end_ms)
                chosen = b.by_inserted[lo:hi]
            else:
                lo = bisect.bisect_left(b.start_keys, start_ms)
                hi = bisect.bisect_left(b.start_keys, end_ms)
                chosen = b.by_start[lo:hi]
            for g in chosen:
                if g.inserted_ms <= now_ms:
                    yield g

    # --- phase 2: records ----------------------------------------------------------------------

    def record(self, leg: Leg) -> Record:
        """The leg's raw record. Shared with a cache: copy it before changing it."""
        key = (leg.call.minute, leg.call.number)
        records = self._records.get(key)
        if records is None:
            records = build_records(self.org, leg.call)
            self._records[key] = records
            if len(self._records) > self._cache_calls:
                self._records.popitem(last=False)
        return records[leg.leg]

    def records(self, legs: Iterable[Leg]) -> list[Record]:
        return [self.record(g) for g in legs]


class _RecentIndex:
    """Legs by insertion minute for the recent past of one :class:`Traffic`.

    Insertion minute M is complete once every start bucket from M - lookback to M has been
    distributed. Start buckets are distributed in one contiguous run [first, next) that grows as
    time moves on; minutes below ``floor`` are dropped (kept: the last ``keep`` minutes and what is
    not inserted yet). A query below the floor but still recent restarts the index there; an older
    one is not answered here (None: the caller scans the buckets).
    """

    _LOOKBACK_MINUTES = STREAM_LOOKBACK_MS // MINUTE_MS + 1

    def __init__(self, traffic: Traffic, keep_minutes: int) -> None:
        self._traffic = traffic
        self._keep = keep_minutes
        self._by_minute: dict[int, list[Leg]] = {}
        self._next: int | None = None
        self._floor = 0

    def legs(self, lo_ms: int, hi_ms: int, now_ms: int) -> list[Leg] | None:
        """Visible legs inserted in [lo_ms, hi_ms), or None when the span is not recent."""
        if hi_ms <= lo_ms:
            return []
        now_minute = now_ms // MINUTE_MS
        first, last = lo_ms // MINUTE_MS, (hi_ms - 1) // MINUTE_MS
        recent_from = now_minute - self._keep
        if self._next is None or first < self._floor:
            if first < recent_from:
                return None
            self._by_minute = {}
            self._floor = first
            history = self._traffic.history_start_ms // MINUTE_MS
            self._next = max(first - self._LOOKBACK_MINUTES, history)
        for minute in range(self._next, last + 1):
            for leg in self._traffic.legs_of(minute):
                at = leg.inserted_ms // MINUTE_MS
                if at >= self._floor:
                    self._by_minute.setdefault(at, []).append(leg)
        self._next = max(self._next, last + 1)
        if recent_from > self._floor and first >= recent_from:
            for minute in [m for m in self._by_minute if m < recent_from]:
                del self._by_minute[minute]
            self._floor = recent_from
        return [
            leg
            for minute in range(first, last + 1)
            for leg in self._by_minute.get(minute, ())
            if lo_ms <= leg.inserted_ms < hi_ms and leg.inserted_ms <= now_ms
        ]


def _call_ids(rng: random.Random, t_ms: int) -> tuple[str, str, str]:
    """Call ID, Local call ID and Network call ID in the shapes real payloads use."""
    n = _between(rng, 10**8, 10**10)
    call_id = f"SSE{t_ms % 10**13}{_between(rng, 10**6, 10**7 - 1)}-{n}@10.250.194.97"
    local = f"{_between(rng, 10**7, 10**10)}:0"
    network = f"SDen4q701-{_hex(rng, 32)}-aoh8mj{_between(rng, 1000, 1099)}"
    return call_id, local, network


def _external_number(rng: random.Random, call_type: str = "SIP_NATIONAL") -> str:
    if call_type == "SIP_INTERNATIONAL":
        return f"+{rng.choice(('44', '49', '48', '33', '81'))}{_between(rng, 10**8, 10**9 - 1)}"
    if call_type == "SIP_TOLLFREE":
        return f"+1800{_between(rng, 10**6, 10**7 - 1)}"
    return f"+1{_between(rng, 201, 989)}{_between(rng, 10**6, 10**7 - 1)}"


def build_records(org: Org, plan: CallPlan) -> list[Record]:
    """Every leg of a call as a raw record with all 87 keys (pure; same plan, same records)."""
    rng = random.Random(plan.details_seed)
    site = org.sites[plan.site]
    people = site.people
    caller_a, caller_b = rng.sample(people, 2)
    external = _external_number(rng)
    pstn_name, pstn_entity, pstn_org = rng.choice(_PSTN)
    pstn_provider = _uuid(rng)
    interaction = _uuid(rng)
    sessions = [_hex(rng, 32) for _ in plan.legs]
    ids = [_call_ids(rng, lp.start_ms) for lp in plan.legs]
    records: list[Record] = []
    for i, lp in enumerate(plan.legs):
        r = dict(_TEMPLATE)
        call_id, local_id, network_id = ids[i]
        answered = lp.answer_ms >= 0
        r.update(
            {
                "Start time": ms_to_iso(lp.start_ms),
                "Release time": ms_to_iso(lp.release_ms),
                "Report time": ms_to_iso(lp.release_ms + _between(rng, 2, 1500)),
                "Report ID": lp.report_id,
                "Correlation ID": plan.correlation_id,
                "Org UUID": org.uuid,
                "Location": site.name,
                "Site UUID": site.uuid,
                "Site timezone": site.timezone,
                "Site main number": site.main_number,
                "Call ID": call_id,
                "Local call ID": local_id,
                "Network call ID": network_id,
                "Local SessionID": sessions[i],
                "Final local SessionID": sessions[i],
                "Interaction ID": interaction,
                "Releasing party": rng.choice(("Local", "Remote")),
            }
        )
        if answered:
            r["Answer time"] = ms_to_iso(lp.answer_ms)
            r["Answered"] = "true"
            r["Answer indicator"] = "Yes"
            r["Duration"] = (lp.release_ms - lp.answer_ms) // 1000
            r["Ring duration"] = str((lp.answer_ms - lp.start_ms) // 1000)
            r["Call outcome"] = "Success"
            r["Call outcome reason"] = "Normal"
            if rng.random() < 0.15:
                r["Hold duration"] = _between(rng, 3, max(3, r["Duration"] // 3))
        else:
            r["Ring duration"] = str((lp.release_ms - lp.start_ms) // 1000)
            r["Call outcome"], r["Call outcome reason"] = rng.choice(_FAILURES)
        _fill_role(
            r,
            rng,
            lp.role,
            site=site,
            a=caller_a,
            b=caller_b,
            external=external,
            plan=plan,
            index=i,
        )
        if r["Inbound trunk"] == "" and r["Outbound trunk"] == "" and lp.role in _PSTN_ROLES:
            r["PSTN vendor name"] = pstn_name
            r["PSTN legal entity"] = pstn_entity
            r["PSTN vendor org ID"] = pstn_org
            r["PSTN provider ID"] = pstn_provider
        records.append(r)
    _link_legs(records, plan, sessions, ids)
    return records


_PSTN_ROLES = frozenset({"out_pstn", "in_pstn", "in_pstn_xfer", "hg", "cq"})


def _user_fields(r: Record, person: Person, rng: random.Random) -> None:
    client_type, version, os_type, model = _CLIENTS[person.client]
    r["User"] = person.name
    r["User UUID"] = person.uuid
    r["User number"] = person.number
    r["User type"] = "User"
    r["Client type"] = client_type
    r["Client version"] = version
    r["OS type"] = os_type
    r["Model"] = model
    if client_type == "WXC_DEVICE":
        r["Device MAC"] = _hex(rng, 12).upper()
        r["Device owner UUID"] = person.uuid


def _fill_role(
    r: Record,
    rng: random.Random,
    role: str,
    *,
    site: Site,
    a: Person,
    b: Person,
    external: str,
    plan: CallPlan,
    index: int,
) -> None:
    if role == "out_pstn":
        call_type = rng.choice(_OUTBOUND_TYPES)
        dialed = _external_number(rng, call_type)
        _user_fields(r, a, rng)
        r.update(
            {
                "Direction": "ORIGINATING",
                "Call type": call_type,
                "Calling number": a.number,
                "Called number": dialed,
                "Dialed digits": dialed,
                "Caller ID number": a.number,
                "External caller ID number": site.main_number,
                "Calling line ID": a.name,
            }
        )
        if call_type == "SIP_INTERNATIONAL":
            r["International country"] = rng.choice(("GB", "DE", "PL", "FR", "JP"))
        return
    if role in ("in_pstn", "in_pstn_xfer"):
        _user_fields(r, a, rng)
        r.update(
            {
                "Direction": "TERMINATING",
                "Call type": "SIP_INBOUND",
                "Calling number": external,
                "Called number": a.number,
                "Caller ID number": external,
                "External caller ID number": a.number,
                "Calling line ID": "WIRELESS CALLER",
                "Called line ID": a.name,
            }
        )
        if role == "in_pstn_xfer":
            r["Related reason"] = "ConsultativeTransfer"
            r["Transfer type"] = "ATTENDED_TRANSFER"
            r["Transfer type context"] = "TRANSFEROR"
        return
    if role in ("int_orig", "consult_orig"):
        target = b
        _user_fields(r, a, rng)
        r.update(
            {
                "Direction": "ORIGINATING",
                "Call type": "SIP_ENTERPRISE",
                "Calling number": a.number,
                "Called number": target.extension,
                "Dialed digits": target.extension,
                "Caller ID number": a.number,
                "Calling line ID": a.name,
                "Called line ID": target.name,
            }
        )
        if role == "consult_orig":
            r["Related reason"] = "ConsultativeTransfer"
            r["Transfer type"] = "ATTENDED_TRANSFER"
            r["Transfer type context"] = "CONSULT"
        return
    if role in ("int_term", "consult_term"):
        _user_fields(r, b, rng)
        r.update(
            {
                "Direction": "TERMINATING",
                "Call type": "SIP_ENTERPRISE",
                "Calling number": a.number,
                "Called number": b.number,
                "Caller ID number": a.number,
                "Calling line ID": a.name,
                "Called line ID": b.name,
            }
        )
        if role == "consult_term":
            r["Related reason"] = "ConsultativeTransfer"
            r["Transfer type"] = "ATTENDED_TRANSFER"
            r["Transfer type context"] = "TRANSFER_TARGET"
        return
    if role in ("hg", "cq"):
        group = site.hunt_group if role == "hg" else site.call_queue
        r.update(
            {
                "Direction": "TERMINATING",
                "Call type": "SIP_INBOUND",
                "Client type": "SIP",
                "User": group.name,
                "User UUID": group.uuid,
                "User number": group.number,
                "User type": "HuntGroup" if role == "hg" else "CallCenterStandard",
                "Calling number": external,
                "Called number": group.number,
                "Caller ID number": external,
                "Calling line ID": "WIRELESS CALLER",
                "Called line ID": group.name,
            }
        )
        if role == "cq":
            r["Queue type"] = rng.choice(("Call Queue", "Customer Assist"))
        return
    # Agent legs: the group redirected the call to a member.
    group = site.hunt_group if role in ("hg_agent", "hg_member") else site.call_queue
    reason = "HuntGroup" if group is site.hunt_group else "CallQueue"
    agent = a if role != "hg_member" else site.people[(index * 7 + plan.number) % len(site.people)]
    _user_fields(r, agent, rng)
    r.update(
        {
            "Direction": "TERMINATING",
            "Call type": "SIP_INBOUND",
            "Calling number": external,
            "Called number": agent.number,
            "Caller ID number": external,
            "Calling line ID": "WIRELESS CALLER",
            "Called line ID": agent.name,
            "Original reason": reason,
            "Redirect reason": reason,
            "Related reason": reason,
            "Redirecting number": group.number,
            "Redirecting party UUID": group.uuid,
            "Original called party UUID": group.uuid,
        }
    )
    if role == "hg_member" and plan.legs[0].answer_ms >= 0:
        r["Answered elsewhere"] = "Yes"
        r["Call outcome"], r["Call outcome reason"] = "Success", "CallAnsweredElsewhere"
    if reason == "CallQueue":
        r["Queue type"] = rng.choice(("Call Queue", "Customer Assist"))


def _link_legs(
    records: list[Record], plan: CallPlan, sessions: list[str], ids: list[tuple[str, str, str]]
) -> None:
    """Cross-reference the legs of one call the way Webex does (remote ids, related ids)."""
    roles = [lp.role for lp in plan.legs]
    for i, role in enumerate(roles):
        r = records[i]
        if role in ("int_orig", "consult_orig") and i + 1 < len(records):
            peer = records[i + 1]
            r["Remote call ID"] = ids[i + 1][1]
            peer["Remote call ID"] = ids[i][1]
            r["Remote SessionID"] = r["Final remote SessionID"] = sessions[i + 1]
            peer["Remote SessionID"] = peer["Final remote SessionID"] = sessions[i]
        if role == "consult_orig":
            first = records[0]
            transfer_time = ms_to_iso(plan.legs[i].release_ms)
            for leg_i in (0, i, i + 1):
                if leg_i < len(records):
                    records[leg_i]["Call transfer time"] = transfer_time
            first["Transfer related call ID"] = ids[i][1]
            r["Transfer related call ID"] = ids[0][1]
            r["Related call ID"] = ids[0][1]
        if role in ("hg_agent", "hg_member", "cq_agent"):
            r["Related call ID"] = ids[0][1]
