"""The compiled parse-and-frame (``native/``, Rust), when it is installed. Pure.

``make venv`` builds it. Without it (no Rust toolchain where the package was installed) the
msgspec path of :mod:`publisher.webex.page` reads every page, with the same results: the two are
compared on generated and hostile pages in the tests. The daemon says which one it uses at start.

What crosses the boundary: the field table once (:class:`Spec`); per page the body, and back a
list with one compiled row (its ``cdr`` object already encoded, its mark already hashed) or None
per record, and the byte spans of the None ones, which Python reads as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from publisher.dedup import MarkTable
from publisher.webex.fields import FIELDS, KNOWN_ENUM_VALUES, NA_IS_A_VALUE, Kind

try:
    import cdr_publisher_native as _native
except ImportError:  # pragma: no cover - exercised where the extension is not built
    _native = None  # type: ignore[assignment]

AVAILABLE: Final = _native is not None
NAMES: Final = tuple(f.name for f in FIELDS)
_KIND_CODE: Final = {
    Kind.STRING: 0,
    Kind.OPEN_ENUM: 0,
    Kind.TIMESTAMP: 1,
    Kind.BOOLEAN: 2,
    Kind.INTEGER: 3,
}

if _native is not None:
    Row: type[Any] | None = _native.Row
    SPEC = _native.Spec(
        list(NAMES),
        [_KIND_CODE[f.kind] for f in FIELDS],
        [f.name in NA_IS_A_VALUE for f in FIELDS],
        [
            sorted(KNOWN_ENUM_VALUES[f.name]) if f.name in KNOWN_ENUM_VALUES else None
            for f in FIELDS
        ],
        [(key, i) for i, f in enumerate(FIELDS) for key in (f.raw_key, *f.spellings)],
        NAMES.index("report_id"),
        NAMES.index("correlation_id"),
        NAMES.index("report_time"),
        NAMES.index("release_time"),
    )
    parse = _native.parse
    Framer = _native.Framer
else:  # pragma: no cover
    Row = None


def learn(key: str, name: str) -> None:
    """Records with this exact key spelling are read natively as field ``name`` from now on
    (the msgspec path found the spelling to be that field's)."""
    if _native is not None:
        _teach(lambda: SPEC.learn(key, NAMES.index(name)))


def learn_unknown(key: str) -> None:
    """Records with this exact key are read natively, the key kept as an unknown key (the
    msgspec path found it to be no field's spelling)."""
    if _native is not None:
        _teach(lambda: SPEC.learn_unknown(key))


def _teach(change: Callable[[], bool]) -> None:
    try:
        change()
    except RuntimeError:
        # The table is being read by a parse in another thread (a finalizer run by the garbage
        # collector during it can let one in): the next record with the key teaches it again.
        return


def frame_page(
    framer: Any, rows: list[Any], committed: MarkTable
) -> tuple[list[int], list[bytes], list[bytes], int] | None:
    """``(marks, keys, values, largest key + value)`` of a part of a page that is compiled rows
    only, none of them a duplicate (within it, or of a mark in ``committed``): the page's
    events in three calls instead of a loop. None when some are duplicates, which the
    caller's record-by-record loop then drops one by one."""
    marks = _native.marks(rows)
    if len(set(marks)) != len(marks) or (
        len(committed) and _native.any_marked(committed.key_array(), marks)
    ):
        return None
    keys, values, largest = framer.frame_many(rows)
    return marks, keys, values, largest


def path_name() -> str:
    """Which parser reads pages, for the start-up log line."""
    return "native (compiled)" if AVAILABLE else "msgspec (native extension not installed)"
