"""CDR -> event: the JSON body, its Kafka key, headers and wire-format frame. Pure.

The frame is the Confluent wire format (magic byte 0, 4-byte big-endian schema id, UTF-8 JSON),
built here rather than by ``JSONSerializer``, whose per-record pure-Python validation caps out near
1,400 records/s.

Two encoders give the same bytes (a test compares them on mixed pages):
- :meth:`EventEncoder.row_encoder`, for the fast rows of :mod:`publisher.webex.page`: msgspec
  encodes the envelope and the row struct in one call. There is no validation pass: the rows are
  typed by construction, and property tests validate every generated event against the schema
  with the compiled validator.
- :meth:`EventEncoder.encode`, for records the reference parser read (a few odd ones): the event
  dict, validated once by jsonschema-rs, then orjson.

Every message must fit the broker's limit, by construction: an event larger than the producer's
``message.max.bytes`` (less room for the key, headers and batch framing) goes to the DLQ instead,
and a DLQ entry that would be too large keeps the first 64 KiB of its bytes, with the total size,
the SHA-256 and the reason in its headers.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import msgspec
import orjson

from publisher.event_schema import EVENT_TYPE, SCHEMA_VERSION, event_schema
from publisher.webex import native
from publisher.webex.fields import FIELDS
from publisher.webex.record import Cdr, RejectedRecord

MAGIC_BYTE = 0
# librdkafka's default, and below the broker's default topic limit (max.message.bytes 1048588):
# librdkafka cannot enforce the topic's limit at produce time, the broker refuses the batch.
DEFAULT_MESSAGE_MAX_BYTES: Final = 1_000_000
# Room for a record batch's header (61 bytes) and one record's framing (varints, lengths),
# which librdkafka counts against message.max.bytes besides key, value and headers.
MESSAGE_OVERHEAD: Final = 512
DLQ_KEEP_BYTES: Final = 64 * 1024
DLQ_REASON_MAX_BYTES: Final = 4096
DLQ_KEY_MAX_BYTES: Final = 1024
_EMPTY_CDR: dict[str, Any] = {field.name: None for field in FIELDS}


@dataclass(frozen=True, slots=True)
class Source:
    """Where a record came from: the endpoint and the window it was fetched in (canonical times)."""

    endpoint: str
    window_start: str
    window_end: str

    def as_dict(self) -> dict[str, str]:
        return {
            "endpoint": self.endpoint,
            "window_start": self.window_start,
            "window_end": self.window_end,
        }


def build_event(cdr: Cdr, *, org_id: str, source: Source, replay_id: str | None) -> dict[str, Any]:
    """The event body: envelope, every known field (null when absent), unknown keys as they came."""
    return {
        "event_id": cdr.report_id,
        "event_type": EVENT_TYPE,
        "schema_version": SCHEMA_VERSION,
        "org_id": org_id,
        "correlation_id": cdr.correlation_id,
        "report_time": cdr.fields.get("report_time"),
        "source": source.as_dict(),
        "replay_id": replay_id,
        "cdr": {**_EMPTY_CDR, **cdr.fields},
        "unknown_fields": cdr.unknown,
    }


def event_key(cdr: Cdr) -> bytes:
    """The Correlation ID, so every leg of a call lands in one partition in order.

    Fallback when Webex sends no Correlation ID: the Report ID (the record then stands alone).
    """
    return (cdr.correlation_id or cdr.report_id).encode()


def event_headers(source: Source, replay_id: str | None) -> list[tuple[str, bytes]]:
    headers = [("event_type", EVENT_TYPE.encode()), ("source_endpoint", source.endpoint.encode())]
    if replay_id is not None:
        headers.append(("replay_id", replay_id.encode()))
    return headers


class InvalidEventError(ValueError):
    """An event the schema refuses; the record goes to the DLQ with this reason."""


def headers_size(headers: list[tuple[str, bytes]] | None) -> int:
    return sum(len(name) + len(value) for name, value in headers or ())


class _Envelope(msgspec.Struct, gc=False):
    """The event object, in the order of :func:`build_event`'s dict (one a record, dropped at
    once: not worth the garbage collector's attention)."""

    event_id: str
    event_type: str
    schema_version: int
    org_id: str
    correlation_id: Any
    report_time: Any
    source: msgspec.Raw
    replay_id: str | None
    cdr: Any
    unknown_fields: msgspec.Raw


_EMPTY_OBJECT: Final = msgspec.Raw(b"{}")

RowEncoder = Callable[[Any, "dict[str, Any] | None"], bytes]


class EventEncoder:
    """Frames events for one schema id, and knows how large a message may be."""

    def __init__(
        self,
        schema_id: int,
        schema: dict[str, Any] | None = None,
        *,
        max_message_bytes: int = DEFAULT_MESSAGE_MAX_BYTES,
    ) -> None:
        self._prefix = struct.pack(">bI", MAGIC_BYTE, schema_id)
        self._schema = schema
        self._validator: Any = None
        self.max_message_bytes = max_message_bytes

    def encode(self, event: dict[str, Any]) -> bytes:
        """An event dict, validated once with the compiled schema, framed."""
        validator = self._validator
        if validator is None:
            # Compiled on first use: only the few records the reference parser reads come here,
            # and a process that never sees one keeps jsonschema-rs (about 6 MB) unloaded.
            import jsonschema_rs  # noqa: PLC0415

            validator = self._validator = jsonschema_rs.validator_for(
                self._schema or event_schema()
            )
        if not validator.is_valid(event):
            first = next(iter(validator.iter_errors(event)))
            raise InvalidEventError(
                f"event fails the schema at {first.instance_path}: {first.message}"
            )
        return self._prefix + orjson.dumps(event)

    def room(self, headers: list[tuple[str, bytes]] | None) -> int:
        """How many bytes of key plus value a message with these headers may carry."""
        return self.max_message_bytes - MESSAGE_OVERHEAD - headers_size(headers)

    def row_encoder(self, *, org_id: str, source: Source, replay_id: str | None) -> RowEncoder:
        """``encode(row, unknown)``: the framed event of a fast row of
        :mod:`publisher.webex.page` and its unknown keys (None when it has none); the same bytes
        :meth:`encode` gives for the Cdr the reference parser reads from the same record."""
        from publisher.webex.page import cdr_values  # noqa: PLC0415 - page imports this module's peers

        encode = msgspec.json.Encoder().encode
        prefix = self._prefix
        src = msgspec.Raw(orjson.dumps(source.as_dict()))

        def encode_row(record: Any, unknown: dict[str, Any] | None = None) -> bytes:
            row = cdr_values(record)
            return prefix + encode(
                _Envelope(
                    row.report_id,
                    EVENT_TYPE,
                    SCHEMA_VERSION,
                    org_id,
                    row.correlation_id,
                    row.report_time,
                    src,
                    replay_id,
                    row,
                    # orjson, as the reference encodes the unknown values it decoded.
                    msgspec.Raw(orjson.dumps(unknown)) if unknown else _EMPTY_OBJECT,
                )
            )

        return encode_row

    def native_framer(self, *, org_id: str, source: Source, replay_id: str | None) -> Any:
        """``frame(row)``: the framed event of a compiled row of :mod:`publisher.webex.native`,
        the same bytes :meth:`row_encoder` gives for the record (a test compares them), and
        ``frame.frame_many(rows)`` for a list of them; None when the extension is not
        installed.

        The envelope around the per-record values is written by the same encoder, once per
        page, with a raw NUL byte where each value goes: msgspec escapes control characters in
        every string, so the NULs it leaves are the placeholders and nothing else."""
        if not native.AVAILABLE:
            return None
        hole: Any = msgspec.Raw(b"\x00")
        src = msgspec.Raw(orjson.dumps(source.as_dict()))
        envelope = msgspec.json.encode(
            _Envelope(
                hole, EVENT_TYPE, SCHEMA_VERSION, org_id, hole, hole, src, replay_id, hole, hole
            )
        )
        first, *rest = envelope.split(b"\x00")
        return native.Framer([self._prefix + first, *rest])


def unframe(value: bytes) -> tuple[int, Any]:
    """(schema id, decoded JSON) of a framed value; ValueError when it is not our wire format."""
    if len(value) < 5 or value[0] != MAGIC_BYTE:
        raise ValueError("not a Confluent wire-format value (magic byte 0 + schema id)")
    (schema_id,) = struct.unpack(">I", value[1:5])
    return schema_id, orjson.loads(value[5:])


@dataclass(frozen=True, slots=True)
class DlqEntry:
    """A record that could not become an event: its raw bytes are the value, the why in headers."""

    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


def dlq_entry(
    rejected: RejectedRecord,
    *,
    org_id: str,
    source: Source,
    max_message_bytes: int = DEFAULT_MESSAGE_MAX_BYTES,
) -> DlqEntry:
    """The DLQ message of a rejected record: its raw bytes, or, when the message would not fit
    ``max_message_bytes``, its first 64 KiB with ``dlq_truncated``, ``dlq_original_size`` and
    ``dlq_sha256`` (of all the bytes) beside the reason."""
    key = rejected.report_id.encode() if rejected.report_id else None
    if key is not None and len(key) > DLQ_KEY_MAX_BYTES:
        key = None  # a "Report ID" of megabytes is no key; the value keeps it
    reason = rejected.reason.encode()
    if len(reason) > DLQ_REASON_MAX_BYTES:
        reason = reason[: DLQ_REASON_MAX_BYTES - 3] + b"..."
    headers = [
        ("dlq_reason", reason),
        ("org_id", org_id.encode()),
        ("source_endpoint", source.endpoint.encode()),
        ("window_start", source.window_start.encode()),
        ("window_end", source.window_end.encode()),
    ]
    raw = rejected.raw
    room = max_message_bytes - MESSAGE_OVERHEAD - len(key or b"") - headers_size(headers)
    if len(raw) <= room:
        return DlqEntry(key=key, value=raw, headers=headers)
    extra = [
        ("dlq_truncated", b"true"),
        ("dlq_original_size", str(len(raw)).encode()),
        ("dlq_sha256", hashlib.sha256(raw).hexdigest().encode()),
    ]
    keep = max(0, min(DLQ_KEEP_BYTES, room - headers_size(extra)))
    return DlqEntry(key=key, value=raw[:keep], headers=headers + extra)
