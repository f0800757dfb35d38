"""The simulator's fault rules: parsing, deterministic record corruption, request dice."""

from __future__ import annotations

import orjson
import pytest

from publisher.simulator.faults import (
    BAD_UTF8_BYTES,
    BAD_UTF8_KIND,
    HUGE_FIELD_BYTES,
    HUGE_KIND,
    Faults,
    RequestDice,
    corrupt,
    encode_page,
)
from publisher.simulator.generator import MINUTE_MS, Traffic
from publisher.webex.fields import normalise_key

START_MS = 1_790_000_000_000 - 1_790_000_000_000 % MINUTE_MS


def sample_records(n: int = 400) -> list[dict[str, object]]:
    t = Traffic(5, 60.0, history_start_ms=START_MS)
    out: list[dict[str, object]] = []
    minute = START_MS // MINUTE_MS
    while len(out) < n:
        out += [t.record(g) for g in t._bucket(minute).by_start]
        minute += 1
    return out[:n]


def test_parse_reads_the_cli_form() -> None:
    """The CLI spelling maps onto the fields, unnamed faults stay off."""
    faults = Faults.parse("5xx=0.05, slow=0.02,malformed=0.01,unknown-keys=0.1,casing=0.2,429=0.3")

    assert faults.error_5xx == 0.05
    assert faults.slow == 0.02
    assert faults.malformed == 0.01
    assert faults.unknown_keys == 0.1
    assert faults.casing == 0.2
    assert faults.force_429 == 0.3
    assert faults.duplicates == 0.0


@pytest.mark.parametrize("spec", ["5xx", "5xx=lots", "nonsense=0.1", "casing=1.5", "slow=-1"])
def test_parse_refuses_bad_specs(spec: str) -> None:
    """A malformed, unknown or out-of-range fault is a ValueError naming it."""
    with pytest.raises(ValueError, match=r"fault|probability"):
        Faults.parse(spec)


def test_from_mapping_keeps_the_base_for_unnamed_faults() -> None:
    """A runtime change touches only the faults it names."""
    base = Faults(casing=0.5)

    changed = Faults.from_mapping({"5xx": 0.25, "duplicates": 0.1}, base=base)

    assert changed == Faults(casing=0.5, error_5xx=0.25, duplicates=0.1)


def test_no_faults_serves_the_record_unchanged() -> None:
    """With every probability zero a record goes out as generated, not even copied."""
    record = sample_records(1)[0]

    out, kind = corrupt(record, Faults(), seed=1)

    assert out is record
    assert kind is None


def test_malformed_records_are_broken_deterministically_and_reported() -> None:
    """Each malformed record is broken one of three ways, the same way every time."""
    faults = Faults(malformed=0.3)
    records = sample_records()

    results = [corrupt(r, faults, seed=9) for r in records]
    again = [corrupt(r, faults, seed=9) for r in records]

    assert results == again
    kinds = {kind for _, kind in results if kind}
    assert kinds == {"missing-report-id", "bad-duration", "bad-timestamp"}
    share = sum(kind is not None for _, kind in results) / len(results)
    assert 0.2 < share < 0.4
    for (out, kind), original in zip(results, records, strict=True):
        if kind == "missing-report-id":
            assert "Report ID" not in out
        elif kind == "bad-duration":
            assert out["Duration"] == "abc"
        elif kind == "bad-timestamp":
            assert out["Start time"] != original["Start time"]
        assert original["Duration"] != "abc"  # the shared record is never changed


def test_casing_and_unknown_keys_keep_the_record_readable() -> None:
    """Key variants fold back to the real keys, and unknown keys are added, not swapped in."""
    faults = Faults(casing=1.0, unknown_keys=1.0)
    record = sample_records(1)[0]

    out, kind = corrupt(record, faults, seed=2)

    assert kind is None
    renamed = set(out) - set(record)
    assert any(k in ("Future field X", "Carrier routing label") for k in renamed)
    assert any(k != normalise_key(k) and k not in record for k in renamed)
    known = {normalise_key(k) for k in out if k not in ("Future field X", "Carrier routing label")}
    assert known == {normalise_key(k) for k in record}


def test_request_dice_repeat_for_a_seed() -> None:
    """The sequence of request faults is the same for the same seed."""
    faults = Faults(error_5xx=0.3, slow=0.3, force_429=0.3, slow_seconds=0.5)

    a = [RequestDice(4).roll(faults) for _ in range(1)]
    first, second = RequestDice(4), RequestDice(4)
    rolls = [first.roll(faults) for _ in range(200)]

    assert rolls == [second.roll(faults) for _ in range(200)]
    assert a[0] == rolls[0]
    statuses = {status for status, _, _ in rolls if status}
    assert statuses == {500, 502, 503, 504}
    assert any(delay == 0.5 for _, delay, _ in rolls)
    assert any(force for _, _, force in rolls)


def test_huge_and_bad_utf8_faults_mark_records_and_break_the_page_bytes() -> None:
    """huge=P gives a record a 5 MB field; bad-utf8=P gives one bytes that are not UTF-8 in the
    served page, which stays valid JSON everywhere else; both are reported by kind."""
    faults = Faults.parse("huge=0.02,bad-utf8=0.02")
    records = sample_records()
    served = [corrupt(r, faults, seed=3) for r in records]
    kinds = [kind for _, kind in served]

    assert HUGE_KIND in kinds
    assert BAD_UTF8_KIND in kinds
    huge = next(r for r, kind in served if kind == HUGE_KIND)
    assert len(huge["Location"]) == HUGE_FIELD_BYTES
    body = encode_page([r for r, _ in served])
    with pytest.raises(UnicodeDecodeError):
        body.decode("utf-8")
    assert body.count(BAD_UTF8_BYTES) == kinds.count(BAD_UTF8_KIND)
    clean = encode_page([r for r, kind in served if kind != BAD_UTF8_KIND])
    assert len(orjson.loads(clean)["items"]) == len(records) - kinds.count(BAD_UTF8_KIND)
