"""The benchmark harness's pure parts: figures, targets, JSON keys, parsers, pages, naive model."""

from __future__ import annotations

import orjson
import pytest

from bench.competent import competent_event, competent_model
from bench.daemon_rss import calls_per_minute_for
from bench.figures import (
    FLEET_KEYS,
    REQUIRED_KEYS,
    ProcSample,
    Span,
    Timing,
    cpu_seconds_of_stat,
    failover_figures,
    fleet_figures,
    metric_sum,
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
        "competent": Timing(items=500, wall_s=1.0, cpu_s=0.5),
        "kafka_only": Timing(items=1000, wall_s=0.5, cpu_s=0.25),
        "reference": Timing(items=1000, wall_s=4.0, cpu_s=1.5),
        "msgspec": Timing(items=1000, wall_s=1.0, cpu_s=1.0),
        "daemon_peak_rss_bytes": 140_000_000,
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
    assert doc["publish_cpu_us_per_record"] == 500
    assert doc["ratio"] == 20  # 10,000 us against 500 us of CPU per record
    assert doc["ratio_wall"] == 5
    assert doc["competent_ratio"] == 2  # 1,000 us against 500 us
    assert doc["kafka_only_cpu_us_per_record"] == 250
    assert doc["limit_multiple"] == 2
    assert doc["speedup_vs_reference"] == 3
    assert doc["msgspec_cpu_us_per_record"] == 1000
    assert doc["speedup_vs_msgspec"] == 2
    assert doc["peak_rss_mb"] == 140
    assert doc["restore_marks_per_s"] == 400_000
    assert doc["bytes_per_mark"] == 30  # the RSS delta wins over the table alone
    assert doc["bytes_per_mark_table"] == pytest.approx(25.17, abs=0.01)
    assert doc["daemon_rss_mb"] == 200
    assert doc["replay_records_per_s"] is None
    orjson.dumps(doc)  # serialisable as it stands


def test_targets_are_judged_against_their_limits() -> None:
    """Met and missed targets come out right, and unmeasured ones are None."""
    targets = _doc(daemon_peak_rss_bytes=None)["targets"]
    assert isinstance(targets, dict)
    assert targets["publish_records_per_core_s"]["met"] is False  # 2000 < 25000
    assert targets["ratio"]["met"] is True  # 20 >= 15
    assert targets["competent_ratio"]["met"] is True  # 2 >= 2
    assert targets["limit_multiple"]["met"] is True  # 2 <= 3
    assert targets["restore_marks_per_s"]["met"] is True
    assert targets["bytes_per_mark"]["met"] is True  # 30 <= 32
    assert targets["peak_rss_mb"]["met"] is None


def test_the_json_keys_are_the_issues_and_the_fleet_hook_adds_its_own() -> None:
    """Every key issue 13 names is in the document; fleet figures handed in appear under theirs."""
    assert set(REQUIRED_KEYS) == {
        "publish_records_per_s", "publish_cpu_us_per_record", "baseline_records_per_s",
        "competent_baseline_records_per_s", "ratio", "competent_ratio",
        "kafka_only_cpu_us_per_record", "limit_multiple", "peak_rss_mb", "restore_marks_per_s",
        "bytes_per_mark",
    }  # fmt: skip
    assert set(REQUIRED_KEYS) <= set(_doc(competent=None, kafka_only=None))
    doc = _doc(fleet={"fleet_orgs_per_core": 123.0})
    assert doc["fleet_orgs_per_core"] == 123.0
    assert "fleet: orgs per core at Webex's full rate" in table(doc)


# The fleet (issue 11) and failover (issue 12) keys bench-results.json carries, null when the
# section did not run.
FLEET_KEYS_EXPECTED = (
    "fleet_orgs", "fleet_page_size", "fleet_idle_seconds", "fleet_idle_rss_mb",
    "fleet_baseline_rss_mb", "fleet_idle_rss_mb_per_org", "fleet_idle_cpu_pct",
    "fleet_baseline_cpu_pct", "fleet_idle_cpu_pct_per_org", "fleet_full_seconds",
    "fleet_full_rss_mb", "fleet_full_baseline_rss_mb", "fleet_full_rss_mb_per_org",
    "fleet_full_cpu_pct", "fleet_full_cpu_pct_per_org", "fleet_full_requests_per_org_min",
    "fleet_full_records_per_s", "fleet_cpu_ms_per_request", "fleet_orgs_per_core",
    "failover_runs", "failover_session_timeout_s", "failover_median_s", "failover_min_s",
    "failover_max_s", "failover_times_s", "failover_short_runs",
    "failover_short_session_timeout_s", "failover_short_median_s", "failover_short_min_s",
    "failover_short_max_s", "failover_short_times_s",
)  # fmt: skip


def test_fleet_and_failover_keys_are_always_in_the_json() -> None:
    """Every fleet and failover key is in the document, null when those sections were skipped."""
    assert set(FLEET_KEYS) == set(FLEET_KEYS_EXPECTED)
    doc = _doc()
    assert all(doc[key] is None for key in FLEET_KEYS_EXPECTED)
    targets = doc["targets"]
    assert isinstance(targets, dict)
    assert targets["fleet_idle_rss_mb_per_org"]["met"] is None


def _span(wall: tuple[float, float], cpu: tuple[float, float], rss: int, peak: int = 0) -> Span:
    return Span(ProcSample(wall[0], cpu[0], rss), ProcSample(wall[1], cpu[1], rss), max(peak, rss))


def test_fleet_figures_per_org_come_from_the_same_run_baseline() -> None:
    """RSS per org is (N-org process - 1-org process) / (N - 1); CPU per org is the process's
    percent of a core over N; orgs per core divides Webex's 11 requests a minute into the CPU
    one request cost."""
    figs = fleet_figures(
        orgs=201,
        page_size=500,
        idle=_span((0, 60), (10.0, 13.0), rss=300_000_000),  # 3 CPU-s in 60 s: 5 %
        idle_baseline=_span((0, 60), (1.0, 1.3), rss=100_000_000),
        full=_span((100, 160), (20.0, 80.0), rss=400_000_000, peak=500_000_000),
        full_baseline=_span((100, 160), (2.0, 2.5), rss=110_000_000, peak=120_000_000),
        full_requests=6000,
        full_records=3_000_000,
    )
    assert set(figs) <= set(FLEET_KEYS)
    assert figs["fleet_idle_rss_mb"] == 300
    assert figs["fleet_baseline_rss_mb"] == 100
    assert figs["fleet_idle_rss_mb_per_org"] == pytest.approx(1.0)  # 200 MB over 200 orgs
    assert figs["fleet_idle_cpu_pct"] == pytest.approx(5.0)
    assert figs["fleet_baseline_cpu_pct"] == pytest.approx(0.5)
    assert figs["fleet_idle_cpu_pct_per_org"] == pytest.approx(5.0 / 201)
    assert figs["fleet_full_rss_mb"] == 500  # the peak of the window
    assert figs["fleet_full_rss_mb_per_org"] == pytest.approx(380 / 200)
    assert figs["fleet_full_cpu_pct"] == pytest.approx(100.0)
    assert figs["fleet_full_requests_per_org_min"] == pytest.approx(6000 / 201)
    assert figs["fleet_full_records_per_s"] == pytest.approx(50_000)
    assert figs["fleet_cpu_ms_per_request"] == pytest.approx(10.0)  # 60 CPU-s / 6000
    # One org at full rate costs 11 requests x 10 ms a minute: 60 / 0.11 orgs per core.
    assert figs["fleet_orgs_per_core"] == pytest.approx(60 / 11 / 0.010)
    doc = _doc(fleet=figs)
    targets = doc["targets"]
    assert isinstance(targets, dict)
    assert targets["fleet_idle_rss_mb_per_org"]["met"] is True  # 1.0 <= 2
    assert targets["fleet_idle_cpu_pct_per_org"]["met"] is True  # 0.025 <= 0.2
    text = table(doc)
    assert "fleet idle: RSS per org, MB" in text
    assert "target <= 0.2  met" in text


def test_fleet_figures_without_the_full_rate_phase_leave_its_keys_null() -> None:
    """The idle phase alone gives the idle figures; the full-rate ones stay None."""
    figs = fleet_figures(
        orgs=2,
        page_size=500,
        idle=_span((0, 10), (0.0, 1.0), rss=3_000_000),
        idle_baseline=_span((0, 10), (0.0, 0.5), rss=1_000_000),
    )
    assert figs["fleet_idle_rss_mb_per_org"] == pytest.approx(2.0)
    assert figs["fleet_full_cpu_pct"] is None
    assert figs["fleet_orgs_per_core"] is None


def test_failover_figures_median_min_max() -> None:
    """The median of an odd and an even count, min and max, under the series' own prefix."""
    figs = failover_figures([19.0, 17.5, 30.25], 15.0)
    assert figs["failover_runs"] == 3
    assert figs["failover_median_s"] == 19.0
    assert (figs["failover_min_s"], figs["failover_max_s"]) == (17.5, 30.25)
    assert figs["failover_session_timeout_s"] == 15.0
    short = failover_figures([8.0, 9.0, 7.0, 10.0], 6.0, short=True)
    assert short["failover_short_median_s"] == 8.5
    assert short["failover_short_times_s"] == [8.0, 9.0, 7.0, 10.0]
    assert failover_figures([], 15.0)["failover_median_s"] is None
    assert set(figs) | set(short) <= set(FLEET_KEYS)


def test_cpu_of_a_proc_stat_line_and_metric_sums() -> None:
    """utime + stime are read after the command name, which may hold spaces and ')'; a metric
    is summed over the samples whose labels match (every org's)."""
    fields = ["S"] + ["0"] * 10 + ["250", "50"] + ["0"] * 30
    stat = "1234 (python -m (x)) " + " ".join(fields)
    assert cpu_seconds_of_stat(stat, 100) == 3.0
    text = (
        'cdr_publisher_records_fetched_total{org="a",endpoint="stream"} 5.0\n'
        'cdr_publisher_records_fetched_total{org="b",endpoint="stream"} 7.0\n'
        'cdr_publisher_records_fetched_total{org="b",endpoint="feed"} 100.0\n'
        "cdr_publisher_records_fetched_created 1.0\n"
    )
    assert metric_sum(text, "cdr_publisher_records_fetched_total", {"endpoint": "stream"}) == 12
    assert metric_sum(text, "cdr_publisher_nothing") == 0


def test_fleet_and_failover_are_skipped_by_quick_unless_asked() -> None:
    """--quick leaves out the long fleet and failover sections; --fleet-orgs must be >= 2."""
    from bench.run import sections_to_skip

    assert {"fleet", "failover"} <= sections_to_skip(parse_args(["--quick"]))
    assert not {"fleet", "failover"} & sections_to_skip(parse_args([]))
    assert "fleet" not in sections_to_skip(parse_args(["--quick", "--with", "fleet"]))
    with pytest.raises(SystemExit):
        parse_args(["--fleet-orgs", "1"])


def test_table_shows_figures_and_verdicts() -> None:
    """The printed table names each target's verdict and prints unmeasured figures as such."""
    text = table(_doc(replay=None, reference=None))
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


def test_competent_events_equal_the_pipelines_on_the_same_records() -> None:
    """The competent baseline makes the very documents the pipeline does, key spellings too."""
    from publisher.events import Source, build_event

    records = generate_records(40)
    records[3] = {
        ("Hold Duration" if k == "Hold duration" else k): v for k, v in records[3].items()
    }
    source = Source("stream", "2026-01-01T00:00:00.000Z", "2026-01-01T01:00:00.000Z")
    parsed = parse_page(to_pages(records)[0]).records
    model = competent_model()
    for raw, cdr in zip(records, parsed, strict=True):
        competent = competent_event(model, raw, "org", source.as_dict())
        assert competent == build_event(cdr, org_id="org", source=source, replay_id=None)
