"""One raw Webex CDR (a JSON object) -> a typed :class:`Cdr`, or a :class:`RejectedRecord`. Pure.

Keys are matched ignoring case and runs of white space (:mod:`publisher.webex.fields`); values
are read by the field's kind. ``""``, JSON null and ``"NA"``/``"na"`` mean absent (except where
``"NA"`` is a real value). Unknown keys are data: they are kept as they came. A record is refused
only when it is not an object, has no Report ID, or carries a value that cannot be read; the
reason names the field. :func:`parse_record` never raises.

Speed matters (the daemon must publish 25,000 records/s on one core, parse included), so the
work that depends only on a record's key sequence is done once per distinct sequence and cached:
Webex sends the same keys in the same order in every record of a page. A canonical timestamp is
checked with one regex and one C-level ``fromisoformat`` and kept as it came.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import compress
from operator import itemgetter, not_
from typing import Any, Final

import orjson

from publisher.errors import WebexBadPageError
from publisher.webex.fields import (
    FIELDS_BY_KEY,
    FIELDS_BY_NAME,
    KNOWN_ENUM_VALUES,
    NA_IS_A_VALUE,
    REPORT_ID,
    Kind,
    normalise_key,
)

Value = str | int | bool

# --- timestamps ---------------------------------------------------------------------------------

_CANONICAL: Final = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", re.ASCII).fullmatch
_ANY_TIMESTAMP: Final = re.compile(
    r"\s*(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:[.,](\d+))?"
    r"\s*(?:([Zz])|([+-])(\d\d):?(\d\d))?\s*",
    re.ASCII,
).fullmatch


def format_timestamp(dt: datetime) -> str:
    """The canonical UTC form ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (sub-millisecond digits truncated)."""
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"naive datetime {dt.isoformat()}: a timestamp needs a time zone")
    return dt.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def parse_timestamp(value: str) -> datetime:
    """A tz-aware UTC datetime from any timestamp form Webex sends; ValueError when unreadable.

    Accepted: ``2026-09-24T07:49:10.939Z`` with any fraction length or none, with ``Z``, an offset
    (``+00:00``, ``+0530``) or no zone, and the documented ``2023-10-12 21:22:32.621`` (space, no
    zone). No zone means UTC, as the API documents.
    """
    match = _ANY_TIMESTAMP(value)
    if match is None:
        raise ValueError(f"{_show(value)} is not a timestamp")
    year, month, day, hour, minute, second, fraction, _z, sign, off_h, off_m = match.groups()
    micro = int(fraction[:6].ljust(6, "0")) if fraction else 0
    try:
        dt = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micro, UTC
        )
        if sign is not None:
            offset = timedelta(hours=int(off_h), minutes=int(off_m))
            # The wall time is ahead of UTC by a positive offset: subtract it to get UTC.
            dt = dt - offset if sign == "+" else dt + offset
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"{_show(value)} is not a valid timestamp ({exc})") from None
    return dt


def _timestamp_value(value: object) -> str:
    if not isinstance(value, str):
        raise _BadValueError(f"{_show(value)} is not a timestamp string")
    if _CANONICAL(value) is not None:
        try:
            datetime.fromisoformat(value)  # range check only (month 13, Feb 30): kept as it came
        except ValueError:
            raise _BadValueError(f"{_show(value)} is not a valid timestamp") from None
        return value
    try:
        return format_timestamp(parse_timestamp(value))
    except (ValueError, OverflowError) as exc:
        raise _BadValueError(str(exc)) from None


# --- the other kinds ----------------------------------------------------------------------------

_INT64_MAX: Final = 2**63 - 1
_NUMERIC: Final = re.compile(r"\s*\+?(\d+)(?:\.0*)?\s*", re.ASCII).fullmatch
_BOOLEANS: Final = {"true": True, "false": False}


class _BadValueError(Exception):
    """A value its field cannot hold; the message says why (the caller adds the field)."""


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _integer_value(value: object) -> int:
    # Durations in seconds: whole, not negative, and small enough for a 64-bit consumer.
    if isinstance(value, bool):
        raise _BadValueError(f"{_show(value)} is not a whole number")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.isascii() and value.isdigit():
        number = int(value)
    elif isinstance(value, str):
        match = _NUMERIC(value)
        if match is None:
            raise _BadValueError(f"{_show(value)} is not a whole number")
        number = int(match.group(1))
    elif isinstance(value, float) and value.is_integer():  # NaN and inf are not integers
        number = int(value)
    else:
        raise _BadValueError(f"{_show(value)} is not a whole number")
    if number < 0 or number > _INT64_MAX:
        raise _BadValueError(f"{_show(value)} is out of range (0..2^63-1)")
    return number


def _boolean_value(value: object) -> bool:
    if value is True or value is False:
        return value
    if isinstance(value, str):
        found = _BOOLEANS.get(value)
        if found is None:
            found = _BOOLEANS.get(value.strip().lower())
        if found is not None:
            return found
    raise _BadValueError(f"{_show(value)} is not true or false")


def _string_value(value: object) -> str:
    # A scalar where a string was expected is kept as its text rather than refused.
    if isinstance(value, str):  # a str subclass from a Python caller
        return str(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int | float):
        return str(value)
    raise _BadValueError(f"{_show(value)} is not a string")


def _report_id_value(value: object) -> str:
    raise _BadValueError(f"{_show(value)} is not a string")


# --- the per-key-set plan -----------------------------------------------------------------------

_ABSENT: Final = frozenset({"", "NA", "na"})
_ABSENT_NA_IS_VALUE: Final = frozenset({""})

_KIND_CONVERTER: Final[dict[Kind, Callable[[object], Value]]] = {
    Kind.STRING: _string_value,
    Kind.OPEN_ENUM: _string_value,
    Kind.TIMESTAMP: _timestamp_value,
    Kind.BOOLEAN: _boolean_value,
    Kind.INTEGER: _integer_value,
}

_Getter = Callable[[dict[str, object]], tuple[Any, ...]]


def _getter(keys: tuple[str, ...]) -> _Getter:
    """Values of ``keys`` from a dict, always as a tuple; KeyError when one is missing."""
    if len(keys) == 1:
        (key,) = keys
        return lambda obj: (obj[key],)
    if not keys:
        return lambda _obj: ()
    getter: _Getter = itemgetter(*keys)
    return getter


# One field read one by one: (raw key, field name, absent spellings, converter, kind code).
_Slot = tuple[str, str, frozenset[str], Callable[[object], Value], int]
# Kind codes: the loop in _read_slots compares small ints rather than enum members.
_STRING: Final = 0
_TIMESTAMP: Final = 1
_INTEGER: Final = 2
_OTHER: Final = 3
_KIND_CODE: Final = {
    Kind.STRING: _STRING,
    Kind.OPEN_ENUM: _STRING,
    Kind.TIMESTAMP: _TIMESTAMP,
    Kind.INTEGER: _INTEGER,
    Kind.BOOLEAN: _OTHER,
}


@dataclass(frozen=True, slots=True)
class _Plan:
    """How to read every record with one key set: which key fills which field, and how.

    Plain string fields (most of a CDR) are read together at C speed; timestamps, booleans,
    integers and fields with their own idea of "absent" go one by one.
    """

    size: int
    has_duplicates: bool
    plain: tuple[_Slot, ...]
    plain_names: tuple[str, ...]
    plain_get: _Getter
    other: tuple[_Slot, ...]
    other_get: _Getter
    enums: tuple[tuple[str, frozenset[str]], ...]
    unknown_keys: tuple[str, ...]
    unknown_get: _Getter


_slot_by_key: dict[str, _Slot | None] = {}
_plan_by_keys: dict[tuple[str, ...], _Plan] = {}
# The plan last used for records with this many keys: checking that it fits a record costs
# nothing extra (its getters raise KeyError when a key is missing), unlike hashing all keys.
_plan_by_size: dict[int, _Plan] = {}
# Bounds so that a hostile or broken source cannot grow the caches without limit.
_MAX_KEYS: Final = 10_000
_MAX_PLANS: Final = 1_000


def _slot_for(raw_key: str) -> _Slot | None:
    if raw_key in _slot_by_key:
        return _slot_by_key[raw_key]
    field = FIELDS_BY_KEY.get(normalise_key(raw_key))
    slot: _Slot | None = None
    if field is not None:
        name = field.name
        slot = (
            raw_key,
            name,
            _ABSENT_NA_IS_VALUE if name in NA_IS_A_VALUE else _ABSENT,
            # The Report ID is taken only as a string; anything else is refused.
            _report_id_value if name == REPORT_ID else _KIND_CONVERTER[field.kind],
            _KIND_CODE[field.kind],
        )
    if len(_slot_by_key) < _MAX_KEYS:
        _slot_by_key[raw_key] = slot
    return slot


def _plan_for(keys: tuple[str, ...]) -> _Plan:
    plan = _plan_by_keys.get(keys)
    if plan is not None:
        return plan
    plain: list[_Slot] = []
    other: list[_Slot] = []
    unknown: list[str] = []
    claimed: set[str] = set()
    has_duplicates = False
    for raw_key in keys:
        slot = _slot_for(raw_key)
        if slot is None:
            unknown.append(raw_key)
            continue
        if slot[1] in claimed:
            # A second spelling of a field already claimed: kept as data, never dropped.
            has_duplicates = True
            unknown.append(raw_key)
            continue
        name = slot[1]
        claimed.add(name)
        if slot[4] == _STRING and slot[2] is _ABSENT:
            plain.append(slot)
        else:
            other.append(slot)
    plan = _Plan(
        size=len(keys),
        has_duplicates=has_duplicates,
        plain=tuple(plain),
        plain_names=tuple(slot[1] for slot in plain),
        plain_get=_getter(tuple(slot[0] for slot in plain)),
        other=tuple(other),
        other_get=_getter(tuple(slot[0] for slot in other)),
        enums=tuple((n, KNOWN_ENUM_VALUES[n]) for n in sorted(claimed) if n in KNOWN_ENUM_VALUES),
        unknown_keys=tuple(unknown),
        unknown_get=_getter(tuple(unknown)),
    )
    if len(_plan_by_keys) < _MAX_PLANS:
        _plan_by_keys[keys] = plan
    return plan


# --- records ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cdr:
    """A readable CDR: typed known fields (absent ones omitted) and unknown keys as they came."""

    report_id: str
    correlation_id: str | None
    fields: dict[str, Value]
    unknown: dict[str, object]
    new_enum_values: tuple[tuple[str, str], ...]

    def timestamp(self, name: str) -> datetime | None:
        """The tz-aware UTC datetime of timestamp field ``name``; None when absent."""
        field = FIELDS_BY_NAME.get(name)
        if field is None or field.kind is not Kind.TIMESTAMP:
            raise ValueError(f"{name!r} is not a timestamp field")
        value = self.fields.get(name)
        if value is None:
            return None
        return datetime.fromisoformat(str(value))


@dataclass(frozen=True, slots=True)
class RejectedRecord:
    """A record that cannot become a CDR: its bytes as received, why, and its Report ID if read."""

    raw: bytes
    reason: str
    report_id: str | None


@dataclass(frozen=True, slots=True)
class ParsedPage:
    """A page's readable records in page order, and the rejected ones in page order."""

    records: Sequence[Cdr]
    rejected: list[RejectedRecord]


def _raw_bytes(obj: object) -> bytes:
    try:
        return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)
    except (TypeError, ValueError, RecursionError):
        # Only Python callers can hand over what JSON cannot hold; keep a readable trace of it.
        try:
            return repr(obj).encode("utf-8", "backslashreplace")
        except (ValueError, RecursionError):
            return b"<unrepresentable record>"


def _reject(obj: object, raw: bytes | None, reason: str, report_id: str | None) -> RejectedRecord:
    if raw is None:
        raw = _raw_bytes(obj)
    return RejectedRecord(raw=raw, reason=reason, report_id=report_id)


def parse_record(obj: object, raw: bytes | None = None) -> Cdr | RejectedRecord:
    """A typed :class:`Cdr` from one decoded record, or a :class:`RejectedRecord`; never raises.

    ``raw`` is the record's bytes as received, when the caller has them (a JSON line); otherwise
    the rejected record carries ``orjson.dumps(obj)``.
    """
    try:
        return _parse(obj, raw)
    except Exception as exc:  # noqa: BLE001 - a parser bug must send one record to the DLQ, not stop the daemon
        return _reject(obj, raw, f"parser error: {type(exc).__name__}: {exc}", None)


def _parse(obj: object, raw: bytes | None) -> Cdr | RejectedRecord:
    if not isinstance(obj, dict):
        return _reject(obj, raw, f"not a JSON object (got {_json_type(obj)})", None)
    if obj.__class__ is not dict:
        # A subclass may answer a missing key (defaultdict) instead of raising KeyError.
        obj = dict(obj)
    plan = _plan_by_size.get(len(obj))
    plain_values: tuple[Any, ...] = ()
    if plan is not None:
        try:
            # All getters succeeding on a record of the plan's size means the key sets are equal.
            plain_values = plan.plain_get(obj)
            other_values = plan.other_get(obj)
            unknown_values = plan.unknown_get(obj)
        except KeyError:
            plan = None
    if plan is None:
        keys = tuple(obj)
        for key in keys:
            if not isinstance(key, str):
                return _reject(obj, raw, f"key {_show(key)} is not a string", None)
        plan = _plan_for(keys)
        if not plan.has_duplicates and len(plan.unknown_keys) < 2:
            # With two spellings of one field, which one fills it depends on key order, and
            # two unknown keys are kept in the record's own order: such plans are only ever
            # found by the ordered key tuple.
            _plan_by_size[plan.size] = plan
        plain_values = plan.plain_get(obj)
        other_values = plan.other_get(obj)
        unknown_values = plan.unknown_get(obj)

    problems: list[str] | None = None
    try:
        # The common case at C speed: join() refuses any value that is not a string, and
        # __contains__ then cannot meet an unhashable one.
        "".join(plain_values)
        fields: dict[str, Value] = dict(
            compress(
                zip(plan.plain_names, plain_values, strict=True),
                map(not_, map(_ABSENT.__contains__, plain_values)),
            )
        )
    except TypeError:
        fields = {}
        problems = _read_slots(plan.plain, plain_values, fields, problems)
    problems = _read_slots(plan.other, other_values, fields, problems)

    report_id = fields.get(REPORT_ID)
    if not isinstance(report_id, str) or not report_id.strip():
        report_id = None
    if problems is not None:
        return _reject(obj, raw, "; ".join(problems), report_id)
    if report_id is None:
        return _reject(obj, raw, "report_id ('Report ID'): missing or empty", None)
    new_enums: list[tuple[str, str]] | None = None
    for name, known in plan.enums:
        value = fields.get(name)
        if value is not None and value not in known:
            if new_enums is None:
                new_enums = []
            new_enums.append((name, str(value)))
    correlation_id = fields.get("correlation_id")
    return Cdr(
        report_id=report_id,
        correlation_id=correlation_id if isinstance(correlation_id, str) else None,
        fields=fields,
        unknown=dict(zip(plan.unknown_keys, unknown_values, strict=True)) if unknown_values else {},
        new_enum_values=tuple(new_enums) if new_enums is not None else (),
    )


def _read_slots(
    slots: tuple[_Slot, ...],
    values: tuple[Any, ...],
    fields: dict[str, Value],
    problems: list[str] | None,
) -> list[str] | None:
    """Read values one by one into ``fields``; returns ``problems`` with any new ones added."""
    for (key, name, absent, convert, code), value in zip(slots, values, strict=True):
        cls = value.__class__
        if cls is str:
            if value in absent:
                continue
            if code == _TIMESTAMP:
                # A canonical timestamp is kept as it came once fromisoformat (C) accepts its
                # ranges (month 13, Feb 30); anything else goes to the converter.
                if _CANONICAL(value) is not None:
                    try:
                        datetime.fromisoformat(value)
                    except ValueError:
                        pass
                    else:
                        fields[name] = value
                        continue
            elif code == _STRING:
                fields[name] = value
                continue
        elif cls is int:
            if code == _INTEGER and 0 <= value <= _INT64_MAX:
                fields[name] = value
                continue
        elif value is None:
            continue
        try:
            fields[name] = convert(value)
        except _BadValueError as exc:
            if problems is None:
                problems = []
            problems.append(f"{name} ({key!r}): {exc}")
    return problems


def _json_type(obj: object) -> str:
    if obj is None:
        return "null"
    if isinstance(obj, bool):
        return "a boolean"
    if isinstance(obj, int | float):
        return "a number"
    if isinstance(obj, str):
        return "a string"
    if isinstance(obj, list | tuple):
        return "an array"
    return type(obj).__name__


def parse_page(body: bytes) -> ParsedPage:
    """Every record of a Webex page ``{"items": [...]}``; bad items are rejected, the rest parsed.

    The fast path (:mod:`publisher.webex.page`), which gives what :func:`parse_page_reference`
    gives for every readable page and salvages the records of a page that is not valid JSON or
    UTF-8. Raises :class:`WebexBadPageError` when the body holds no ``items`` array at all.
    """
    from publisher.webex.page import parse_page_fast  # noqa: PLC0415 - it builds on this module

    return parse_page_fast(body)


def parse_page_reference(body: bytes) -> ParsedPage:
    """The reference page parser: orjson, then :func:`parse_record` for each item. The fast
    path's oracle in tests and its fallback for pages that are JSON but not a page of items.

    Raises :class:`WebexBadPageError` when the body is not JSON or has no ``items`` list.
    """
    try:
        page = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise WebexBadPageError(f"page is not JSON: {exc}", body=body) from None
    items = page.get("items") if isinstance(page, dict) else None
    if not isinstance(items, list):
        raise WebexBadPageError("page has no 'items' list", body=body)
    records: list[Cdr] = []
    rejected: list[RejectedRecord] = []
    add_record = records.append
    add_rejected = rejected.append
    for item in items:
        result = parse_record(item)
        if isinstance(result, Cdr):
            add_record(result)
        else:
            add_rejected(result)
    return ParsedPage(records=records, rejected=rejected)
