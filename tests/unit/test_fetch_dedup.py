"""``cdr-publisher fetch`` prints each record once even when the API hands it over twice."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from publisher.cli import main
from publisher.simulator.faults import Faults
from publisher.simulator.server import Simulator
from tests.unit.test_fetch_simulator import BASE_CONFIG


def test_fetch_prints_a_record_the_api_serves_twice_once(
    monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    """With the simulator's duplicates on (a third of the records served a second time, up to 30
    minutes later, so in the same or a later window), every Report ID is printed exactly once,
    and the summary counts the duplicates dropped."""
    now = datetime.now(UTC)
    start, end = now - timedelta(hours=5), now - timedelta(hours=2)
    config = replace(BASE_CONFIG, rate_limits=False, faults=Faults(duplicates=0.3))
    with Simulator(config) as sim:
        for name, value in {
            "WEBEX_BASE_URL": sim.base_url,
            "WEBEX_TOKEN": "sim-token",
            "WEBEX_INITIAL_REQUESTS_PER_MINUTE": "6000",
            "WEBEX_PAGE_REQUESTS_PER_MINUTE": "6000",
        }.items():
            monkeypatch.setenv(f"CDR_PUBLISHER_{name}", value)
        monkeypatch.setattr("publisher.logs.configure", lambda *_a: None)
        code = main(
            [
                "fetch",
                "--endpoint",
                "stream",
                "--start",
                start.isoformat(),
                "--end",
                end.isoformat(),
            ]
        )
        expected = sim.expected_report_ids("stream", start, end)
        # A copy served in the span may be of a record first inserted up to 30 minutes earlier.
        possible = sim.expected_report_ids("stream", start - timedelta(minutes=30), end)
        served = sim.stats()["records_served"]
    captured = capsysbinary.readouterr()
    printed = Counter(orjson.loads(line)["report_id"] for line in captured.out.splitlines())

    assert code == 0
    assert served > len(printed)  # the simulator did serve copies
    assert [rid for rid, n in printed.items() if n > 1] == []
    assert expected <= set(printed) <= possible
    assert b"duplicates dropped" in captured.err
