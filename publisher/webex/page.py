"""Raw page bytes -> typed rows, at C speed, with the reference parser as the per-record fallback.

Pure. The result equals what :func:`publisher.webex.record.parse_record` makes of every item
(a test compares them), but the common record never becomes a dict:

1. msgspec decodes the page straight into structs of a type made for the page's key spellings
   (one struct type per spelling set, cached): every known key is a typed field (strings, ints,
   booleans, timestamps as strings), unknown keys are fields holding their raw JSON, and a key
   the type does not know makes the decode fail instead of being dropped.
2. The few fields that need converting (``"true"`` -> True, ``"12"`` -> 12) are fixed in place;
   timestamps are checked for the whole page with one regular expression over the joined column.
3. Absent values (``""``, ``"NA"``, ``"na"``) become None in one C-level step per record (a
   ``map`` of a dict lookup over the struct's values, building the :data:`CdrRow` that is encoded)
   when the record is encoded; dropped duplicates never pay for it.
4. A record the fast path cannot vouch for (another key set, an odd value, a bad timestamp) is
   handed to the reference parser alone, with its raw bytes: one odd record never slows its page.

A page that is not valid JSON or UTF-8 is salvaged record by record (:mod:`.salvage`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import repeat
from operator import attrgetter, itemgetter
from typing import Any, Final, overload

import msgspec
import orjson

from publisher.errors import WebexBadPageError
from publisher.webex import native
from publisher.webex.fields import (
    FIELDS,
    FIELDS_BY_KEY,
    KNOWN_ENUM_VALUES,
    NA_IS_A_VALUE,
    REPORT_ID,
    Kind,
    normalise_key,
)
from publisher.webex.record import (
    Cdr,
    ParsedPage,
    RejectedRecord,
    parse_page_reference,
    parse_record,
)
from publisher.webex.salvage import split_items

NAMES: Final = tuple(field.name for field in FIELDS)
_ABSENT: Final = frozenset({"", "NA", "na"})
_INT64_MAX: Final = 2**63 - 1
_KIND_TYPE: Final[dict[Kind, Any]] = {
    Kind.STRING: str | None,
    Kind.OPEN_ENUM: str | None,
    Kind.TIMESTAMP: str | None,
    Kind.BOOLEAN: bool | str | None,
    Kind.INTEGER: int | str | None,
}
_TIMESTAMPS: Final = tuple(f.name for f in FIELDS if f.kind is Kind.TIMESTAMP)
_INTEGERS: Final = tuple(f.name for f in FIELDS if f.kind is Kind.INTEGER)
_BOOLEANS: Final = tuple(f.name for f in FIELDS if f.kind is Kind.BOOLEAN)
_BOOLEAN_OF: Final = {"true": True, "false": False}
_ABSENT_TO_NONE: Final[dict[object, None]] = dict.fromkeys(_ABSENT)
_NONE: Final = type(None)
_INT_KINDS: Final = frozenset({int, _NONE})
_BOOL_KINDS: Final = frozenset({bool, _NONE})
_STR_KIND: Final = frozenset({str})
_UNKNOWN: Final = object()
_BOOLEAN_OR_ABSENT: Final[dict[str, bool | None]] = {**_BOOLEAN_OF, **dict.fromkeys(_ABSENT)}
_ENUMS: Final = tuple(
    (name, KNOWN_ENUM_VALUES[name]) for name in sorted(KNOWN_ENUM_VALUES) if name in NAMES
)
# The one field where "NA" is a value (the API documents it so): only "" means absent there.
(_NA_KEPT_AT,) = (NAMES.index(n) for n in NAMES if n in NA_IS_A_VALUE)
_NA_VALUES: Final = frozenset({"NA", "na"})

# The canonical form with its ranges; days 29-31 of short months and year 0 are left to
# fromisoformat (one call per suspect value), as the reference parser does.
_TS: Final = (
    rb"(?!0000)\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])"
    rb"T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d\.\d{3}Z"
).decode()
_COLUMN_OK: Final = re.compile(f"{_TS}(?:\n{_TS})*", re.ASCII).fullmatch
_SUSPECT_DAY: Final = re.compile(r"-(?:02-(?:29|30|31)|(?:04|06|09|11)-31)T", re.ASCII).search
_CANONICAL: Final = re.compile(_TS, re.ASCII).fullmatch


# One record's 87 known fields under their event names, in table order, typed, absent ones None:
# what is encoded as the event's ``cdr``. Built from the field table rather than written out (the
# table is the one source of truth). Not tracked by the garbage collector: it holds only strings,
# numbers and None, so it can be in no reference cycle, and a page of them would otherwise make
# the collector walk thousands of objects again and again.
CdrRow: Final = msgspec.defstruct(
    "CdrRow", [(name, Any, None) for name in NAMES], module=__name__, gc=False
)


class _PageOfRaw(msgspec.Struct):
    items: list[msgspec.Raw]


_RAW_PAGE: Final = msgspec.json.Decoder(_PageOfRaw)


@dataclass(frozen=True, slots=True)
class _RowType:
    """The struct type for one set of key spellings and the decoders built on it."""

    record: msgspec.json.Decoder[Any]
    page: msgspec.json.Decoder[Any]
    unknown: tuple[tuple[str, str], ...]
    """(struct attribute, raw key) of the unknown keys, in the record's key order."""


_row_types: dict[tuple[str, ...], _RowType | None] = {}
_MAX_ROW_TYPES: Final = 1_000
# The row types that read the last records: the last with no unknown keys, and the last of any
# kind. A page is tried whole with them before it is read record by record.
_recent: dict[str, _RowType] = {}


def _candidates() -> list[_RowType]:
    plain, last = _recent.get("plain"), _recent.get("any")
    return [t for t in (plain, last if last is not plain else None) if t is not None]


def _used(row_type: _RowType) -> None:
    if _recent.get("any") is not row_type:
        _recent["any"] = row_type
        if not row_type.unknown:
            _recent["plain"] = row_type


def _row_type(keys: tuple[str, ...]) -> _RowType | None:
    """The row type of a record with these keys, or None when the reference parser must read it
    (two spellings of one field, where which one wins depends on key order)."""
    if keys in _row_types:
        return _row_types[keys]
    members: list[tuple[str, Any, Any]] = []
    unknown: list[tuple[str, str]] = []
    claimed: set[str] = set()
    spellings: list[tuple[str, str]] = []
    found: _RowType | None = None
    for key in keys:
        field = FIELDS_BY_KEY.get(normalise_key(key))
        if field is None:
            attr = f"u{len(unknown)}"
            unknown.append((attr, key))
            members.append((attr, msgspec.Raw, msgspec.field(default=msgspec.UNSET, name=key)))
        elif field.name in claimed:
            break
        else:
            claimed.add(field.name)
            spellings.append((key, field.name))
            members.append(
                (field.name, _KIND_TYPE[field.kind], msgspec.field(default=None, name=key))
            )
    else:
        # Members in the records' own key order: msgspec then finds each key at the member it
        # looks at first (twice as fast as any other order). A known field the key set lacks
        # gets its documented spelling: a record carrying it so reads the same in the reference.
        members += [
            (f.name, _KIND_TYPE[f.kind], msgspec.field(default=None, name=f.raw_key))
            for f in FIELDS
            if f.name not in claimed
        ]
        position = {name: i for i, (name, _type, _default) in enumerate(members)}
        order = itemgetter(*(position[name] for name in NAMES))
        try:
            struct = msgspec.defstruct(
                "WebexRecord",
                members,
                forbid_unknown_fields=True,
                module=__name__,
                gc=False,  # strings, numbers and raw JSON only: never in a reference cycle
                namespace={"cdr_order": staticmethod(order)},
            )
        except ValueError:
            # msgspec cannot name a member after a key with quotes, backslashes or control
            # characters: such records are the reference parser's.
            struct = None
        if struct is not None:
            page = msgspec.defstruct("WebexPage", [("items", list[struct])], module=__name__)  # type: ignore[valid-type]
            found = _RowType(
                msgspec.json.Decoder(struct), msgspec.json.Decoder(page), tuple(unknown)
            )
            for key, name in spellings:
                # A spelling the field table did not list (case, spaces): the compiled reader
                # takes such records too from now on, and records with the same unknown keys.
                native.learn(key, name)
            for _attr, key in unknown:
                native.learn_unknown(key)
    if len(_row_types) < _MAX_ROW_TYPES:
        _row_types[keys] = found
    return found


# --- the result ---------------------------------------------------------------------------------


class Rows(Sequence[Cdr]):
    """A page's readable records in page order: fast rows (decoded structs, checked and
    converted, absent values still as sent) and reference :class:`Cdr` objects mixed. Read as a
    sequence of Cdr, it builds each one on demand (for ``fetch`` and tools); the publisher
    encodes :attr:`items` directly."""

    __slots__ = ("items", "unknown")

    def __init__(self, items: list[Any], unknown: dict[int, dict[str, Any]]) -> None:
        self.items = items
        self.unknown = unknown
        """index in ``items`` -> the unknown keys of that fast row, decoded as orjson would."""

    def __len__(self) -> int:
        return len(self.items)

    @overload
    def __getitem__(self, index: int) -> Cdr: ...
    @overload
    def __getitem__(self, index: slice) -> Rows: ...
    def __getitem__(self, index: int | slice) -> Cdr | Rows:
        if isinstance(index, slice):
            # A part of the page, still as rows (a page cut into several transactions).
            indices = range(*index.indices(len(self.items)))
            unknown = {
                new: self.unknown[old] for new, old in enumerate(indices) if old in self.unknown
            }
            return Rows([self.items[i] for i in indices], unknown)
        item = self.items[index]
        if isinstance(item, Cdr):
            return item
        return row_to_cdr(item, self.unknown.get(index % len(self.items), {}))

    def __iter__(self) -> Iterator[Cdr]:
        for index in range(len(self.items)):
            yield self[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


def cdr_values(row: Any) -> Any:
    """A fast row's 87 known values in table order as a :data:`CdrRow`, absent ones None.

    Done when the row is encoded, right before its strings are read again, rather than for the
    whole page at parse time: the one C-level ``map`` hashes every value, and doing it next to the
    encoding finds them still in the CPU's cache."""
    values = row.cdr_order(msgspec.structs.astuple(row))
    out = CdrRow(*map(_ABSENT_TO_NONE.get, values, values))
    kept = values[_NA_KEPT_AT]
    if kept in _NA_VALUES:
        setattr(out, NAMES[_NA_KEPT_AT], kept)
    return out


def row_to_cdr(row: Any, unknown: dict[str, Any]) -> Cdr:
    """The reference parser's Cdr of a fast row (a msgspec struct or a compiled row)."""
    fields: dict[str, str | int | bool]
    if row.__class__ is native.Row:
        fields = {name: v for name, v in orjson.loads(row.cdr).items() if v is not None}
        unknown = orjson.loads(row.unknown) if row.unknown else {}
    else:
        fields = {
            name: value
            for name, value in zip(NAMES, msgspec.structs.astuple(cdr_values(row)), strict=True)
            if value is not None
        }
    new_enums = tuple(
        (name, str(fields[name]))
        for name, known in _ENUMS
        if name in fields and fields[name] not in known
    )
    correlation_id = fields.get("correlation_id")
    return Cdr(
        report_id=str(fields[REPORT_ID]),
        correlation_id=correlation_id if isinstance(correlation_id, str) else None,
        fields=fields,
        unknown=dict(unknown),
        new_enum_values=new_enums,
    )


# --- parsing ------------------------------------------------------------------------------------


def parse_page_fast(body: bytes) -> ParsedPage:
    """Every record of a Webex page ``{"items": [...]}``: readable ones typed, bad ones rejected
    with their raw bytes. A page that is not valid JSON or UTF-8 is salvaged item by item; only
    a body with no items array to be found raises :class:`WebexBadPageError`.

    The compiled reader (:mod:`.native`) goes first; the records it does not vouch for, and
    every page it refuses whole, are read by the msgspec path below."""
    if native.AVAILABLE:
        found = native.parse(body, native.SPEC)
        if found is not None:
            items, fallbacks = found
            if not fallbacks:
                return ParsedPage(records=Rows(items, {}), rejected=[])
            if 2 * len(fallbacks) <= len(items):
                return _with_fallbacks(body, items, fallbacks)
            # Mostly records the compiled reader leaves (a new way of writing a value, say):
            # the msgspec path's whole-page decode reads them faster than one by one.
    return parse_page_msgspec(body)


def _with_fallbacks(body: bytes, items: list[Any], fallbacks: list[tuple[int, int]]) -> ParsedPage:
    """The compiled reader's rows with the records it left to Python, each read alone from its
    bytes (as a page that is not JSON is salvaged), in page order."""
    produced: list[bool] = []
    page = _per_record([body[a:b] for a, b in fallbacks], produced)
    assert isinstance(page.records, Rows)  # noqa: S101 - _per_record always makes Rows
    read, extras = iter(page.records.items), page.records.unknown
    out: list[Any] = []
    unknown: dict[int, dict[str, Any]] = {}
    made = 0
    outcome = iter(produced)
    for item in items:
        if item is not None:
            out.append(item)
        elif next(outcome):
            if made in extras:
                unknown[len(out)] = extras[made]
            out.append(next(read))
            made += 1
    return ParsedPage(records=Rows(out, unknown), rejected=page.rejected)


def parse_page_msgspec(body: bytes) -> ParsedPage:
    """:func:`parse_page_fast` without the compiled reader."""
    for row_type in _candidates():
        if len(row_type.unknown) > 1:
            continue  # key order only matters for unknown keys: with two, each record is checked
        try:
            rows: list[Any] = row_type.page.decode(body).items
        except (msgspec.ValidationError, msgspec.DecodeError):
            continue
        return _finish(rows, [row_type] * len(rows), None, body)
    try:
        raws: list[msgspec.Raw] | list[bytes] = _RAW_PAGE.decode(body).items
        junk: list[RejectedRecord] = []
    except msgspec.ValidationError:
        # JSON, but not a page of items: the reference parser says why (or reads it after all).
        return parse_page_reference(body)
    except msgspec.DecodeError as exc:
        spans, bad = split_items(body)
        if spans is None:
            raise WebexBadPageError(f"page is not JSON: {exc}", body=body) from None
        raws = [body[a:b] for a, b in spans]
        junk = [RejectedRecord(body[a:b], f"page is not JSON here: {exc}", None) for a, b in bad]
    page = _per_record(raws)
    return ParsedPage(records=page.records, rejected=[*page.rejected, *junk])


def _per_record(
    raws: Sequence[msgspec.Raw | bytes], produced: list[bool] | None = None
) -> ParsedPage:
    """Each item decoded on its own: the row types of the records before it are tried first.
    ``produced`` gets, per item, whether it became a record (or was rejected)."""
    rows: list[Any] = []
    types: list[_RowType | None] = []
    fallback: list[Cdr | RejectedRecord | None] = []
    for raw in raws:
        row = row_type = None
        for row_type in _candidates():
            row = _decode_one(row_type, raw)
            if row is not None:
                break
        if row is None:
            try:
                obj = orjson.loads(bytes(raw))
            except orjson.JSONDecodeError as exc:
                rows.append(None)
                types.append(None)
                fallback.append(_unreadable(bytes(raw), exc))
                continue
            if isinstance(obj, dict) and all(isinstance(k, str) for k in obj):
                row_type = _row_type(tuple(obj))
                row = _decode_one(row_type, raw)
            if row is None:
                rows.append(None)
                types.append(None)
                fallback.append(parse_record(obj, bytes(raw)))
                continue
        if (
            row_type is not None
            and len(row_type.unknown) > 1
            and not _unknown_in_order(row_type, row, raw)
        ):
            rows.append(None)
            types.append(None)
            fallback.append(parse_record(orjson.loads(bytes(raw)), bytes(raw)))
            continue
        if row_type is not None:
            _used(row_type)
        rows.append(row)
        types.append(row_type)
        fallback.append(None)
    return _finish(rows, types, fallback, raws, produced)


def _unreadable(raw: bytes, exc: Exception) -> RejectedRecord:
    """A record that is not valid JSON or UTF-8: kept as received. Its Report ID is read with
    the bad bytes replaced, so that the DLQ entry has its key and a window fetched again does
    not send it twice; the record itself is never published from altered bytes."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        reason = f"record is not valid UTF-8 (byte {bad.start}): kept as received"
        try:
            readable = parse_record(orjson.loads(raw.decode("utf-8", "replace")))
        except orjson.JSONDecodeError:
            return RejectedRecord(raw, reason, None)
        return RejectedRecord(raw, reason, readable.report_id)
    return RejectedRecord(raw, f"record is not JSON: {exc}", None)


def _decode_one(row_type: _RowType | None, raw: msgspec.Raw | bytes) -> Any:
    if row_type is None:
        return None
    try:
        return row_type.record.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None


def _unknown_in_order(row_type: _RowType, row: Any, raw: msgspec.Raw | bytes) -> bool:
    """Whether this record's unknown keys come in the row type's order (the reference keeps a
    record's own order). Provable only from unescaped text where each key occurs once."""
    present = [key for attr, key in row_type.unknown if getattr(row, attr) is not msgspec.UNSET]
    if len(present) < 2:
        return True
    data = bytes(raw)
    if b"\\" in data:
        return False
    last = -1
    for key in present:
        needle = orjson.dumps(key)
        if data.count(needle) != 1:
            return False
        at = data.find(needle)
        if at < last:
            return False
        last = at
    return True


def _finish(
    decoded: list[Any],
    types: Sequence[_RowType | None],
    fallback: list[Cdr | RejectedRecord | None] | None,
    source: bytes | Sequence[msgspec.Raw | bytes],
    produced: list[bool] | None = None,
) -> ParsedPage:
    """Check and convert the decoded records in bulk, and hand each one that fails to the
    reference parser with its raw bytes. ``source`` is the page body (whole-page decode) or the
    page's items."""
    count = len(decoded)
    if fallback is None:
        fallback = [None] * count
    live = [i for i in range(count) if decoded[i] is not None]
    rows = [decoded[i] for i in live] if len(live) != count else decoded
    odd: set[int] = set()
    for name in _TIMESTAMPS:
        _check_timestamps(name, rows, live, odd)
    for name in _INTEGERS:
        _convert_integers(name, rows, live, odd)
    for name in _BOOLEANS:
        _convert_booleans(name, rows, live, odd)
    report_ids = list(map(attrgetter(REPORT_ID), rows))
    if (
        None in report_ids
        or not _ABSENT.isdisjoint(report_ids)
        or not all(map(str.strip, report_ids))
    ):
        odd.update(
            i
            for i, rid in zip(live, report_ids, strict=True)
            if rid is None or rid in _ABSENT or not rid.strip()
        )
    raws: Sequence[msgspec.Raw | bytes] | None = None if isinstance(source, bytes) else source
    items: list[Any] = []
    unknown: dict[int, dict[str, Any]] = {}
    rejected: list[RejectedRecord] = []
    plain = not odd and all(t is not None and not t.unknown for t in types)
    if plain and not any(fallback):
        if produced is not None:
            produced += [True] * count
        return ParsedPage(records=Rows(decoded, unknown), rejected=rejected)
    if produced is None:
        produced = []
    for i in range(count):
        record, done, row_type = decoded[i], fallback[i], types[i]
        if record is not None and done is None and i not in odd and row_type is not None:
            if not row_type.unknown:
                items.append(record)
                produced.append(True)
                continue
            try:
                extra = _unknown_values(record, row_type)
            except orjson.JSONDecodeError:
                pass  # an unknown value that is not JSON or UTF-8: the reference decides
            else:
                if extra:
                    unknown[len(items)] = extra
                items.append(record)
                produced.append(True)
                continue
        if done is None:
            if raws is None:
                raws = _RAW_PAGE.decode(source).items  # type: ignore[arg-type]
            raw = bytes(raws[i])
            done = parse_record(orjson.loads(raw), raw)
        produced.append(isinstance(done, Cdr))
        if isinstance(done, Cdr):
            items.append(done)
        else:
            rejected.append(done)
    return ParsedPage(records=Rows(items, unknown), rejected=rejected)


def _convert_integers(name: str, rows: list[Any], live: list[int], odd: set[int]) -> None:
    """JSON integers in range stay; digit strings become integers; anything else is odd."""
    column = list(map(attrgetter(name), rows))
    kinds = set(map(type, column))
    if kinds <= _INT_KINDS:
        numbers = [v for v in column if v is not None] if _NONE in kinds else column
        if not numbers or (min(numbers) >= 0 and max(numbers) <= _INT64_MAX):
            return
    if kinds == _STR_KIND:
        digits = "".join(column)
        if digits.isascii() and digits.isdigit() and all(column):
            # A column of numeric strings ("Ring duration" arrives so): converted and stored
            # in C-level loops, range checked once.
            numbers = list(map(int, column))
            if max(numbers) <= _INT64_MAX:
                any(map(setattr, rows, repeat(name), numbers))
                return
    for row, i, value in zip(rows, live, column, strict=True):
        if value is None:
            continue
        if value.__class__ is int:
            if not 0 <= value <= _INT64_MAX:
                odd.add(i)
        elif value in _ABSENT:
            pass  # mapped to None with the other fields when the row is encoded
        elif value.isascii() and value.isdigit() and (number := int(value)) <= _INT64_MAX:
            setattr(row, name, number)
        else:
            odd.add(i)


def _convert_booleans(name: str, rows: list[Any], live: list[int], odd: set[int]) -> None:
    """JSON booleans stay; "true"/"false" become booleans; other spellings are odd."""
    column = list(map(attrgetter(name), rows))
    kinds = set(map(type, column))
    if kinds <= _BOOL_KINDS:
        return
    if kinds == _STR_KIND:
        found = list(map(_BOOLEAN_OR_ABSENT.get, column, repeat(_UNKNOWN)))
        if _UNKNOWN not in found:
            any(map(setattr, rows, repeat(name), found))  # stored in a C-level loop
            return
    for row, i, value in zip(rows, live, column, strict=True):
        if value.__class__ is str and value not in _ABSENT:
            found_one = _BOOLEAN_OF.get(value)
            if found_one is None:
                odd.add(i)  # " TRUE " and the like: the reference parser reads them
            else:
                setattr(row, name, found_one)


def _unknown_values(row: Any, row_type: _RowType) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for attr, key in row_type.unknown:
        raw = getattr(row, attr)
        if raw is not msgspec.UNSET:
            # orjson, as the reference parser decodes: big integers become floats there.
            out[key] = orjson.loads(bytes(raw))
    return out


def _check_timestamps(name: str, rows: list[Any], live: list[int], odd: set[int]) -> None:
    """One expression for the whole column; only when it fails is each value looked at."""
    column = list(map(attrgetter(name), rows))
    present = list(filter(None, column))
    if not present:
        return
    text = "\n".join(present)  # "NA" fails the expression and is then seen to be absent
    if len(text) == 25 * len(present) - 1 and _COLUMN_OK(text) and not _SUSPECT_DAY(text):
        return
    for i, value in zip(live, column, strict=True):
        if value is None or value in _ABSENT:
            continue
        if _CANONICAL(value) is None:
            odd.add(i)
            continue
        try:
            datetime.fromisoformat(value)
        except ValueError:
            odd.add(i)
