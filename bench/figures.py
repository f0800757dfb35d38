"""The benchmark's figures: rates, ratios, targets, the printed table and the JSON. Pure.

Every measured section hands back plain numbers; this module turns them into the figures the
issue asks for, so that the arithmetic can be tested without a broker or a clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# The keys bench-results.json always carries (null when a section did not run), as issue 13
# names them. Rates "per s" are wall-clock; "cpu_us_per_record" is process CPU time (all threads
# of the measuring process, librdkafka's included, the broker's and registry's JVMs excluded);
# the ratios and the limit multiple compare CPU cost per record, measured in the same run.
REQUIRED_KEYS: tuple[str, ...] = (
    "publish_records_per_s",
    "publish_cpu_us_per_record",
    "baseline_records_per_s",
    "competent_baseline_records_per_s",
    "ratio",
    "competent_ratio",
    "kafka_only_cpu_us_per_record",
    "limit_multiple",
    "peak_rss_mb",
    "restore_marks_per_s",
    "bytes_per_mark",
)
# The fleet figures (issue 11: one process, 200 simulated orgs, RSS and CPU per org caught up and
# at Webex's full rate, orgs per core) and the failover figures (issue 12: SIGKILL of a replica to
# its orgs publishing again), handed to results() as ``fleet={key: value}`` (bench/fleet.py and
# bench/failover.py make them with fleet_figures() and failover_figures() below); null when not
# measured. Label per key for the printed table.
FLEET_LABELS: dict[str, str] = {
    "fleet_orgs": "fleet: orgs in the one process",
    "fleet_page_size": "fleet: records per page (max)",
    "fleet_idle_seconds": "fleet idle: seconds measured",
    "fleet_idle_rss_mb": "fleet idle: RSS of the process, MB",
    "fleet_baseline_rss_mb": "fleet idle: RSS of a 1-org process (same run), MB",
    "fleet_idle_rss_mb_per_org": "fleet idle: RSS per org, MB ((N orgs - 1 org) / (N - 1))",
    "fleet_idle_cpu_pct": "fleet idle: CPU of the process, % of a core",
    "fleet_baseline_cpu_pct": "fleet idle: CPU of a 1-org process, % of a core",
    "fleet_idle_cpu_pct_per_org": "fleet idle: CPU per org, % of a core (process / N)",
    "fleet_full_seconds": "fleet full rate: seconds measured",
    "fleet_full_rss_mb": "fleet full rate: peak RSS of the process, MB",
    "fleet_full_baseline_rss_mb": "fleet full rate: peak RSS of a 1-org process, MB",
    "fleet_full_rss_mb_per_org": "fleet full rate: RSS per org, MB",
    "fleet_full_cpu_pct": "fleet full rate: CPU of the process, % of a core",
    "fleet_full_cpu_pct_per_org": "fleet full rate: CPU per org, % of a core",
    "fleet_full_requests_per_org_min": "fleet full rate: API requests per org a minute (max 11)",
    "fleet_full_records_per_s": "fleet full rate: records fetched/s, whole process",
    "fleet_cpu_ms_per_request": "fleet full rate: process CPU ms per API request (page)",
    "fleet_orgs_per_core": "fleet: orgs per core at Webex's full rate (1 + 10 a minute)",
    "failover_runs": "failover: runs (SIGKILL of a replica)",
    "failover_session_timeout_s": "failover: GROUP_SESSION_TIMEOUT_SECONDS",
    "failover_median_s": "failover: SIGKILL to its orgs publishing again, median s",
    "failover_min_s": "failover: min s",
    "failover_max_s": "failover: max s",
    "failover_short_runs": "failover, shorter session timeout: runs",
    "failover_short_session_timeout_s": "failover, shorter: GROUP_SESSION_TIMEOUT_SECONDS",
    "failover_short_median_s": "failover, shorter: median s",
    "failover_short_min_s": "failover, shorter: min s",
    "failover_short_max_s": "failover, shorter: max s",
}
# The JSON also carries each failover run's time (the table leaves lists to the notes).
FLEET_KEYS: tuple[str, ...] = (*FLEET_LABELS, "failover_times_s", "failover_short_times_s")
# Webex's budget per token: 1 initial request plus 10 pagination requests a minute.
FULL_RATE_REQUESTS_PER_MIN = 11.0


@dataclass(frozen=True, slots=True)
class Timing:
    """What one timed run did: how many items, wall seconds, and process CPU seconds (all
    threads, librdkafka's included)."""

    items: int
    wall_s: float
    cpu_s: float

    @property
    def per_s(self) -> float | None:
        return self.items / self.wall_s if self.wall_s > 0 else None

    @property
    def cores(self) -> float | None:
        """Cores kept busy on average: CPU seconds per wall second."""
        return self.cpu_s / self.wall_s if self.wall_s > 0 else None

    @property
    def per_core_s(self) -> float | None:
        """Items per CPU second: the rate one fully busy core would reach."""
        return self.items / self.cpu_s if self.cpu_s > 0 else None


@dataclass(frozen=True, slots=True)
class Target:
    key: str
    label: str
    limit: float
    at_least: bool
    """True: the figure must be >= limit; False: it must be <= (or <) limit."""

    def met(self, value: float | None) -> bool | None:
        if value is None:
            return None
        return value >= self.limit if self.at_least else value <= self.limit


TARGETS: tuple[Target, ...] = (
    Target(
        "publish_records_per_core_s",
        "publishing, records per CPU-second (a core of its own)",
        25_000,
        at_least=True,
    ),
    Target("ratio", "publishing / naive baseline, per CPU-second", 15.0, at_least=True),
    Target(
        "competent_ratio", "publishing / competent baseline, per CPU-second", 2.0, at_least=True
    ),
    Target("limit_multiple", "publishing CPU / kafka-only CPU per record", 3.0, at_least=False),
    Target("peak_rss_mb", "peak RSS publishing 5,000-record pages, MB", 150.0, at_least=False),
    Target("restore_marks_per_s", "restore, marks/s", 300_000, at_least=True),
    Target("bytes_per_mark", "memory per live mark, bytes", 32.0, at_least=False),
    Target("fleet_idle_rss_mb_per_org", "fleet: RSS per idle org, MB", 2.0, at_least=False),
    Target(
        "fleet_idle_cpu_pct_per_org", "fleet: CPU per idle org, % of a core", 0.2, at_least=False
    ),
)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def per_item(total: float | None, count: int) -> float | None:
    if total is None or count <= 0:
        return None
    return total / count


_VMRSS = re.compile(r"^VmRSS:\s+(\d+)\s+kB$", re.MULTILINE)


def vmrss_bytes(status_text: str) -> int | None:
    """VmRSS of a /proc/<pid>/status text, in bytes; None when the line is missing."""
    match = _VMRSS.search(status_text)
    return int(match.group(1)) * 1024 if match else None


def metric_value(
    metrics_text: str, name: str, labels: dict[str, str] | None = None
) -> float | None:
    """A sample of a Prometheus text exposition: the sum of the lines for ``name`` whose labels
    include ``labels`` (so over every org); None when there is none."""
    found: float | None = None
    for line in metrics_text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, label_text = head.partition("{")
        if metric != name:
            continue
        if labels and any(f'{k}="{v}"' not in label_text for k, v in labels.items()):
            continue
        try:
            found = (found or 0.0) + float(value)
        except ValueError:
            return None
    return found


def metric_sum(metrics_text: str, name: str, labels: dict[str, str] | None = None) -> float:
    """The sum of every sample of ``name`` whose labels include ``labels`` (e.g. over orgs)."""
    total = 0.0
    for line in metrics_text.splitlines():
        if not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, label_text = head.partition("{")
        if metric != name:
            continue
        if labels and any(f'{k}="{v}"' not in label_text for k, v in labels.items()):
            continue
        try:
            total += float(value)
        except ValueError:
            continue
    return total


def cpu_seconds_of_stat(stat_text: str, clock_ticks: int) -> float:
    """utime + stime of a /proc/<pid>/stat line (every thread of the process), in seconds.
    The command name may hold spaces and parentheses, so fields count from its last ')'."""
    fields = stat_text.rpartition(")")[2].split()
    # After the name: state is field 3 of proc(5), utime 14 and stime 15.
    return (int(fields[11]) + int(fields[12])) / clock_ticks


@dataclass(frozen=True, slots=True)
class ProcSample:
    """One look at a process: monotonic wall time, CPU seconds so far, RSS bytes."""

    wall_s: float
    cpu_s: float
    rss_bytes: int


@dataclass(frozen=True, slots=True)
class Span:
    """A process watched over a window: its first and last sample and the largest RSS seen."""

    start: ProcSample
    end: ProcSample
    peak_rss_bytes: int

    @classmethod
    def of(cls, samples: list[ProcSample]) -> Span:
        return cls(samples[0], samples[-1], max(s.rss_bytes for s in samples))

    @property
    def seconds(self) -> float:
        return self.end.wall_s - self.start.wall_s

    @property
    def cpu_s(self) -> float:
        return self.end.cpu_s - self.start.cpu_s

    @property
    def cpu_pct(self) -> float | None:
        """Percent of one core over the window."""
        return self.cpu_s / self.seconds * 100 if self.seconds > 0 else None


def fleet_figures(
    *,
    orgs: int,
    page_size: int,
    idle: Span | None,
    idle_baseline: Span | None,
    full: Span | None = None,
    full_baseline: Span | None = None,
    full_requests: int | None = None,
    full_records: float | None = None,
) -> dict[str, Any]:
    """The fleet keys from what was watched: a process of ``orgs`` orgs and one of 1 org, side
    by side in the same run, caught up (idle) and pulling at Webex's full rate (full).
    RSS per org is the difference of the two processes over ``orgs - 1``, so the interpreter,
    the libraries and the per-process Kafka clients are not counted as the orgs'; CPU per org is
    the whole process's CPU over ``orgs`` (its fixed share included). Orgs per core at full
    rate: requests served per CPU-second over the 11 requests a minute one org may make."""

    def mb(value: int | None) -> float | None:
        return value / 1e6 if value is not None else None

    def per_org_rss(many: Span | None, one: Span | None, peak: bool) -> float | None:
        if many is None or one is None or orgs <= 1:
            return None
        if peak:
            return (many.peak_rss_bytes - one.peak_rss_bytes) / (orgs - 1) / 1e6
        return (many.end.rss_bytes - one.end.rss_bytes) / (orgs - 1) / 1e6

    def pct(span: Span | None) -> float | None:
        return span.cpu_pct if span is not None else None

    per_request = full.cpu_s / full_requests if full is not None and full_requests else None
    return {
        "fleet_orgs": orgs,
        "fleet_page_size": page_size,
        "fleet_idle_seconds": idle.seconds if idle else None,
        "fleet_idle_rss_mb": mb(idle.end.rss_bytes) if idle else None,
        "fleet_baseline_rss_mb": mb(idle_baseline.end.rss_bytes) if idle_baseline else None,
        "fleet_idle_rss_mb_per_org": per_org_rss(idle, idle_baseline, peak=False),
        "fleet_idle_cpu_pct": pct(idle),
        "fleet_baseline_cpu_pct": pct(idle_baseline),
        "fleet_idle_cpu_pct_per_org": ratio(pct(idle), orgs),
        "fleet_full_seconds": full.seconds if full else None,
        "fleet_full_rss_mb": mb(full.peak_rss_bytes) if full else None,
        "fleet_full_baseline_rss_mb": mb(full_baseline.peak_rss_bytes) if full_baseline else None,
        "fleet_full_rss_mb_per_org": per_org_rss(full, full_baseline, peak=True),
        "fleet_full_cpu_pct": pct(full),
        "fleet_full_cpu_pct_per_org": ratio(pct(full), orgs),
        "fleet_full_requests_per_org_min": (
            full_requests / orgs / (full.seconds / 60)
            if full is not None and full_requests is not None and full.seconds > 0
            else None
        ),
        "fleet_full_records_per_s": (
            full_records / full.seconds
            if full is not None and full_records is not None and full.seconds > 0
            else None
        ),
        "fleet_cpu_ms_per_request": per_request * 1000 if per_request else None,
        "fleet_orgs_per_core": (
            60 / FULL_RATE_REQUESTS_PER_MIN / per_request if per_request else None
        ),
    }


def failover_figures(
    times_s: list[float], session_timeout_s: float, *, short: bool = False
) -> dict[str, Any]:
    """Median, min and max of the measured failovers (SIGKILL to the last of the killed
    replica's orgs publishing again), under ``failover_`` or ``failover_short_``."""
    name = "failover_short" if short else "failover"
    ordered = sorted(times_s)
    n = len(ordered)
    median = None
    if n:
        median = ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2
    return {
        f"{name}_runs": n,
        f"{name}_session_timeout_s": session_timeout_s,
        f"{name}_median_s": median,
        f"{name}_min_s": ordered[0] if n else None,
        f"{name}_max_s": ordered[-1] if n else None,
        f"{name}_times_s": [round(t, 2) for t in times_s],
    }


def _us_per_item(timing: Timing | None) -> float | None:
    if timing is None or timing.items <= 0:
        return None
    return timing.cpu_s / timing.items * 1e6


def results(
    *,
    quick: bool,
    publish: Timing | None,
    baseline: Timing | None,
    restore: Timing | None,
    restore_rss_delta_bytes: int | None,
    restore_table_bytes: int | None,
    daemon_rss_bytes: int | None,
    daemon_records: int | None,
    replay: Timing | None,
    notes: list[str],
    competent: Timing | None = None,
    kafka_only: Timing | None = None,
    reference: Timing | None = None,
    msgspec: Timing | None = None,
    daemon_peak_rss_bytes: int | None = None,
    fleet: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON document: the required keys plus the details behind them."""
    marks = restore.items if restore else 0
    by_rss = per_item(restore_rss_delta_bytes, marks)
    by_table = per_item(restore_table_bytes, marks)
    publish_us = _us_per_item(publish)
    kafka_us = _us_per_item(kafka_only)
    doc: dict[str, Any] = {
        "mode": "quick" if quick else "full",
        "records": publish.items if publish else None,
        "publish_records_per_s": publish.per_s if publish else None,
        "publish_cpu_us_per_record": publish_us,
        "publish_records_per_core_s": publish.per_core_s if publish else None,
        "publish_cores_used": publish.cores if publish else None,
        "baseline_records": baseline.items if baseline else None,
        "baseline_records_per_s": baseline.per_s if baseline else None,
        "baseline_cpu_us_per_record": _us_per_item(baseline),
        "competent_baseline_records": competent.items if competent else None,
        "competent_baseline_records_per_s": competent.per_s if competent else None,
        "competent_baseline_cpu_us_per_record": _us_per_item(competent),
        # Same-run CPU cost per record of the baseline over the publisher's.
        "ratio": ratio(_us_per_item(baseline), publish_us),
        "competent_ratio": ratio(_us_per_item(competent), publish_us),
        "ratio_wall": ratio(
            publish.per_s if publish else None, baseline.per_s if baseline else None
        ),
        "kafka_only_cpu_us_per_record": kafka_us,
        "limit_multiple": ratio(publish_us, kafka_us),
        "reference_cpu_us_per_record": _us_per_item(reference),
        "speedup_vs_reference": ratio(_us_per_item(reference), publish_us),
        # The msgspec path alone, as where the compiled reader (native/) is not built.
        "msgspec_cpu_us_per_record": _us_per_item(msgspec),
        "speedup_vs_msgspec": ratio(_us_per_item(msgspec), publish_us),
        "peak_rss_mb": daemon_peak_rss_bytes / 1e6 if daemon_peak_rss_bytes is not None else None,
        "restore_marks": marks or None,
        "restore_marks_per_s": restore.per_s if restore else None,
        # The RSS delta is what the process really holds; the table alone is the floor.
        "bytes_per_mark": by_rss if by_rss is not None else by_table,
        "bytes_per_mark_rss_delta": by_rss,
        "bytes_per_mark_table": by_table,
        "daemon_records": daemon_records,
        "daemon_rss_mb": daemon_rss_bytes / 1e6 if daemon_rss_bytes is not None else None,
        "replay_records_per_s": replay.per_s if replay else None,
        "notes": list(notes),
    }
    doc.update({key: (fleet or {}).get(key) for key in FLEET_KEYS})
    doc["targets"] = {
        t.key: {"limit": t.limit, "at_least": t.at_least, "met": t.met(doc.get(t.key))}
        for t in TARGETS
    }
    return doc


# Printed as "not measured" when absent; the other fleet rows only when they were measured.
_FLEET_ALWAYS = frozenset(
    {"fleet_idle_rss_mb_per_org", "fleet_idle_cpu_pct_per_org", "fleet_orgs_per_core",
     "failover_median_s"}
)  # fmt: skip


def _show(value: Any) -> str:
    if value is None:
        return "not measured"
    if isinstance(value, float):
        if abs(value) < 10:
            return f"{value:.3g}"
        return f"{value:,.1f}" if value < 1000 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def table(doc: dict[str, Any]) -> str:
    """The printed table: one line a figure, with its target and whether it is met."""
    labels = (
        ("records published (end to end)", "records", ""),
        ("publishing, records/s (wall, cores shared)", "publish_records_per_s", ""),
        ("publishing, CPU us per record", "publish_cpu_us_per_record", ""),
        ("cores used while publishing", "publish_cores_used", ""),
        ("today's path (reference parser), CPU us/record", "reference_cpu_us_per_record", ""),
        ("speed-up over today's path, per CPU-second", "speedup_vs_reference", "target >= 2"),
        ("msgspec path alone (no native/), CPU us/record", "msgspec_cpu_us_per_record", ""),
        ("speed-up of the compiled reader over it", "speedup_vs_msgspec", ""),
        ("naive baseline records", "baseline_records", ""),
        ("naive baseline, records/s (wall)", "baseline_records_per_s", ""),
        ("naive baseline, CPU us per record", "baseline_cpu_us_per_record", ""),
        ("competent baseline records", "competent_baseline_records", ""),
        ("competent baseline, records/s (wall)", "competent_baseline_records_per_s", ""),
        ("competent baseline, CPU us per record", "competent_baseline_cpu_us_per_record", ""),
        ("kafka only (produce + commit), CPU us/record", "kafka_only_cpu_us_per_record", ""),
        ("restore: live marks", "restore_marks", ""),
        ("bytes per mark (table alone)", "bytes_per_mark_table", ""),
        ("daemon records published", "daemon_records", ""),
        ("daemon RSS once caught up, MB", "daemon_rss_mb", ""),
        ("replay, records/s (limits off)", "replay_records_per_s", ""),
    )
    rows: list[tuple[str, str, str]] = [
        (label, _show(doc.get(key)), extra) for label, key, extra in labels
    ]
    rows.extend(
        (FLEET_LABELS.get(key, key), _show(doc.get(key)), "")
        for key in FLEET_KEYS
        if not isinstance(doc.get(key), list) and (doc.get(key) is not None or key in _FLEET_ALWAYS)
    )
    for target in TARGETS:
        value = doc.get(target.key)
        met = target.met(value)
        sign = ">=" if target.at_least else "<="
        verdict = "" if met is None else ("met" if met else "MISSED")
        limit = f"{target.limit:,.0f}" if target.limit >= 10 else f"{target.limit:g}"
        rows.append((target.label, _show(value), f"target {sign} {limit}  {verdict}"))
    width = max(len(r[0]) for r in rows)
    value_width = max(len(r[1]) for r in rows)
    lines = [
        f"{label:<{width}}  {value:>{value_width}}  {extra}".rstrip()
        for label, value, extra in rows
    ]
    lines.extend(f"note: {note}" for note in doc.get("notes", []))
    return "\n".join(lines)
