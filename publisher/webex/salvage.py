"""Find the records of a page that is not valid JSON: a small, tolerant scanner. Pure.

A page can be broken in one place (a byte that is not UTF-8, a record cut short, stray bytes)
and be fine everywhere else. The scanner reads the page's bytes as JSON tokens without decoding
them: strings (skipped whole, escapes honoured), braces and brackets. It finds the ``items``
array of the top-level object and cuts it at the boundaries of its top-level values, so each
record can be decoded (or refused) on its own and only the bad one goes to the DLQ.
"""

from __future__ import annotations

import re
from typing import Final

# A string (possessive, so a 5 MB string costs one pass; an unterminated one runs to the end)
# or one structural byte. Everything else (numbers, literals, commas, junk) is skipped.
_TOKEN: Final = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"?|[{}\[\]]', re.DOTALL)
_ARRAY_AFTER_KEY: Final = re.compile(rb"\s*:\s*\[")
_ITEMS_KEY: Final = b'"items"'
_OPEN: Final = frozenset(b"{[")
_CLOSE: Final = frozenset(b"}]")
_BRACE: Final = ord("{")
_BRACKET_CLOSE: Final = ord("]")
_BLANK: Final = b" \t\r\n,"

Span = tuple[int, int]


def split_items(body: bytes) -> tuple[list[Span] | None, list[Span]]:
    """(spans of the objects in the page's ``items`` array, spans of anything else in it).

    None instead of the object spans when no ``items`` array can be found at all. A record cut
    off by the end of the body is returned as an object span up to the end (it will fail to
    decode and be kept whole in the DLQ).
    """
    start = _items_start(body)
    if start is None:
        return None, []
    objects: list[Span] = []
    junk: list[Span] = []
    depth = 0
    item_start = start
    item_is_object = False
    gap_start = start
    for match in _TOKEN.finditer(body, start):
        at = match.start()
        first = body[at]
        if depth == 0:
            if first in _OPEN:
                _add_junk(body, gap_start, at, junk)
                item_start, item_is_object, depth = at, first == _BRACE, 1
            elif first == _BRACKET_CLOSE:
                _add_junk(body, gap_start, at, junk)
                return objects, junk
            # A string or a stray closing brace between items is junk, kept with the gap.
            continue
        if first in _OPEN:
            depth += 1
        elif first in _CLOSE:
            depth -= 1
            if depth == 0:
                (objects if item_is_object else junk).append((item_start, match.end()))
                gap_start = match.end()
    if depth > 0:
        (objects if item_is_object else junk).append((item_start, len(body)))
    else:
        _add_junk(body, gap_start, len(body), junk)
    return objects, junk


def _add_junk(body: bytes, start: int, end: int, junk: list[Span]) -> None:
    """Bytes between items that are more than commas and white space (numbers, strings,
    garbage) cannot be records: they are kept as they are."""
    if body[start:end].strip(_BLANK):
        junk.append((start, end))


def _items_start(body: bytes) -> int | None:
    """Where the elements of the top-level object's ``items`` array begin."""
    depth = 0
    for match in _TOKEN.finditer(body):
        first = body[match.start()]
        if first in _OPEN:
            depth += 1
        elif first in _CLOSE:
            depth -= 1
        elif depth == 1 and match.group() == _ITEMS_KEY:
            after = _ARRAY_AFTER_KEY.match(body, match.end())
            if after is not None:
                return after.end()
    return None
