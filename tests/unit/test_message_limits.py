"""Issue 10 item 4: no input the API can send makes a message the broker refuses, and a broken
page loses only what is broken.

Every produced message fits the producer's message.max.bytes by construction; an event that
cannot goes to the DLQ; a DLQ entry too large keeps its first 64 KiB, size, SHA-256 and reason;
a page that is not valid UTF-8 or JSON is salvaged record by record.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import orjson
import pytest

from publisher.batch import Batch, Topics, build_batch
from publisher.dedup import MarkTable
from publisher.events import (
    DEFAULT_MESSAGE_MAX_BYTES,
    DLQ_KEEP_BYTES,
    EventEncoder,
    Source,
    dlq_entry,
    headers_size,
)
from publisher.kafka.config import max_message_bytes, producer_config
from publisher.settings import load_settings
from publisher.webex.record import RejectedRecord, parse_page
from publisher.webex.salvage import split_items

SAMPLES = json.loads((Path(__file__).parents[1] / "data" / "samples.json").read_text())["items"]
SOURCE = Source("stream", "2026-11-28T10:00:00.000Z", "2026-11-28T11:00:00.000Z")
TOPICS = Topics(events="ev", dlq="dlq")
BROKER_DEFAULT_MAX_MESSAGE_BYTES = 1_048_588  # Kafka's message.max.bytes / max.message.bytes


def _record(report_id: str, **changes: object) -> dict[str, object]:
    record = dict(SAMPLES[2])
    record["Report ID"] = report_id
    record.update(changes)
    return record


def _batch(body: bytes, limit: int = DEFAULT_MESSAGE_MAX_BYTES) -> Batch:
    return build_batch(
        parse_page(body),
        committed=MarkTable(),
        encoder=EventEncoder(3, max_message_bytes=limit),
        topics=TOPICS,
        org_id="org-1",
        source=SOURCE,
    )


def _message_sizes(batch: Batch) -> list[int]:
    events = batch.events
    sizes = [
        len(k) + len(v) + headers_size(events.headers)
        for k, v in zip(events.keys, events.values, strict=True)
    ]
    sizes += [
        len(r.key or b"") + len(r.value or b"") + headers_size(r.headers) for r in batch.records
    ]
    return sizes


def test_an_event_too_large_for_a_message_goes_to_the_dlq_cut_with_size_and_hash() -> None:
    """A record with a 5 MB field: its neighbours are events, it is a DLQ entry of its first
    64 KiB with its full size and SHA-256 and the reason; no message exceeds the limit."""
    huge = "A" * (5 * 1024 * 1024)
    body = orjson.dumps(
        {"items": [_record("r-1"), _record("r-huge", Location=huge), _record("r-3")]}
    )

    batch = _batch(body)

    assert batch.published == 2
    assert batch.dlq == 1
    (entry,) = batch.records
    headers = dict(entry.headers or [])
    assert entry.topic == "dlq"
    assert entry.key == b"r-huge"
    assert headers["dlq_truncated"] == b"true"
    original = int(headers["dlq_original_size"])
    assert original > len(huge)
    assert entry.value is not None
    assert len(entry.value) == DLQ_KEEP_BYTES
    assert b"does not fit the message limit" in headers["dlq_reason"]
    # The hash is of the whole event JSON, whose first bytes the entry keeps.
    assert entry.value.startswith(b'{"event_id":"r-huge"')
    assert len(headers["dlq_sha256"]) == 64
    assert max(_message_sizes(batch)) + 512 <= DEFAULT_MESSAGE_MAX_BYTES


def test_a_dlq_entry_that_fits_keeps_all_its_bytes_and_one_that_does_not_is_cut() -> None:
    """Raw bytes up to the limit are kept whole; beyond it, the first 64 KiB, with
    dlq_truncated, dlq_original_size and dlq_sha256 of all of them."""
    small = RejectedRecord(raw=b"x" * 1000, reason="bad", report_id="r-1")
    big_raw = bytes(range(256)) * 8192  # 2 MiB
    big = RejectedRecord(raw=big_raw, reason="bad", report_id="r-2")

    kept = dlq_entry(small, org_id="o", source=SOURCE)
    cut = dlq_entry(big, org_id="o", source=SOURCE)

    assert kept.value == small.raw
    assert "dlq_truncated" not in dict(kept.headers)
    headers = dict(cut.headers)
    assert cut.value == big_raw[:DLQ_KEEP_BYTES]
    assert headers["dlq_original_size"] == str(len(big_raw)).encode()
    assert headers["dlq_sha256"] == hashlib.sha256(big_raw).hexdigest().encode()
    assert headers["dlq_reason"] == b"bad"


def test_a_dlq_entry_always_fits_even_a_small_limit_and_a_huge_reason_and_key() -> None:
    """A limit far below 64 KiB, a reason of megabytes and a 'Report ID' of megabytes: the
    entry still fits (key dropped, reason cut, value cut to what room is left)."""
    rejected = RejectedRecord(raw=b"y" * 200_000, reason="r" * 2_000_000, report_id="k" * 100_000)

    entry = dlq_entry(rejected, org_id="o", source=SOURCE, max_message_bytes=20_000)

    size = len(entry.key or b"") + len(entry.value) + headers_size(entry.headers)
    assert size + 512 <= 20_000
    assert entry.key is None
    assert dict(entry.headers)["dlq_original_size"] == b"200000"


def test_the_producer_limit_is_below_the_broker_default_and_the_encoder_follows_it() -> None:
    """message.max.bytes defaults under the broker's default topic limit (which librdkafka
    cannot check at produce time); an operator's value through kafka_extra is the one used."""
    settings = load_settings(org_id="o", webex_token="t")
    raised = load_settings(
        org_id="o", webex_token="t", kafka_extra={"message.max.bytes": "2000000"}
    )

    assert producer_config(settings, "x")["message.max.bytes"] <= BROKER_DEFAULT_MAX_MESSAGE_BYTES
    assert max_message_bytes(settings) == DEFAULT_MESSAGE_MAX_BYTES
    assert max_message_bytes(raised) == 2_000_000


def test_a_page_with_bytes_that_are_not_utf8_keeps_its_good_records() -> None:
    """One record carries bytes that are not UTF-8: the others are parsed and published, that
    one alone is rejected with its own raw bytes (not the whole page)."""
    good = [orjson.dumps(_record(f"r-{i}")) for i in range(4)]
    bad = orjson.dumps(_record("r-bad", **{"Client version": "MARK"})).replace(b"MARK", b"\xff\xfe")
    body = b'{"items":[' + b",".join([good[0], good[1], bad, good[2], good[3]]) + b"]}"

    page = parse_page(body)
    batch = _batch(body)

    assert [cdr.report_id for cdr in page.records] == ["r-0", "r-1", "r-2", "r-3"]
    (rejected,) = page.rejected
    assert rejected.raw == bad
    assert rejected.reason.startswith("record is not valid UTF-8")
    assert rejected.report_id == "r-bad"
    assert batch.published == 4
    assert batch.dlq == 1
    assert batch.records[0].value == bad
    assert batch.records[0].key == b"r-bad"


def test_a_page_cut_short_keeps_every_whole_record() -> None:
    """A page that ends in the middle of a record: the whole records before it are parsed, the
    cut one goes to the DLQ with the bytes that came."""
    records = [orjson.dumps(_record(f"r-{i}")) for i in range(3)]
    body = b'{"items":[' + b",".join(records) + b"," + records[0][:700]

    page = parse_page(body)

    assert [cdr.report_id for cdr in page.records] == ["r-0", "r-1", "r-2"]
    (rejected,) = page.rejected
    assert rejected.raw == records[0][:700]


def test_junk_between_records_goes_to_the_dlq_and_the_records_are_kept() -> None:
    """Stray bytes between two records (not JSON) are kept as a DLQ entry of their own."""
    first, second = orjson.dumps(_record("r-1")), orjson.dumps(_record("r-2"))
    body = b'{"items":[' + first + b", @@garbage@@ ," + second + b"]}"

    page = parse_page(body)

    assert [cdr.report_id for cdr in page.records] == ["r-1", "r-2"]
    assert [r.raw.strip(b" ,") for r in page.rejected] == [b"@@garbage@@"]


def test_the_scanner_is_not_fooled_by_braces_and_quotes_inside_strings() -> None:
    """Strings holding braces, brackets, escaped quotes and backslashes do not move the
    boundaries between records."""
    records = [b'{"a":"}]{[\\"","b":{"c":[1,{"d":"\\\\"}]}}', b'{"x":"\xff"}', b"{}"]
    body = b'{"other":{"items":[{}]},"items":[ ' + b" , ".join(records) + b" ]}"

    objects, junk = split_items(body)

    assert objects is not None
    assert [body[a:b] for a, b in objects] == records
    assert junk == []


@pytest.mark.parametrize("body", [b"<html>busy</html>", b'{"items": 5', b"\xff\xfe"])
def test_a_body_with_no_items_array_is_still_a_bad_page(body: bytes) -> None:
    """Nothing to salvage: WebexBadPageError carrying the body, as before (the daemon keeps the
    body in the DLQ, cut to fit)."""
    from publisher.errors import WebexBadPageError

    with pytest.raises(WebexBadPageError) as caught:
        parse_page(body)
    assert caught.value.body == body
