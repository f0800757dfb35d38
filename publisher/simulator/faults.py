"""Faults the simulator can inject, and the deterministic dice that decide where they land.

Record faults (malformed, unknown keys, key casing, duplicates, a huge field, bytes that are not
UTF-8) are decided by hashing the seed
and the record's Report ID, so the same record is always corrupted the same way and a test can
find it again. Request faults (5xx, slow, forced 429) come from one seeded random stream drawn
once per request, in arrival order.
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import orjson

DUPLICATE_MAX_DELAY_MS = 30 * 60_000

# Spellings accepted from the CLI and the admin endpoint, mapped to the dataclass fields.
_ALIASES = {
    "5xx": "error_5xx",
    "slow": "slow",
    "slow-seconds": "slow_seconds",
    "malformed": "malformed",
    "unknown-keys": "unknown_keys",
    "casing": "casing",
    "duplicates": "duplicates",
    "429": "force_429",
    "huge": "huge",
    "bad-utf8": "bad_utf8",
}
_PROBABILITIES = (
    "error_5xx", "slow", "malformed", "unknown_keys", "casing", "duplicates", "huge", "bad_utf8",
)  # fmt: skip
MALFORMED_KINDS = ("missing-report-id", "bad-duration", "bad-timestamp")
# Records that break a publisher's limits rather than its parser: a field of megabytes (the event
# cannot fit a Kafka message) and bytes that are not UTF-8 (the page is no longer valid JSON).
HUGE_KIND = "huge-field"
BAD_UTF8_KIND = "bad-utf8"
HUGE_FIELD = "Location"
HUGE_FIELD_BYTES = 5 * 1024 * 1024
BAD_UTF8_FIELD = "Client version"
# Stands in for the bad bytes while the page is a Python object; encode_page swaps it for them.
_BAD_UTF8_MARK = "\ue000bad-utf8\ue000"
BAD_UTF8_BYTES = b"v1.\xff\xfe\xc3(bad)"
UNKNOWN_KEYS = (("Future field X", "x-value"), ("Carrier routing label", "RL-7"))
ERROR_STATUSES = (500, 502, 503, 504)


@dataclass(frozen=True, slots=True)
class Faults:
    """Probabilities (0..1) of each fault; all zero means a well-behaved service."""

    error_5xx: float = 0.0
    slow: float = 0.0
    slow_seconds: float = 1.5
    malformed: float = 0.0
    unknown_keys: float = 0.0
    casing: float = 0.0
    duplicates: float = 0.0
    force_429: float = 0.0
    huge: float = 0.0
    bad_utf8: float = 0.0

    def __post_init__(self) -> None:
        for name in (*_PROBABILITIES, "force_429"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"fault {name} must be a probability in 0..1, got {value}")
        if not 0.0 <= self.slow_seconds <= 300.0:
            raise ValueError(f"slow_seconds must be in 0..300, got {self.slow_seconds}")

    @classmethod
    def parse(cls, spec: str) -> Faults:
        """``5xx=0.05,slow=0.02,malformed=0.01,...`` (the CLI form); raises ValueError."""
        values: dict[str, float] = {}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            name, sep, raw = item.partition("=")
            if not sep:
                raise ValueError(f"fault {item!r} is not NAME=VALUE")
            values[name.strip()] = _number(name.strip(), raw.strip())
        return cls.from_mapping(values)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], base: Faults | None = None) -> Faults:
        """Faults from CLI or field names; unnamed faults keep ``base``. ValueError/TypeError."""
        known = {f.name for f in fields(cls)}
        changes: dict[str, float] = {}
        for name, value in values.items():
            field = _ALIASES.get(name, name)
            if field not in known:
                allowed = ", ".join(_ALIASES)
                raise ValueError(f"unknown fault {name!r} (known: {allowed})")
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise TypeError(f"fault {name} must be a number")
            changes[field] = _number(name, value) if isinstance(value, str) else float(value)
        return replace(base or cls(), **changes)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def _number(name: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"fault {name} needs a number, got {raw!r}") from None


def chance(seed: int, salt: str, report_id: str) -> float:
    """A stable pseudo-random number in [0, 1) for one record and one kind of fault."""
    # A real hash, not crc32: CRCs of inputs sharing a suffix are correlated across salts.
    digest = hashlib.blake2b(f"{seed}|{salt}|{report_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 18446744073709551616.0


def duplicate_delay_ms(seed: int, report_id: str) -> int:
    """How long after its first insertion a duplicated record is inserted again."""
    return 60_000 + int(chance(seed, "dup-delay", report_id) * (DUPLICATE_MAX_DELAY_MS - 60_000))


def is_duplicated(faults: Faults, seed: int, report_id: str) -> bool:
    return faults.duplicates > 0 and chance(seed, "dup", report_id) < faults.duplicates


def corrupt(record: dict[str, Any], faults: Faults, seed: int) -> tuple[dict[str, Any], str | None]:
    """The record as served under ``faults``, and the malformed kind if it was broken.

    Never changes ``record`` itself (it is shared with the generator's cache).
    """
    rid = str(record.get("Report ID", ""))
    out = record
    kind = None
    if faults.unknown_keys > 0 and chance(seed, "unknown", rid) < faults.unknown_keys:
        out = dict(out)
        name, value = UNKNOWN_KEYS[int(chance(seed, "unknown-which", rid) * len(UNKNOWN_KEYS))]
        out[name] = value
    if faults.casing > 0 and chance(seed, "casing", rid) < faults.casing:
        out = _recase(out, seed, rid)
    if faults.malformed > 0 and chance(seed, "malformed", rid) < faults.malformed:
        kind = MALFORMED_KINDS[int(chance(seed, "malformed-which", rid) * len(MALFORMED_KINDS))]
        out = _break(out, kind)
    elif faults.huge > 0 and chance(seed, "huge", rid) < faults.huge:
        kind = HUGE_KIND
        out = dict(out)
        _set_folded(out, HUGE_FIELD.casefold(), "A" * HUGE_FIELD_BYTES)
    elif faults.bad_utf8 > 0 and chance(seed, "bad-utf8", rid) < faults.bad_utf8:
        kind = BAD_UTF8_KIND
        out = dict(out)
        _set_folded(out, BAD_UTF8_FIELD.casefold(), _BAD_UTF8_MARK)
    return out, kind


def encode_page(records: list[dict[str, Any]]) -> bytes:
    """The page body ``{"items": [...]}``, with the bytes that are not UTF-8 put in where a
    record was given them (JSON encoders cannot write them)."""
    body = orjson.dumps({"items": records})
    mark = orjson.dumps(_BAD_UTF8_MARK)[1:-1]
    if mark in body:
        body = body.replace(mark, BAD_UTF8_BYTES)
    return body


# Variants real parsers must fold back: case changes and runs of white space.
_RECASE_TARGETS = ("Call type", "Report ID", "Duration", "Start time", "User type", "Answered")


def _variant(key: str, how: int) -> str:
    if how == 0:
        words = key.split(" ")
        return " ".join([*(w.lower() for w in words[:-1]), words[-1].upper()])  # "call TYPE"
    if how == 1:
        return key.replace(" ", "  ") if " " in key else f" {key} "  # "Report  ID"
    return key.upper()


def _recase(record: dict[str, Any], seed: int, rid: str) -> dict[str, Any]:
    picks = {
        key: int(chance(seed, f"casing-how-{key}", rid) * 3)
        for key in _RECASE_TARGETS
        if key in record and chance(seed, f"casing-{key}", rid) < 0.5
    }
    if not picks:
        picks = {"Call type": 0}
    # Rebuild to keep the payload's key order with only the spelling changed.
    return {(_variant(k, picks[k]) if k in picks else k): v for k, v in record.items()}


def _break(record: dict[str, Any], kind: str) -> dict[str, Any]:
    out = dict(record)
    if kind == "missing-report-id":
        for key in [k for k in out if " ".join(k.split()).casefold() == "report id"]:
            del out[key]
    elif kind == "bad-duration":
        _set_folded(out, "duration", "abc")
    else:
        _set_folded(out, "start time", "24/09/2026 7:49 PM")
    return out


def _set_folded(record: dict[str, Any], folded: str, value: str) -> None:
    for key in record:
        if " ".join(key.split()).casefold() == folded:
            record[key] = value
            return
    record[folded] = value


class RequestDice:
    """Per-request fault decisions from one seeded stream (thread-safe)."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(f"{seed}/requests")
        self._lock = threading.Lock()

    def roll(self, faults: Faults) -> tuple[int | None, float, bool]:
        """(5xx status or None, seconds to stall, force a 429) for the next request."""
        with self._lock:
            u_err, u_slow, u_429, u_which = (self._rng.random() for _ in range(4))
        status = ERROR_STATUSES[int(u_which * 4)] if u_err < faults.error_5xx else None
        delay = faults.slow_seconds if u_slow < faults.slow else 0.0
        return status, delay, u_429 < faults.force_429
