"""The simulator's traffic: deterministic, complete records, realistic calls and delays."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from publisher.simulator.generator import (
    MAX_INSERTION_DELAY_MS,
    MINUTE_MS,
    RAW_KEYS,
    STREAM_LOOKBACK_MS,
    Traffic,
    ms_to_iso,
)
from publisher.webex.fields import FIELDS_BY_KEY, normalise_key

START_MS = 1_790_000_000_000 - 1_790_000_000_000 % MINUTE_MS
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def traffic(seed: int = 3, cpm: float = 30.0) -> Traffic:
    return Traffic(seed, cpm, history_start_ms=START_MS)


def records_of(t: Traffic, minutes: int) -> list[dict[str, object]]:
    return [
        t.record(g) for m in range(minutes) for g in t._bucket(START_MS // MINUTE_MS + m).by_start
    ]


def test_same_seed_same_records_and_other_seed_differs() -> None:
    """Two generators with one seed produce identical records; another seed, other Report IDs."""
    a, b, c = traffic(3), traffic(3), traffic(4)

    first, again = records_of(a, 5), records_of(b, 5)

    assert first == again
    assert len(first) > 50
    assert not {r["Report ID"] for r in first} & {r["Report ID"] for r in records_of(c, 5)}


def test_records_carry_all_87_keys_in_real_spellings() -> None:
    """Every record has exactly the 87 known keys, spelled as in the real payload sample."""
    sample = json.loads(Path("tests/data/samples.json").read_text())["items"][2]

    records = records_of(traffic(), 10)

    assert list(sample) == list(RAW_KEYS)
    for r in records:
        assert list(r) == list(RAW_KEYS)
    assert {normalise_key(k) for k in RAW_KEYS} == set(FIELDS_BY_KEY)


def test_values_follow_the_real_payload_conventions() -> None:
    """Numbers, numeric strings, string booleans and timestamps are typed as Webex sends them."""
    for r in records_of(traffic(), 20):
        assert isinstance(r["Duration"], int)
        assert isinstance(r["Hold duration"], int)
        assert isinstance(r["Ring duration"], str)
        assert r["Ring duration"].isdigit()
        assert r["Answered"] in ("true", "false")
        assert (r["Answered"] == "true") == (r["Answer time"] != "")
        assert re.fullmatch(r"-?\d+", str(r["Site timezone"]))
        assert r["OS type"] in ("na", "windows", "mac")
        assert r["Direction"] in ("ORIGINATING", "TERMINATING")
        assert UUID.match(str(r["Report ID"]))
        assert UUID.match(str(r["Correlation ID"]))
        for key in ("Start time", "Release time", "Report time"):
            assert TIMESTAMP.match(str(r[key])), (key, r[key])
        assert r["Start time"] <= r["Release time"] <= r["Report time"]


def test_report_ids_are_unique_over_hours_of_traffic() -> None:
    """Report IDs never repeat across many minute buckets."""
    t = traffic(cpm=40)
    ids = [g.report_id for m in range(240) for g in t._bucket(START_MS // MINUTE_MS + m).by_start]

    assert len(ids) > 10_000
    assert len(ids) == len(set(ids))


def test_calls_have_linked_legs_with_redirect_and_related_reasons() -> None:
    """Legs of a call share a Correlation ID; hunt group, queue and transfer legs say so."""
    t = traffic(cpm=60)
    by_call: dict[str, list[dict[str, object]]] = defaultdict(list)
    for r in records_of(t, 30):
        by_call[str(r["Correlation ID"])].append(r)
    reasons = Counter(str(r["Related reason"]) for legs in by_call.values() for r in legs)
    multi = [legs for legs in by_call.values() if len(legs) > 1]

    assert len(multi) > 100
    for legs in multi:
        assert {r["Org UUID"] for r in legs} == {legs[0]["Org UUID"]}
    assert reasons["HuntGroup"] > 0
    assert reasons["CallQueue"] > 0
    assert reasons["ConsultativeTransfer"] > 0
    agents = [r for legs in multi for r in legs if r["Redirect reason"] == "CallQueue"]
    assert agents
    assert all(r["Redirecting number"] and r["Related call ID"] for r in agents)
    user_types = {r["User type"] for legs in multi for r in legs}
    assert {"User", "HuntGroup", "CallCenterStandard"} <= user_types


def test_insertion_delay_is_skewed_with_a_bounded_tail() -> None:
    """Most records are inserted within minutes of the leg's end, a few hours later, none later."""
    t = traffic(cpm=60)
    delays = [
        lp.inserted_ms - lp.release_ms
        for m in range(120)
        for plan in t.plans(START_MS // MINUTE_MS + m)
        for lp in plan.legs
    ]

    within_10_min = sum(d <= 10 * MINUTE_MS for d in delays) / len(delays)
    assert within_10_min > 0.75
    assert any(d > 60 * MINUTE_MS for d in delays)
    assert all(0 < d <= MAX_INSERTION_DELAY_MS for d in delays)


def test_calls_per_minute_is_the_average_rate() -> None:
    """Over ten hours the number of calls per minute averages the configured rate."""
    t = traffic(cpm=20)
    counts = [len(t.plans(START_MS // MINUTE_MS + m)) for m in range(600)]

    assert sum(counts) / len(counts) == pytest.approx(20, rel=0.05)
    assert len(set(counts)) > 5  # Poisson, not a constant


def test_windows_honour_insertion_time_visibility_and_history() -> None:
    """A stream window holds exactly the legs inserted in it by now, and nothing before history."""
    t = traffic(cpm=30)
    all_legs = [g for m in range(-5, 400) for g in t._bucket(START_MS // MINUTE_MS + m).by_inserted]
    a, b = START_MS + 60 * MINUTE_MS, START_MS + 120 * MINUTE_MS
    now = START_MS + 100 * MINUTE_MS

    got = {g.report_id for g in t.legs_between("stream", a, b, now_ms=now)}
    expected = {g.report_id for g in all_legs if a <= g.inserted_ms < b and g.inserted_ms <= now}

    assert got == expected
    assert got
    assert STREAM_LOOKBACK_MS > MAX_INSERTION_DELAY_MS
    assert not t.plans(START_MS // MINUTE_MS - 1)


def test_feed_windows_filter_on_start_time() -> None:
    """A feed window holds the visible legs whose own start time is in the window."""
    t = traffic(cpm=30)
    a, b = START_MS + 30 * MINUTE_MS, START_MS + 40 * MINUTE_MS
    now = START_MS + 600 * MINUTE_MS

    legs = list(t.legs_between("feed", a, b, now_ms=now))

    assert legs
    assert all(a <= g.start_ms < b for g in legs)
    assert all(ms_to_iso(g.start_ms) == t.record(g)["Start time"] for g in legs)
