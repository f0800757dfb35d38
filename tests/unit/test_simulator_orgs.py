"""The simulator serving many orgs: a token, data, limits and region per org, the Service App
endpoint, revocation, a short stream retention, and the ground truth per org and per token."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from publisher.orgs import build_catalogue
from publisher.settings import load_settings
from publisher.simulator.generator import Traffic, datetime_to_ms
from publisher.simulator.server import (
    SERVICE_APP_NOT_AUTHORISED,
    SERVICE_APP_NOT_FOUND,
    Simulator,
    SimulatorConfig,
    token_label,
)
from tests.unit.test_simulator_server import NOW, Clock, window

STREAM = "/v1/cdr_stream"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def many(clock: Clock, **overrides: Any) -> Simulator:
    values: dict[str, Any] = {"seed": 5, "calls_per_minute": 10.0, "clock": clock, "orgs": 3}
    values.update(overrides)
    return Simulator(SimulatorConfig(**values))


def get(session: requests.Session, url: str, token: str | None, **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with session.get(url, headers=headers, timeout=30, **kwargs) as reply:
        reply.content  # noqa: B018 - read before the connection is reused
        return reply


def post(session: requests.Session, url: str, **kwargs: Any) -> requests.Response:
    with session.post(url, timeout=30, **kwargs) as reply:
        reply.content  # noqa: B018
        return reply


def recent() -> dict[str, str]:
    return window(NOW - timedelta(hours=1), NOW - timedelta(minutes=1), max="5000")


def mint(
    session: requests.Session, sim: Simulator, org_id: str, **changes: str
) -> requests.Response:
    body = {"clientId": "sim-app-client", "clientSecret": "sim-app-secret", "targetOrgId": org_id}
    app = changes.pop("app", "sim-app")
    bearer = changes.pop("bearer", "sim-apps-token")
    body.update(changes)
    return post(
        session,
        f"{sim.base_url}/v1/applications/{app}/token",
        json=body,
        headers={"Authorization": f"Bearer {bearer}"},
    )


def refresh(
    session: requests.Session, sim: Simulator, token: str, client: str = "sim-app-client"
) -> requests.Response:
    secret = "sim-app-secret" if client == "sim-app-client" else "sim-secret"
    form = {
        "grant_type": "refresh_token",
        "client_id": client,
        "client_secret": secret,
        "refresh_token": token,
    }
    return post(session, sim.token_url, data=form)


def test_each_org_has_its_own_token_and_its_own_records(
    clock: Clock, session: requests.Session
) -> None:
    """Token sim-token-<n> reads org n only: its records carry org n's id, no two orgs share a
    record, and what each serves is that org's ground truth."""
    with many(clock, rate_limits=False) as sim:
        ids = sim.org_ids
        served: dict[int, list[dict[str, Any]]] = {}
        for n in (1, 2, 3):
            reply = get(session, sim.base_url + STREAM, f"sim-token-{n}", params=recent())
            assert reply.status_code == 200
            served[n] = reply.json()["items"]
        start, end = NOW - timedelta(hours=1), NOW - timedelta(minutes=1)
        truth = {n: sim.expected_report_ids("stream", start, end, org=n) for n in (1, 2, 3)}
        by_id = sim.expected_report_ids("stream", start, end, org=ids[1])
        unknown = get(session, sim.base_url + STREAM, "sim-token", params=recent())

    assert len(set(ids)) == 3
    for n in (1, 2, 3):
        assert served[n]
        assert {item["Org UUID"] for item in served[n]} == {ids[n - 1]}
        assert {item["Report ID"] for item in served[n]} == truth[n]
    assert not truth[1] & truth[2]
    assert by_id == truth[2]
    assert unknown.status_code == 401


def test_org_data_is_deterministic_per_seed(clock: Clock) -> None:
    """The same seed gives the same org ids and records; another seed gives other orgs."""
    start, end = NOW - timedelta(hours=1), NOW - timedelta(minutes=1)
    first, again, other = many(clock), many(clock), many(clock, seed=6)

    assert first.org_ids == again.org_ids
    assert first.expected_records("stream", start, end, org=2) == again.expected_records(
        "stream", start, end, org=2
    )
    assert not set(first.org_ids) & set(other.org_ids)


def test_rate_limits_are_per_token_and_the_ground_truth_counts_them(
    clock: Clock, session: requests.Session
) -> None:
    """Org 1's second initial request in a minute gets 429; org 2's first does not. /_sim/rates
    reports per token the most requests in any 60 s and the refusals for rate."""
    params = window(NOW - timedelta(hours=2), NOW - timedelta(minutes=1), max="500")
    with many(clock, calls_per_minute=40.0, rate_limits=True) as sim:
        url = sim.base_url + STREAM
        first = get(session, url, "sim-token-1", params=params)
        second = get(session, url, "sim-token-1", params=params)
        other = get(session, url, "sim-token-2", params=params)
        pages = [get(session, first.links["next"]["url"], "sim-token-1") for _ in range(11)]
        clock.advance(61)
        later = get(session, url, "sim-token-1", params=params)
        rates = get(session, sim.base_url + "/_sim/rates", None).json()

    assert (first.status_code, second.status_code, other.status_code) == (200, 429, 200)
    assert [p.status_code for p in pages] == [200] * 10 + [429]
    assert later.status_code == 200
    by_token = {entry["token"]: entry for entry in rates["tokens"]}
    one = by_token[token_label("sim-token-1")]
    assert (one["org"], one["kind"], one["initial"], one["page"]) == (1, "static", 3, 11)
    assert one["max_initial_60s"] == 2  # the refused one was seen too; `later` was 61 s on
    assert one["max_page_60s"] == 11
    assert one["refused_for_rate"] == 2
    two = by_token[token_label("sim-token-2")]
    assert (two["initial"], two["max_initial_60s"], two["refused_for_rate"]) == (1, 1, 0)
    assert rates["limits"] == {"initial_per_minute": 1.0, "pages_per_minute": 10.0}
    assert (
        token_label("sim-token-1") == "sha256:" + (hashlib.sha256(b"sim-token-1").hexdigest()[:16])
    )


def test_the_sliding_window_maximum_forgets_requests_older_than_a_minute(
    clock: Clock, session: requests.Session
) -> None:
    """Requests spread over more than 60 s count apart: the maximum is of any 60 s."""
    with many(clock, rate_limits=False) as sim:
        url = sim.base_url + STREAM
        for _ in range(3):
            get(session, url, "sim-token-3", params=recent())
            clock.advance(30)
        stats = {e["token"]: e for e in sim.token_stats()}[token_label("sim-token-3")]

    assert stats["initial"] == 3
    assert stats["max_initial_60s"] == 2


def test_regional_orgs_answer_451_naming_their_host(
    clock: Clock, session: requests.Session
) -> None:
    """With --regional-orgs 1 the last org is served only on localhost:PORT and names it in a
    451; the others are served on any host."""
    with many(clock, rate_limits=False, regional_orgs=1) as sim:
        home = f"localhost:{sim.port}"
        refused = get(session, sim.base_url + STREAM, "sim-token-3", params=recent())
        served = get(session, f"http://{home}{STREAM}", "sim-token-3", params=recent())
        local = get(session, sim.base_url + STREAM, "sim-token-1", params=recent())
        infos = get(session, sim.base_url + "/_sim/orgs", None).json()["orgs"]

    assert refused.status_code == 451
    assert home in refused.json()["message"]
    assert served.status_code == 200
    assert local.status_code == 200
    assert [info["home_host"] for info in infos] == [None, None, home]
    assert [info["token"] for info in infos] == ["sim-token-1", "sim-token-2", "sim-token-3"]


def test_service_app_mints_a_token_pair_that_reads_the_target_org(
    clock: Clock, session: requests.Session
) -> None:
    """POST /v1/applications/{id}/token with the applications token and the app's credentials
    gives an access token for targetOrgId (reads that org's CDRs) and a refresh token that
    rotates: the previous one stops working."""
    with many(clock, rate_limits=False, service_app_token_lifetime_s=900.0) as sim:
        org_id = sim.org_ids[1]
        pair = mint(session, sim, org_id).json()
        cdrs = get(session, sim.base_url + STREAM, pair["access_token"], params=recent())
        renewed = refresh(session, sim, pair["refresh_token"])
        reused = refresh(session, sim, pair["refresh_token"])
        fresh = get(session, sim.base_url + STREAM, renewed.json()["access_token"], params={})
        clock.advance(901)
        expired = get(session, sim.base_url + STREAM, pair["access_token"], params=recent())
        by_integration = refresh(session, sim, renewed.json()["refresh_token"], "sim-client")

    assert pair["token_type"] == "Bearer"
    assert pair["expires_in"] == 900
    assert pair["refresh_token_expires_in"] > 0
    assert cdrs.status_code == 200
    assert {item["Org UUID"] for item in cdrs.json()["items"]} == {org_id}
    assert renewed.status_code == 200
    assert renewed.json()["refresh_token"] != pair["refresh_token"]
    assert reused.status_code == 400
    assert expired.status_code == 401
    assert fresh.status_code == 400  # authorised (no startTime): the token works
    assert by_integration.status_code == 400  # a Service App refresh token is the app's only


@pytest.mark.parametrize(
    ("changes", "status", "message"),
    [
        ({"bearer": "nope"}, 401, "valid access token"),
        ({"bearer": "sim-token-1"}, 403, "spark:applications_token"),
        ({"app": "other-app"}, 404, SERVICE_APP_NOT_FOUND),
        ({"clientSecret": "wrong"}, 400, "clientSecret"),
        ({"targetOrgId": "not-an-org"}, 403, SERVICE_APP_NOT_AUTHORISED),
    ],
)
def test_service_app_mint_refusals_are_like_webex(
    clock: Clock,
    session: requests.Session,
    changes: dict[str, str],
    status: int,
    message: str,
) -> None:
    """A bad bearer is 401, a token without the scope 403, an unknown app 404 "Service App not
    found", a wrong secret 400, an org that has not authorised the app 403."""
    with many(clock) as sim:
        reply = mint(session, sim, sim.org_ids[0], **changes)

    assert reply.status_code == status
    assert message in reply.json()["message"]
    assert reply.json()["trackingId"]


def test_deauthorising_the_service_app_refuses_minting_and_revokes_its_tokens(
    clock: Clock, session: requests.Session
) -> None:
    """The admin endpoint deauthorises the app in one org (403 on mint, minted tokens stop
    working) and authorises it again; other orgs are untouched."""
    with many(clock, rate_limits=False) as sim:
        org_id = sim.org_ids[0]
        pair = mint(session, sim, org_id).json()
        off = post(session, f"{sim.base_url}/_sim/orgs/1/deauthorize")
        refused = mint(session, sim, org_id)
        dead = get(session, sim.base_url + STREAM, pair["access_token"], params=recent())
        dead_refresh = refresh(session, sim, pair["refresh_token"])
        other = mint(session, sim, sim.org_ids[1])
        on = post(session, f"{sim.base_url}/_sim/orgs/{org_id}/authorize")
        again = mint(session, sim, org_id)
        missing = post(session, f"{sim.base_url}/_sim/orgs/9/authorize")

    assert off.json()["service_app_authorised"] is False
    assert off.json()["revoked"] == 2
    assert refused.status_code == 403
    assert refused.json()["message"] == SERVICE_APP_NOT_AUTHORISED
    assert dead.status_code == 401
    assert dead_refresh.status_code == 400
    assert other.status_code == 200
    assert on.json()["service_app_authorised"] is True
    assert again.status_code == 200
    assert missing.status_code == 404


def test_an_integration_refresh_token_gives_an_applications_token(
    clock: Clock, session: requests.Session
) -> None:
    """sim-apps-refresh, refreshed with the integration's client, yields a token that mints but
    reads no CDRs (403)."""
    with many(clock, rate_limits=False) as sim:
        apps = refresh(session, sim, "sim-apps-refresh", "sim-client").json()
        minted = mint(session, sim, sim.org_ids[2], bearer=apps["access_token"])
        cdrs = get(session, sim.base_url + STREAM, apps["access_token"], params=recent())

    assert minted.status_code == 200
    assert cdrs.status_code == 403


def test_revoking_an_org_refuses_its_tokens_and_issues_new_ones(
    clock: Clock, session: requests.Session
) -> None:
    """After /_sim/orgs/2/revoke, org 2's static and refresh tokens are refused; the new static
    token it returns works; org 1 is unaffected."""
    with many(clock, rate_limits=False) as sim:
        old_refresh = sim.org_info(2)["refresh_token"]
        revoked = post(session, f"{sim.base_url}/_sim/orgs/2/revoke").json()
        old = get(session, sim.base_url + STREAM, "sim-token-2", params=recent())
        new = get(session, sim.base_url + STREAM, revoked["token"], params=recent())
        other = get(session, sim.base_url + STREAM, "sim-token-1", params=recent())
        stale = refresh(session, sim, old_refresh, "sim-client")
        renewed = refresh(session, sim, revoked["refresh_token"], "sim-client")

    assert revoked["token"] == "sim-token-2-r1"
    assert revoked["revoked"] >= 2
    assert (old.status_code, new.status_code, other.status_code) == (401, 200, 200)
    assert stale.status_code == 400
    assert renewed.status_code == 200


def test_a_short_stream_retention_refuses_older_start_times_like_webex(
    clock: Clock, session: requests.Session
) -> None:
    """--stream-retention-hours 1: a stream startTime older than an hour is 400, as Webex
    answers past 12 h; the feed still serves that window."""
    old = window(NOW - timedelta(hours=1, seconds=1), NOW - timedelta(minutes=30))
    with many(clock, rate_limits=False, stream_retention_hours=1.0) as sim:
        stream = get(session, sim.base_url + STREAM, "sim-token-1", params=old)
        inside = get(session, sim.base_url + STREAM, "sim-token-1", params=recent())
        feed = get(session, sim.base_url + "/v1/cdr_feed", "sim-token-1", params=old)

    assert stream.status_code == 400
    assert "startTime must not be more than 1 hours ago" in stream.json()["message"]
    assert inside.status_code == 200
    assert feed.status_code == 200


def test_expected_and_served_ground_truth_per_org_over_http(
    clock: Clock, session: requests.Session
) -> None:
    """/_sim/expected?org=n is org n's truth; without org it lists every org under by_org;
    /_sim/served says what each org served."""
    with many(clock, rate_limits=False) as sim:
        get(session, sim.base_url + STREAM, "sim-token-2", params=recent())
        params = {**recent(), "endpoint": "stream"}
        one = get(session, sim.base_url + "/_sim/expected", None, params={**params, "org": "2"})
        every = get(session, sim.base_url + "/_sim/expected", None, params=params).json()
        served = get(session, sim.base_url + "/_sim/served", None).json()
        bad = get(session, sim.base_url + "/_sim/expected", None, params={**params, "org": "7"})
        ids = sim.org_ids

    assert set(one.json()["records"]) == set(every["by_org"][ids[1]])
    assert set(every["records"]) == {r for rids in every["by_org"].values() for r in rids}
    assert set(served["by_org"][ids[1]]) == set(one.json()["records"])
    assert served["by_org"][ids[0]] == []
    assert bad.status_code == 404


def test_two_hundred_orgs_are_cheap_to_start_and_each_serves(
    clock: Clock, session: requests.Session
) -> None:
    """200 orgs start without generating traffic up front (buckets are made on demand), and
    each org's token reads its own records."""
    with many(clock, orgs=200, calls_per_minute=1.0, rate_limits=False) as sim:
        cached_before = sum(len(org.traffic._buckets) for org in sim._orgs)
        short = window(NOW - timedelta(minutes=30), NOW - timedelta(minutes=1))
        statuses = {
            get(session, sim.base_url + STREAM, f"sim-token-{n}", params=short).status_code
            for n in (1, 100, 200)
        }

    assert cached_before == 0
    assert statuses <= {200, 404}
    assert len(set(sim.org_ids)) == 200


def test_simulate_cli_serves_many_orgs_and_writes_a_catalogue(tmp_path: Path) -> None:
    """`simulate --orgs 3 --regional-orgs 1 --write-orgs DIR` serves three orgs and writes token
    files (0600) and an [[orgs]] catalogue that the settings accept."""
    command = [sys.executable, "-m", "publisher", "simulate", "--orgs", "3"]
    command += ["--regional-orgs", "1", "--write-orgs", str(tmp_path), "--seed", "4"]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            url = proc.stdout.readline().strip()
            with requests.get(f"{url}/_sim/orgs", timeout=10) as reply:
                infos = reply.json()["orgs"]
        finally:
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=30)

    assert proc.returncode == 0
    assert "Traceback" not in stderr
    assert [info["n"] for info in infos] == [1, 2, 3]
    assert infos[2]["home_host"].startswith("localhost:")
    catalogue = build_catalogue(load_settings(tmp_path / "orgs.toml"))
    assert catalogue.ids == tuple(info["org_id"] for info in infos)
    token_file = catalogue.orgs[0].token_file
    assert token_file is not None
    assert token_file.read_text().strip() == "sim-token-1"
    assert token_file.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    "flags",
    [
        ["--orgs", "2", "--regional-orgs", "3"],
        ["--orgs", "-1"],
        ["--write-orgs", "orgs-dir"],
        ["--orgs", "2", "--token", "", "--write-orgs", "orgs-dir"],
    ],
)
def test_bad_many_org_flags_print_usage_and_exit_2(flags: list[str]) -> None:
    """More regional orgs than orgs, a negative count, --write-orgs without --orgs or without
    static tokens: usage, exit 2."""
    proc = subprocess.run(
        [sys.executable, "-m", "publisher", "simulate", *flags],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )

    assert proc.returncode == 2
    assert "usage:" in proc.stderr
    assert "Traceback" not in proc.stderr


@settings(max_examples=40, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=20),  # minutes the clock moves first
            st.integers(min_value=1, max_value=180),  # how far back the window starts
            st.integers(min_value=1, max_value=120),  # window length, minutes
            st.sampled_from([0, 30 * 60_000]),  # the duplicates' extra lookback
        ),
        min_size=1,
        max_size=8,
    )
)
def test_the_recent_index_answers_exactly_what_a_full_scan_does(
    steps: list[tuple[int, int, int, int]],
) -> None:
    """Whatever windows a client asks as time moves on, the recent-insertions index yields the
    same legs as scanning every bucket (it only saves work)."""
    now_ms = datetime_to_ms(NOW)
    history = now_ms - 13 * 3_600_000
    indexed = Traffic(9, 6.0, history_start_ms=history, recent_minutes=60)
    scanned = Traffic(9, 6.0, history_start_ms=history)
    for advance, back, length, lookback in steps:
        now_ms += advance * 60_000
        start = now_ms - back * 60_000
        end = start + length * 60_000
        kwargs = {"now_ms": now_ms, "lookback_ms": lookback}
        got = sorted(indexed.legs_between("stream", start, end, **kwargs))
        want = sorted(scanned.legs_between("stream", start, end, **kwargs))
        assert got == want


def test_the_many_org_simulator_benchmark_prints_its_figures(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`python -m bench.simulator_orgs` serves every org and prints RSS and CPU per phase."""
    from bench.simulator_orgs import main

    assert main(["--orgs", "2", "--calls-per-minute", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()

    assert lines[0].startswith("simulator, 2 orgs at 3 calls/min each: started, RSS +")
    assert len(lines) == 5
    assert all("RSS +" in line and "CPU" in line for line in lines)
    records = [int(line.split(": ")[1].split()[0]) for line in lines[1:]]
    assert records[2] == records[3] > records[0] > 0
