"""The benchmark's figures: rates, ratios, targets, the printed table and the JSON. Pure.

Every measured section hands back plain numbers; this module turns them into the figures the
issue asks for, so that the arithmetic can be tested without a broker or a clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# The keys bench-results.json always carries (null when a section did not run).
REQUIRED_KEYS: tuple[str, ...] = (
    "publish_records_per_s",
    "baseline_records_per_s",
    "ratio",
    "restore_marks_per_s",
    "bytes_per_mark",
    "daemon_rss_mb",
    "replay_records_per_s",
    "records",
)


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
        "publish_records_per_core_s", "publishing, records/s on one core", 25_000, at_least=True
    ),
    Target("ratio", "publishing / naive baseline", 15.0, at_least=True),
    Target("restore_marks_per_s", "restore, marks/s", 300_000, at_least=True),
    Target("bytes_per_mark", "memory per live mark, bytes", 64.0, at_least=False),
    Target("daemon_rss_mb", "daemon RSS at the record count, MB", 300.0, at_least=False),
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
    """One sample of a Prometheus text exposition: the first line for ``name`` whose labels
    include ``labels``; None when there is none."""
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
            return float(value)
        except ValueError:
            return None
    return None


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
) -> dict[str, Any]:
    """The JSON document: the required keys plus the details behind them."""
    marks = restore.items if restore else 0
    by_rss = per_item(restore_rss_delta_bytes, marks)
    by_table = per_item(restore_table_bytes, marks)
    doc: dict[str, Any] = {
        "mode": "quick" if quick else "full",
        "records": publish.items if publish else None,
        "publish_records_per_s": publish.per_s if publish else None,
        "publish_records_per_core_s": publish.per_core_s if publish else None,
        "publish_cores_used": publish.cores if publish else None,
        "baseline_records": baseline.items if baseline else None,
        "baseline_records_per_s": baseline.per_s if baseline else None,
        "baseline_records_per_core_s": baseline.per_core_s if baseline else None,
        "ratio": ratio(publish.per_s if publish else None, baseline.per_s if baseline else None),
        "ratio_per_core": ratio(
            publish.per_core_s if publish else None, baseline.per_core_s if baseline else None
        ),
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
    doc["targets"] = {
        t.key: {"limit": t.limit, "at_least": t.at_least, "met": t.met(doc.get(t.key))}
        for t in TARGETS
    }
    return doc


def _show(value: Any) -> str:
    if value is None:
        return "not measured"
    if isinstance(value, float):
        return f"{value:,.1f}" if value < 1000 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def table(doc: dict[str, Any]) -> str:
    """The printed table: one line a figure, with its target and whether it is met."""
    rows: list[tuple[str, str, str]] = [
        ("records published (end to end)", _show(doc.get("records")), ""),
        ("publishing, records/s (wall)", _show(doc.get("publish_records_per_s")), ""),
        ("cores used while publishing", _show(doc.get("publish_cores_used")), ""),
        ("naive baseline records", _show(doc.get("baseline_records")), ""),
        ("naive baseline, records/s (wall)", _show(doc.get("baseline_records_per_s")), ""),
        (
            "naive baseline, records/s on one core",
            _show(doc.get("baseline_records_per_core_s")),
            "",
        ),
        ("ratio per core", _show(doc.get("ratio_per_core")), ""),
        ("restore: live marks", _show(doc.get("restore_marks")), ""),
        ("bytes per mark (table alone)", _show(doc.get("bytes_per_mark_table")), ""),
        ("daemon records published", _show(doc.get("daemon_records")), ""),
        ("replay, records/s (limits off)", _show(doc.get("replay_records_per_s")), ""),
    ]
    for target in TARGETS:
        value = doc.get(target.key)
        met = target.met(value)
        sign = ">=" if target.at_least else "<="
        verdict = "" if met is None else ("met" if met else "MISSED")
        rows.append((target.label, _show(value), f"target {sign} {target.limit:,.0f}  {verdict}"))
    width = max(len(r[0]) for r in rows)
    value_width = max(len(r[1]) for r in rows)
    lines = [
        f"{label:<{width}}  {value:>{value_width}}  {extra}".rstrip()
        for label, value, extra in rows
    ]
    lines.extend(f"note: {note}" for note in doc.get("notes", []))
    return "\n".join(lines)
