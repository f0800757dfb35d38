"""The benchmark harness's pure parts: figures, targets, JSON keys, parsers, pages, naive model."""

from __future__ import annotations

import orjson
import pytest

from bench.daemon_rss import calls_per_minute_for
from bench.figures import (
    REQUIRED_KEYS,
    Timing,
    metric_value,
    ratio,
    results,
    table,
    vmrss_bytes,
)
from bench.naive import cdr_model, naive_event
from bench.pages import generate_records, to_pages
from bench.run import parse_args
from publisher.webex.fields import FIELDS
from publisher.webex.record import parse_page


def _doc(**overrides: object) -> dict[str, object]:
    values: dict[str, object] = {
        "quick": True,
        "publish": Timing(items=1000, wall_s=2.0, cpu_s=0.5),
        "baseline": Timing(items=100, wall_s=1.0, cpu_s=1.0),
        "restore": Timing(items=1_000_000, wall_s=2.5, cpu_s=2.0),
        "restore_rss_delta_bytes": 30_000_000,
        "restore_table_bytes": 25_165_824,
        "daemon_rss_bytes": 200_000_000,
        "daemon_records": 60_000,
        "replay": None,
        "notes": ["a note"],
    }
    values.update(overrides)
    return results(**values)  # type: ignore[arg-type]


def test_timing_rates_per_wall_and_per_cpu_second() -> None:
    """Rate is per wall second; per core divides by CPU seconds; cores is CPU over wall."""
    timing = Timing(items=1000, wall_s=2.0, cpu_s=0.5)
    assert timing.per_s == 500
    assert timing.per_core_s == 2000
    assert timing.cores == 0.25


def test_timing_with_no_time_gives_none_not_a_division_error() -> None:
    """A zero duration yields None rather than raising."""
    timing = Timing(items=10, wall_s=0.0, cpu_s=0.0)
    assert (timing.per_s, timing.per_core_s, timing.cores) == (None, None, None)
    assert ratio(5.0, 0.0) is None
    assert ratio(None, 2.0) is None


def test_results_carry_every_required_key_and_the_computed_figures() -> None:
    """The JSON has the issue's keys; ratio, bytes per mark and MB come out of the inputs."""
    doc = _doc()
    assert set(REQUIRED_KEYS) <= set(doc)
    assert doc["records"] == 1000
    assert doc["publish_records_per_s"] == 500
    assert doc["baseline_records_per_s"] == 100
    assert doc["ratio"] == 5
    assert doc["ratio_per_core"] == 20  # 2000/s per core against 100/s per core
    assert doc["restore_marks_per_s"] == 400_000
    assert doc["bytes_per_mark"] == 30  # the RSS delta wins over the table alone
    assert doc["bytes_per_mark_table"] == pytest.approx(25.17, abs=0.01)
    assert doc["daemon_rss_mb"] == 200
    assert doc["replay_records_per_s"] is None
    orjson.dumps(doc)  # serialisable as it stands


def test_targets_are_judged_against_their_limits() -> None:
    """Met and missed targets come out right, and unmeasured ones are None."""
    targets = _doc(daemon_rss_bytes=None)["targets"]
    assert isinstance(targets, dict)
    assert targets["publish_records_per_core_s"]["met"] is False  # 2000 < 25000
    assert targets["ratio"]["met"] is False  # 5 < 15
    assert targets["restore_marks_per_s"]["met"] is True
    assert targets["bytes_per_mark"]["met"] is True
    assert targets["daemon_rss_mb"]["met"] is None


def test_table_shows_figures_and_verdicts() -> None:
    """The printed table names each target's verdict and prints unmeasured figures as such."""
    text = table(_doc(replay=None))
    assert "MISSED" in text
    assert "400,000" in text
    assert "replay, records/s (limits off)" in text
    assert "not measured" in text
    assert "note: a note" in text


def test_vmrss_and_metric_parsers() -> None:
    """VmRSS comes from /proc status text in bytes; a metric sample is found by name and labels."""
    assert vmrss_bytes("Name:\tpython\nVmRSS:\t  123456 kB\nVmHWM:\t1 kB\n") == 123456 * 1024
    assert vmrss_bytes("Name:\tpython\n") is None
    text = (
        "# HELP cdr_publisher_records_published_total x\n"
        'cdr_publisher_records_published_total{source="replay"} 5.0\n'
        'cdr_publisher_records_published_total{source="live"} 42.0\n'
        "cdr_publisher_dedup_marks 7.0\n"
    )
    assert metric_value(text, "cdr_publisher_records_published_total", {"source": "live"}) == 42
    assert metric_value(text, "cdr_publisher_dedup_marks") == 7
    assert metric_value(text, "cdr_publisher_cursor_lag_seconds") is None


def test_pages_hold_distinct_realistic_records_that_parse() -> None:
    """Generated pages split at the page size and every record parses with a distinct Report ID."""
    records = generate_records(12)
    pages = to_pages(records, page_records=5)
    assert len(pages) == 3
    parsed = [parse_page(body) for body in pages]
    assert [len(p.records) for p in parsed] == [5, 5, 2]
    assert not any(p.rejected for p in parsed)
    ids = {cdr.report_id for p in parsed for cdr in p.records}
    assert len(ids) == 12


def test_naive_model_reads_every_field_and_makes_nulls_of_absent_values() -> None:
    """The baseline's pydantic model has the 87 fields and yields an event like the pipeline's."""
    model = cdr_model()
    assert len(model.model_fields) == len(FIELDS)
    raw = generate_records(1)[0]
    source = {"endpoint": "stream", "window_start": "x", "window_end": "y"}
    event = naive_event(model, raw, "org", source)
    assert event["event_id"] == raw["Report ID"]
    assert event["cdr"]["report_id"] == raw["Report ID"]
    assert event["cdr"]["authorization_code"] is None  # "" in the raw record
    assert isinstance(event["cdr"]["answered"], bool)
    assert event["unknown_fields"] == {}


def test_daemon_rate_puts_the_record_count_into_twelve_hours() -> None:
    """The simulator rate for N records over 12 h is N / (legs per call x 720 minutes)."""
    assert calls_per_minute_for(1_000_000) == pytest.approx(1_000_000 / (1.58 * 720))


def test_bad_counts_are_refused() -> None:
    """A non-positive count is a usage error (exit 2), not a crash later."""
    with pytest.raises(SystemExit) as exc:
        parse_args(["--records", "0"])
    assert exc.value.code == 2
    assert parse_args(["--quick"]).quick is True


def test_naive_events_equal_the_pipelines_on_the_same_records() -> None:
    """The baseline publishes the very documents the pipeline does, so the rates compare."""
    from publisher.events import Source, build_event

    records = generate_records(40)
    source = Source("stream", "2026-01-01T00:00:00.000Z", "2026-01-01T01:00:00.000Z")
    parsed = parse_page(to_pages(records)[0]).records
    model = cdr_model()
    for raw, cdr in zip(records, parsed, strict=True):
        naive = naive_event(model, raw, "org", source.as_dict())
        assert naive == build_event(cdr, org_id="org", source=source, replay_id=None)
