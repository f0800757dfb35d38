"""``fetch`` against the Webex simulator: every record of a span exactly once, on every path.

The simulator, the client and the limiter share one fake clock that only the client's sleeps move,
so minute-long rate-limit waits take no real time and the simulator's own limits, token expiry
and window rules all see the same time.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from publisher.cli import main
from publisher.simulator.faults import Faults
from publisher.simulator.server import Simulator, SimulatorConfig
from publisher.webex.auth import OAuthTokens, StaticToken, TokenProvider
from publisher.webex.client import CdrClient
from publisher.webex.ratelimit import RateLimiter
from publisher.webex.record import parse_page
from publisher.webex.windows import Endpoint
from tests.unit.test_client import FakeTime

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SPAN = (T0 - timedelta(hours=6), T0 - timedelta(hours=1))
BASE_CONFIG = SimulatorConfig(
    seed=7,
    calls_per_minute=6.0,
    history_hours=13.0,
    port=0,
    static_token="sim-token",
    client_id="sim-client",
    client_secret="sim-secret",
    refresh_token="sim-refresh",
    access_token_lifetime_s=3600.0,
    initial_per_minute=1.0,
    pages_per_minute=10.0,
    rate_limits=True,
    home_region=None,
    faults=Faults(),
)


@contextmanager
def simulator(t: FakeTime, **changes: object) -> Iterator[Simulator]:
    config = replace(BASE_CONFIG, clock=t.utc, **changes)  # type: ignore[arg-type]
    with Simulator(config) as sim:
        yield sim


def client_for(
    sim: Simulator,
    t: FakeTime,
    *,
    tokens: TokenProvider | None = None,
    initial_per_minute: float = 1.0,
    page_per_minute: float = 10.0,
) -> CdrClient:
    limiter = RateLimiter(
        initial_per_minute=initial_per_minute,
        page_per_minute=page_per_minute,
        clock=t.mono,
        sleep=t.sleep,
    )
    return CdrClient(
        base_url=sim.base_url,
        tokens=tokens or StaticToken("sim-token"),
        limiter=limiter,
        page_size=500,
        clock=t.utc,
        sleep=t.sleep,
        retries=8,
        rng=random.Random(1),
    )


def fetched_ids(client: CdrClient, endpoint: Endpoint, start: datetime, end: datetime) -> list[str]:
    ids: list[str] = []
    for page in client.fetch(endpoint, start, end):
        parsed = parse_page(page.body)
        ids += [cdr.report_id for cdr in parsed.records]
        ids += [bad.report_id or "?" for bad in parsed.rejected]
    return ids


def assert_exactly_once(ids: list[str], expected: set[str]) -> None:
    counts = Counter(ids)
    assert [rid for rid, n in counts.items() if n > 1] == []
    assert set(counts) == expected
    assert expected  # a span without records would prove nothing


def test_pagination_returns_every_record_once() -> None:
    """A 5-hour stream span: three windows, several pages each, every record exactly once."""
    t = FakeTime(T0)
    with simulator(t) as sim, client_for(sim, t) as client:
        ids = fetched_ids(client, Endpoint.STREAM, *SPAN)
        expected = sim.expected_report_ids("stream", *SPAN)
        stats = sim.stats()

    assert_exactly_once(ids, expected)
    assert stats["200"] > 3  # more pages than windows: pagination was followed
    assert stats["429"] == 0  # the client's limiter kept within the simulator's limits


def test_429s_are_waited_out() -> None:
    """A client limiter looser than the service meets 429s, waits them out, loses nothing."""
    t = FakeTime(T0)
    with (
        simulator(t) as sim,
        client_for(sim, t, initial_per_minute=60.0, page_per_minute=600.0) as client,
    ):
        ids = fetched_ids(client, Endpoint.STREAM, *SPAN)
        expected = sim.expected_report_ids("stream", *SPAN)
        stats = sim.stats()

    assert_exactly_once(ids, expected)
    assert stats["429"] > 0


def test_451_redirects_to_the_home_region() -> None:
    """Each of the three 451 wordings sends the client to the home host, which it keeps."""
    t = FakeTime(T0)
    with simulator(t, home_region="localhost") as sim:
        for _ in range(3):  # the simulator rotates through its three wordings
            with client_for(sim, t) as client:
                ids = fetched_ids(client, Endpoint.STREAM, *SPAN)
                assert client.base_url == sim.home_url
            assert_exactly_once(ids, sim.expected_report_ids("stream", *SPAN))
        stats = sim.stats()

    assert stats["451"] == 3


def test_404_windows_are_empty_not_errors() -> None:
    """A 35-hour feed span reaching before the traffic began: empty windows answer 404."""
    t = FakeTime(T0)
    start, end = T0 - timedelta(hours=36), T0 - timedelta(hours=1)
    with simulator(t) as sim, client_for(sim, t) as client:
        ids = fetched_ids(client, Endpoint.FEED, start, end)
        expected = sim.expected_report_ids("feed", start, end)
        stats = sim.stats()

    assert_exactly_once(ids, expected)
    assert stats["404"] >= 1


def test_injected_5xx_are_retried() -> None:
    """With half the requests failing 5xx, back-off and retry still deliver every record once."""
    t = FakeTime(T0)
    with simulator(t, faults=Faults(error_5xx=0.5)) as sim, client_for(sim, t) as client:
        ids = fetched_ids(client, Endpoint.STREAM, *SPAN)
        expected = sim.expected_report_ids("stream", *SPAN)
        stats = sim.stats()

    assert_exactly_once(ids, expected)
    assert stats["5xx"] > 0


def oauth_tokens(sim: Simulator, t: FakeTime, tmp_path: Path) -> OAuthTokens:
    return OAuthTokens(
        client_id="sim-client",
        client_secret="sim-secret",
        refresh_token="sim-refresh",
        token_url=sim.token_url,
        refresh_token_file=tmp_path / "refresh-token",
        clock=lambda: t.utc().timestamp(),
    )


def test_token_refresh_on_expiry_and_on_401(tmp_path: Path) -> None:
    """OAuth tokens refresh before they expire and once after a 401; the rotated refresh token
    is saved; every record arrives once."""
    t = FakeTime(T0)
    with simulator(t, static_token=None, access_token_lifetime_s=100.0) as sim:
        tokens = oauth_tokens(sim, t, tmp_path)
        with client_for(sim, t, tokens=tokens) as client:
            ids: list[str] = []
            for n, page in enumerate(client.fetch(Endpoint.STREAM, *SPAN)):
                if n == 1:
                    sim.expire_tokens()  # the next request meets a 401
                ids += [cdr.report_id for cdr in parse_page(page.body).records]
        expected = sim.expected_report_ids("stream", *SPAN)
        stats = sim.stats()
        saved = (tmp_path / "refresh-token").read_text()
        current = sim.current_refresh_token

    assert_exactly_once(ids, expected)
    assert stats["401"] == 1  # only the forced expiry: lifetimes were renewed ahead of time
    assert stats["tokens_issued"] >= 3
    assert saved == current


def test_no_secret_reaches_any_log_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """At DEBUG (urllib3 included), through 401, 429, 451 and 5xx, no token or secret is logged."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="urllib3")
    t = FakeTime(T0)
    with simulator(
        t,
        static_token=None,
        home_region="localhost",
        faults=Faults(error_5xx=0.2),
        access_token_lifetime_s=100.0,
    ) as sim:
        tokens = oauth_tokens(sim, t, tmp_path)
        with client_for(sim, t, tokens=tokens, initial_per_minute=60.0) as client:
            for n, _page in enumerate(client.fetch(Endpoint.STREAM, *SPAN)):
                if n == 1:
                    sim.expire_tokens()
        stats = sim.stats()
    with simulator(t) as sim, client_for(sim, t) as client:
        list(client.fetch(Endpoint.STREAM, T0 - timedelta(hours=3), T0 - timedelta(hours=2)))

    assert min(stats["401"], stats["429"], stats["451"], stats["5xx"]) > 0  # every path ran
    assert any(r.name.startswith("urllib3") for r in caplog.records)
    assert any(r.name == "publisher.webex" for r in caplog.records)
    for record in caplog.records:
        text = record.getMessage() + repr(vars(record))
        for secret in ("sim-secret", "sim-refresh", "sim-rt-", "sim-at-", "sim-token"):
            assert secret not in text, f"{secret!r} logged by {record.name}: {record.msg!r}"


def test_fetch_command_prints_each_record_once(
    monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path
) -> None:
    """`cdr-publisher fetch` prints each record of the span once, exactly as `convert` does."""
    now = datetime.now(UTC)
    start, end = now - timedelta(hours=3), now - timedelta(hours=2)
    with Simulator(replace(BASE_CONFIG, rate_limits=False)) as sim:
        for name, value in {
            "WEBEX_BASE_URL": sim.base_url,
            "WEBEX_TOKEN": "sim-token",
            "WEBEX_INITIAL_REQUESTS_PER_MINUTE": "6000",
            "WEBEX_PAGE_REQUESTS_PER_MINUTE": "6000",
        }.items():
            monkeypatch.setenv(f"CDR_PUBLISHER_{name}", value)
        monkeypatch.setattr("publisher.logs.configure", lambda *_a: None)
        span = ["--start", start.isoformat(), "--end", end.isoformat()]
        code = main(["fetch", "--endpoint", "stream", *span])
        expected = sim.expected_report_ids("stream", start, end)
        raw = sim.records_between("stream", start, end)
    fetched = capsysbinary.readouterr().out
    (tmp_path / "page.json").write_bytes(orjson.dumps({"items": raw}))
    assert main(["convert", str(tmp_path / "page.json")]) == 0
    converted = capsysbinary.readouterr().out

    assert code == 0
    lines = [orjson.loads(line) for line in fetched.splitlines()]
    assert_exactly_once([line["report_id"] for line in lines], expected)
    assert fetched == converted


def test_fetch_command_refuses_an_illegal_span(capsys: pytest.CaptureFixture[str]) -> None:
    """A stream span reaching 13 hours back is a usage error (exit 2) naming the limit."""
    now = datetime.now(UTC)
    code = main(
        [
            "fetch",
            "--endpoint",
            "stream",
            "--start",
            (now - timedelta(hours=13)).isoformat(),
            "--end",
            (now - timedelta(hours=2)).isoformat(),
        ]
    )

    assert code == 2
    err = capsys.readouterr().err
    assert "usage:" in err
    assert "12 hours" in err


@pytest.mark.parametrize(
    ("start", "end", "extra", "message"),
    [
        ("2026-03-01T10:00:00Z", "2026-03-01T09:00:00Z", [], "after --start"),
        ("yesterday", "2026-03-01T09:00:00Z", [], "not an ISO-8601 time"),
        (
            "2026-03-01T10:00:00Z",
            "2026-03-01T11:00:00Z",
            ["--locations", ",".join(f"L{i}" for i in range(11))],
            "at most 10",
        ),
    ],
)
def test_fetch_command_bad_arguments_exit_2(
    start: str, end: str, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """End before start, an unreadable time, or 11 locations: usage on stderr and exit 2."""
    args = ["fetch", "--endpoint", "feed", "--start", start, "--end", end, *extra]
    try:
        code = main(args)
    except SystemExit as exc:  # argparse's own refusals exit from inside parse_args
        code = int(exc.code or 0)

    assert code == 2
    err = capsys.readouterr().err
    assert "usage:" in err
    assert message in err
