"""Realistic raw pages for the throughput runs, from the simulator's own traffic generator."""

from __future__ import annotations

from typing import Any

import orjson

from publisher.simulator.generator import MINUTE_MS, Traffic, build_records

PAGE_RECORDS = 5000
# A fixed start keeps the pages the same from run to run (same seed, same records).
_HISTORY_START_MS = 1_790_000_000_000


def generate_records(count: int, *, seed: int = 7, calls_per_minute: float = 600.0) -> list[Any]:
    """``count`` raw 87-key records, in call order, every Report ID distinct."""
    traffic = Traffic(seed, calls_per_minute, history_start_ms=_HISTORY_START_MS)
    minute = _HISTORY_START_MS // MINUTE_MS
    records: list[Any] = []
    while len(records) < count:
        for plan in traffic.plans(minute):
            records.extend(build_records(traffic.org, plan))
        minute += 1
    return records[:count]


def to_pages(records: list[Any], page_records: int = PAGE_RECORDS) -> list[bytes]:
    """The records as Webex page bodies ``{"items": [...]}`` of ``page_records`` each."""
    return [
        orjson.dumps({"items": records[i : i + page_records]})
        for i in range(0, len(records), page_records)
    ]
