"""The simulator over HTTP: window rules, pages, auth, rate limits, regions, faults, admin."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from publisher.simulator.faults import Faults
from publisher.simulator.generator import RAW_KEYS, datetime_to_ms, ms_to_iso
from publisher.simulator.server import NO_CDRS, RATE_LIMITED, Simulator, SimulatorConfig
from publisher.webex.fields import FIELDS_BY_KEY, normalise_key

NOW = datetime(2026, 9, 24, 12, 0, 0, 250_000, tzinfo=UTC)
AUTH = {"Authorization": "Bearer sim-token"}


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def iso(dt: datetime) -> str:
    return ms_to_iso(datetime_to_ms(dt))


def window(start: datetime, end: datetime, **extra: str) -> dict[str, str]:
    return {"startTime": iso(start), "endTime": iso(end), **extra}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def config(clock: Clock, **overrides: Any) -> SimulatorConfig:
    values: dict[str, Any] = {
        "seed": 11,
        "calls_per_minute": 20.0,
        "clock": clock,
        "rate_limits": False,
    }
    values.update(overrides)
    return SimulatorConfig(**values)


@pytest.fixture
def sim(clock: Clock) -> Iterator[Simulator]:
    with Simulator(config(clock)) as s:
        yield s


def get(session: requests.Session, url: str, **kwargs: Any) -> requests.Response:
    kwargs.setdefault("headers", AUTH)
    with session.get(url, timeout=30, **kwargs) as response:
        response.content  # noqa: B018 - read the body before the connection is reused
        return response


def fetch_all(
    session: requests.Session, url: str, params: dict[str, str]
) -> tuple[list[str], list[requests.Response]]:
    """Follow next links as given; every Report ID served, in order, and every reply."""
    replies = [get(session, url, params=params)]
    while "next" in replies[-1].links:
        replies.append(get(session, replies[-1].links["next"]["url"]))
    ids = [item["Report ID"] for r in replies if r.status_code == 200 for item in r.json()["items"]]
    return ids, replies


# --- window rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "start", "end", "ok"),
    [
        ("stream", timedelta(hours=12), timedelta(hours=10, minutes=1), True),
        ("stream", timedelta(hours=12, seconds=1), timedelta(hours=11), False),
        ("stream", timedelta(hours=1), timedelta(minutes=1), True),
        ("stream", timedelta(hours=1), timedelta(seconds=59), False),
        ("stream", timedelta(hours=2, minutes=1), timedelta(minutes=1), True),
        ("stream", timedelta(hours=2, minutes=1, seconds=1), timedelta(minutes=1), False),
        ("stream", timedelta(minutes=5), timedelta(minutes=10), False),
        ("feed", timedelta(days=30), timedelta(days=29, hours=13), True),
        ("feed", timedelta(days=30, seconds=1), timedelta(days=29, hours=20), False),
        ("feed", timedelta(hours=1), timedelta(minutes=5, seconds=1), True),
        ("feed", timedelta(hours=1), timedelta(minutes=5), False),
        ("feed", timedelta(hours=12, minutes=10), timedelta(minutes=10), True),
        ("feed", timedelta(hours=12, minutes=10, seconds=1), timedelta(minutes=10), False),
    ],
)
def test_window_rules_are_enforced_to_the_second(
    sim: Simulator,
    session: requests.Session,
    *,
    endpoint: str,
    start: timedelta,
    end: timedelta,
    ok: bool,
) -> None:
    """A window one second too old, too recent or too long is a 400; the limit itself is not."""
    url = f"{sim.base_url}/v1/cdr_{endpoint}"

    reply = get(session, url, params=window(NOW - start, NOW - end))

    if ok:
        assert reply.status_code in (200, 404)
    else:
        assert reply.status_code == 400
        body = reply.json()
        assert body["message"]
        assert body["errors"] == [{"description": body["message"]}]
        assert body["trackingId"] == reply.headers["TrackingID"]


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"startTime": "2026-09-24T10:00:00.000Z"},
        {"startTime": "2026-09-24 10:00:00", "endTime": "2026-09-24T11:00:00.000Z"},
        {
            "startTime": "2026-09-24T10:00:00.000Z",
            "endTime": "2026-09-24T11:00:00.000Z",
            "max": "x",
        },
        {
            "startTime": "2026-09-24T10:00:00.000Z",
            "endTime": "2026-09-24T11:00:00.000Z",
            "locations": ",".join(f"L{i}" for i in range(11)),
        },
    ],
)
def test_missing_or_malformed_parameters_are_400(
    sim: Simulator, session: requests.Session, params: dict[str, str]
) -> None:
    """No window, a wrong time format, a non-numeric max or 11 locations: 400."""
    reply = get(session, f"{sim.base_url}/v1/cdr_stream", params=params)

    assert reply.status_code == 400
    assert reply.json()["errors"][0]["description"]


def test_tracking_id_is_echoed(sim: Simulator, session: requests.Session) -> None:
    """A request's TrackingID comes back in the reply header and the error body."""
    reply = get(session, f"{sim.base_url}/v1/cdr_stream", headers={**AUTH, "TrackingID": "T-42"})

    assert reply.headers["TrackingID"] == "T-42"
    assert reply.json()["trackingId"] == "T-42"


# --- results and pagination --------------------------------------------------------------------


def test_window_before_history_is_404(clock: Clock, session: requests.Session) -> None:
    """A window with no records answers 404 with the Webex message."""
    with Simulator(config(clock, history_hours=1.0)) as sim:
        reply = get(
            session,
            f"{sim.base_url}/v1/cdr_stream",
            params=window(NOW - timedelta(hours=11), NOW - timedelta(hours=10)),
        )

    assert reply.status_code == 404
    assert reply.json()["message"] == NO_CDRS


def test_stream_pages_return_every_record_exactly_once(
    clock: Clock, session: requests.Session
) -> None:
    """Following next links yields the window's records once each, matching the ground truth."""
    start, end = NOW - timedelta(hours=2, minutes=1), NOW - timedelta(minutes=1)
    with Simulator(config(clock, calls_per_minute=40.0)) as sim:
        ids, replies = fetch_all(session, f"{sim.base_url}/v1/cdr_stream", window(start, end))
        expected = sim.expected_report_ids("stream", start, end)
        served = sim.served_report_ids()
        truth = sim.records_between("stream", start, end)

    assert len(replies) > 1
    assert all(r.status_code == 200 for r in replies)
    assert len(ids) == len(set(ids))
    assert set(ids) == expected == served
    assert ids == [r["Report ID"] for r in truth]
    assert replies[0].json()["items"][0] == truth[0]


def test_next_link_is_complete_and_page_size_is_clamped(
    sim: Simulator, session: requests.Session
) -> None:
    """max below 500 is served as 500 and the next link carries cursor, max, orgId, totalCount."""
    start, end = NOW - timedelta(hours=2, minutes=1), NOW - timedelta(minutes=1)

    reply = get(session, f"{sim.base_url}/v1/cdr_stream", params=window(start, end, max="10"))

    assert len(reply.json()["items"]) == 500
    link = reply.headers["Link"]
    assert link.startswith(f"<{sim.base_url}/v1/cdr_stream?")
    assert link.endswith('>; rel="next"')
    for part in ("startTimeForNextFetch=", "max=500", "orgId=", "totalCount=", "endTime="):
        assert part in link
    total = int(link.split("totalCount=")[1].split("&")[0].split(">")[0])
    assert total == len(sim.expected_report_ids("stream", start, end))


def test_feed_filters_on_start_time_and_locations(clock: Clock, session: requests.Session) -> None:
    """The feed serves records by start time, only from the requested locations."""
    start, end = NOW - timedelta(hours=8), NOW - timedelta(hours=2)
    places = frozenset({"Site1", "Berlin"})
    with Simulator(config(clock)) as sim:
        ids, _ = fetch_all(
            session,
            f"{sim.base_url}/v1/cdr_feed",
            window(start, end, locations="Site1,Berlin", max="500"),
        )
        expected = sim.expected_report_ids("feed", start, end, places)
        records = sim.records_between("feed", start, end, places)

    assert ids
    assert sorted(ids) == sorted(expected)
    assert {r["Location"] for r in records} == places
    assert all(iso(start) <= r["Start time"] < iso(end) for r in records)


def test_feed_pages_are_a_snapshot(clock: Clock, session: requests.Session) -> None:
    """Records inserted while a client pages do not shift the pages: none lost, none repeated."""
    start, end = NOW - timedelta(hours=1), NOW - timedelta(minutes=6)
    with Simulator(config(clock, calls_per_minute=60.0)) as sim:
        url = f"{sim.base_url}/v1/cdr_feed"
        first = get(session, url, params=window(start, end, max="500"))
        before = sim.expected_report_ids("feed", start, end)
        clock.advance(3600)  # late records of the window become visible meanwhile
        replies = [first]
        while "next" in replies[-1].links:
            replies.append(get(session, replies[-1].links["next"]["url"]))
        after = sim.expected_report_ids("feed", start, end)

    ids = [item["Report ID"] for r in replies for item in r.json()["items"]]
    assert len(ids) == len(set(ids))
    assert set(ids) == before
    assert after > before


def test_same_seed_serves_the_same_payload(clock: Clock, session: requests.Session) -> None:
    """Two simulators with one seed and clock serve byte-identical pages; another seed differs."""
    params = window(NOW - timedelta(hours=1), NOW - timedelta(minutes=1))
    bodies = []
    for seed in (5, 5, 6):
        with Simulator(config(clock, seed=seed)) as sim:
            bodies.append(get(session, f"{sim.base_url}/v1/cdr_stream", params=params).content)

    assert bodies[0] == bodies[1]
    assert bodies[0] != bodies[2]


# --- auth --------------------------------------------------------------------------------------


def refresh(session: requests.Session, sim: Simulator, token: str) -> requests.Response:
    data = {
        "grant_type": "refresh_token",
        "client_id": "sim-client",
        "client_secret": "sim-secret",
        "refresh_token": token,
    }
    with session.post(sim.token_url, data=data, timeout=30) as reply:
        reply.content  # noqa: B018
        return reply


@pytest.mark.parametrize("header", [None, "Bearer nope", "Basic sim-token", "sim-token"])
def test_missing_or_bad_token_is_401(
    sim: Simulator, session: requests.Session, header: str | None
) -> None:
    """Anything but a valid bearer token is refused with 401."""
    headers = {"Authorization": header} if header else {}

    reply = get(session, f"{sim.base_url}/v1/cdr_stream", headers=headers)

    assert reply.status_code == 401
    assert reply.json()["trackingId"]


def test_refresh_rotates_and_tokens_expire(clock: Clock, session: requests.Session) -> None:
    """Refresh issues a working token and a new refresh token; the old one is refused; tokens
    expire on schedule and on request."""
    params = window(NOW - timedelta(hours=1), NOW - timedelta(minutes=1))
    with Simulator(config(clock, static_token=None, access_token_lifetime_s=600.0)) as sim:
        url = f"{sim.base_url}/v1/cdr_stream"
        first = refresh(session, sim, "sim-refresh")
        body = first.json()
        bearer = {"Authorization": f"Bearer {body['access_token']}"}
        served = get(session, url, params=params, headers=bearer).status_code
        reused = refresh(session, sim, "sim-refresh").status_code
        clock.advance(601)
        expired = get(session, url, params=params, headers=bearer).status_code
        second = refresh(session, sim, body["refresh_token"]).json()
        bearer = {"Authorization": f"Bearer {second['access_token']}"}
        renewed = get(session, url, params=params, headers=bearer).status_code
        sim.expire_tokens()
        revoked = get(session, url, params=params, headers=bearer).status_code
        wrong_secret = session.post(
            sim.token_url,
            data={
                "grant_type": "refresh_token",
                "client_id": "sim-client",
                "client_secret": "x",
                "refresh_token": second["refresh_token"],
            },
            timeout=30,
        )
        wrong_secret.close()
        stats = sim.stats()

    assert first.status_code == 200
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 600
    assert body["refresh_token"] != "sim-refresh"
    assert body["refresh_token_expires_in"] > 0
    assert (served, reused, expired, renewed, revoked) == (200, 400, 401, 200, 401)
    assert second["refresh_token"] != body["refresh_token"]
    assert wrong_secret.status_code == 401
    assert stats["tokens_issued"] == 2


# --- rate limits and regions -------------------------------------------------------------------


def test_rate_limits_answer_429_with_retry_after(clock: Clock, session: requests.Session) -> None:
    """One initial request a minute and ten pages a minute per token; then 429 + Retry-After."""
    params = window(NOW - timedelta(hours=2, minutes=1), NOW - timedelta(minutes=1), max="500")
    with Simulator(config(clock, calls_per_minute=60.0, rate_limits=True)) as sim:
        url = f"{sim.base_url}/v1/cdr_stream"
        first = get(session, url, params=params)
        second = get(session, url, params=params)
        pages = [get(session, first.links["next"]["url"]) for _ in range(11)]
        clock.advance(60)
        later = get(session, url, params=params)
        stats = sim.stats()

    assert first.status_code == 200
    assert second.status_code == 429
    assert second.json()["message"] == RATE_LIMITED
    assert second.headers["Retry-After"] == "60"
    assert [p.status_code for p in pages] == [200] * 10 + [429]
    assert int(pages[-1].headers["Retry-After"]) == 6
    assert later.status_code == 200
    assert stats["429"] == 2


def test_home_region_answers_451_naming_the_host(clock: Clock, session: requests.Session) -> None:
    """Off the home host: 451 naming it in each of the three wordings; on it: served."""
    params = window(NOW - timedelta(hours=1), NOW - timedelta(minutes=1), max="500")
    with Simulator(config(clock, home_region="localhost")) as sim:
        home = f"localhost:{sim.port}"
        refused = [get(session, f"{sim.base_url}/v1/cdr_stream", params=params) for _ in range(3)]
        served = get(session, f"http://{home}/v1/cdr_stream", params=params)
        stats = sim.stats()

    assert [r.status_code for r in refused] == [451, 451, 451]
    messages = [r.json()["message"] for r in refused]
    assert "Please use localhost:" in messages[0]
    assert messages[0].endswith(home)
    assert f"URL: {home}" in messages[1]
    assert f'should go to URL: "http://{home}"' in messages[2]
    assert served.status_code == 200
    assert served.headers["Link"].startswith(f"<http://{home}/")
    assert stats["451"] == 3


# --- faults and admin --------------------------------------------------------------------------


def test_record_faults_appear_in_pages(clock: Clock, session: requests.Session) -> None:
    """Malformed, unknown-key, recased and duplicated records reach the client as configured."""
    start, end = NOW - timedelta(hours=2, minutes=1), NOW - timedelta(minutes=1)
    faults = Faults(malformed=0.05, unknown_keys=0.2, casing=0.2, duplicates=0.1)
    with Simulator(config(clock, calls_per_minute=30.0, faults=faults)) as sim:
        replies = [get(session, f"{sim.base_url}/v1/cdr_stream", params=window(start, end))]
        while "next" in replies[-1].links:
            replies.append(get(session, replies[-1].links["next"]["url"]))
        malformed = sim.malformed_report_ids()
        expected = sim.expected_report_ids("stream", start, end)
        earlier = sim.expected_report_ids("stream", start - timedelta(minutes=30), start)

    items = [item for r in replies for item in r.json()["items"]]
    keys = {k for item in items for k in item}
    assert {"Future field X", "Carrier routing label"} & keys
    assert any(k not in RAW_KEYS and normalise_key(k) in FIELDS_BY_KEY for k in keys)
    assert any(item.get("Duration") == "abc" for item in items)
    assert "missing-report-id" in malformed.values()
    ids = Counter(
        str(v) for item in items for k, v in item.items() if normalise_key(k) == "report id"
    )
    assert any(n == 2 for n in ids.values())
    assert set(ids) - expected  # served again from an earlier window
    assert set(ids) <= expected | earlier
    assert {i for i in expected if i not in malformed} <= set(ids)


def test_request_faults_and_admin_endpoints(sim: Simulator, session: requests.Session) -> None:
    """Faults set through /_sim/faults take effect; stats, served and expire-tokens answer."""
    params = window(NOW - timedelta(hours=1), NOW - timedelta(minutes=1))
    url = f"{sim.base_url}/v1/cdr_stream"
    with session.post(f"{sim.base_url}/_sim/faults", json={"5xx": 1.0}, timeout=30) as changed:
        assert changed.json()["error_5xx"] == 1.0
    failing = get(session, url, params=params)
    with session.post(f"{sim.base_url}/_sim/faults", json={"5xx": 0, "429": 1}, timeout=30) as r:
        assert r.status_code == 200
    forced = get(session, url, params=params)
    with session.post(f"{sim.base_url}/_sim/faults", json={"429": 0}, timeout=30) as r:
        assert r.status_code == 200
    ok = get(session, url, params=params)
    with session.post(f"{sim.base_url}/_sim/faults", json={"casing": 7}, timeout=30) as bad:
        assert bad.status_code == 400
    stats = get(session, f"{sim.base_url}/_sim/stats", headers={}).json()
    served = get(session, f"{sim.base_url}/_sim/served", headers={}).json()
    truth = get(session, f"{sim.base_url}/_sim/expected", params=params, headers={}).json()
    with session.post(f"{sim.base_url}/_sim/expire-tokens", timeout=30) as expired:
        assert expired.status_code == 200

    assert failing.status_code in (500, 502, 503, 504)
    assert failing.json()["trackingId"]
    assert forced.status_code == 429
    assert forced.headers["Retry-After"]
    assert ok.status_code == 200
    assert stats["5xx"] == 1
    assert stats["429"] == 1
    assert stats["200"] == 1
    assert stats["records_served"] == len(ok.json()["items"])
    assert set(served["report_ids"]) == {i["Report ID"] for i in ok.json()["items"]}
    assert set(truth["records"]) == set(served["report_ids"])
