"""``cdr-publisher convert [FILE|-]``: raw Webex CDRs in, one normalised JSON record per line out.

Input is a Webex page (``{"items": [...]}``), a JSON array of records, or JSON lines. Each record
that converts is written to stdout as one flat JSON object keyed by field name (timestamps
canonical), with ``"_unknown": {raw key: value}`` when it has keys the table does not know. Each
rejected record is one JSON line on stderr: ``{"position": n, "reason": ..., "raw": ...}``
(``position`` counts records from 1; for JSON lines it is the line number).

Exit 0 when every record converted, 1 when some were rejected, 2 when the input cannot be read
at all (missing file, or neither JSON nor JSON lines), with one line on stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from publisher.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE

UNKNOWN_KEY = "_unknown"
_JSON_TYPES = {str: "a string", int: "a number", float: "a number", bool: "a boolean"}
_JSON_TYPES[type(None)] = "null"


class _UnreadableInputError(Exception):
    """The input as a whole cannot be read; the message is the one line to print."""


def register(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "convert",
        help="normalise raw Webex CDRs (page, array or JSON lines) to one JSON record per line",
        description=(
            "Read a Webex page, a JSON array of records or JSON lines, and write one normalised "
            "record per line to stdout; rejected records go to stderr. Exit 0 when all "
            "converted, 1 when some were rejected, 2 when the input is unreadable."
        ),
    )
    parser.add_argument(
        "file", nargs="?", default="-", metavar="FILE", help="input file, or - for stdin (default)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from publisher.webex.fields import FIELDS  # noqa: PLC0415 - keep --help fast
    from publisher.webex.record import Cdr, parse_record  # noqa: PLC0415

    try:
        data = _read(args.file)
        records = list(_records(data))
    except _UnreadableInputError as exc:
        print(f"cdr-publisher convert: {exc}", file=sys.stderr)
        return EXIT_USAGE

    out: list[bytes] = []
    errors: list[bytes] = []
    for position, obj, raw in records:
        if isinstance(obj, _NotJson):
            errors.append(_rejection(position, f"not JSON: {obj.message}", raw or b""))
            continue
        result = parse_record(obj, raw)
        if isinstance(result, Cdr):
            fields = result.fields
            # In table order, so that records read (and diff) alike whatever order Webex used.
            flat: dict[str, object] = {f.name: fields[f.name] for f in FIELDS if f.name in fields}
            if result.unknown:
                flat[UNKNOWN_KEY] = result.unknown
            out.append(orjson.dumps(flat, option=orjson.OPT_APPEND_NEWLINE))
        else:
            errors.append(_rejection(position, result.reason, result.raw))
    _write(sys.stdout, out)
    _write(sys.stderr, errors)
    return EXIT_FAILURE if errors else EXIT_OK


class _NotJson:
    """A JSON line that does not parse: rejected as it is, without asking the parser."""

    def __init__(self, message: str) -> None:
        self.message = message


def _rejection(position: int, reason: str, raw: bytes) -> bytes:
    line = {"position": position, "reason": reason, "raw": raw.decode("utf-8", "replace")}
    return orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE)


def _read(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(name).read_bytes()
    except OSError as exc:
        raise _UnreadableInputError(f"cannot read {name}: {exc.strerror or exc}") from None


def _records(data: bytes) -> Iterator[tuple[int, object, bytes | None]]:
    """(position, decoded record, its raw bytes if known) for each record of the input."""
    data = data.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte order mark some editors write
    try:
        whole = orjson.loads(data)
    except orjson.JSONDecodeError:
        yield from _json_lines(data)
        return
    if isinstance(whole, dict) and "items" in whole:
        items = whole["items"]
        if not isinstance(items, list):
            raise _UnreadableInputError("input is a JSON object whose 'items' is not a list")
        records: list[object] = items
    elif isinstance(whole, list):
        records = whole
    elif isinstance(whole, dict):
        # A single record: JSON lines with one line.
        yield 1, whole, data.strip()
        return
    else:
        raise _UnreadableInputError(
            f"input is JSON but not a page, an array or a record (got {_JSON_TYPES[type(whole)]})"
        )
    for position, item in enumerate(records, start=1):
        yield position, item, None


def _json_lines(data: bytes) -> Iterator[tuple[int, object, bytes | None]]:
    lines = data.split(b"\n")
    parsed: list[tuple[int, object, bytes | None]] = []
    first_error: str | None = None
    any_json = False
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            if first_error is None:
                first_error = f"line {number}: {exc}"
            parsed.append((number, _NotJson(str(exc)), text))
            continue
        any_json = True
        parsed.append((number, obj, text))
    if first_error is not None and not any_json:
        raise _UnreadableInputError(f"input is neither JSON nor JSON lines ({first_error})")
    yield from parsed


def _write(stream: Any, chunks: list[bytes]) -> None:
    if not chunks:
        return
    buffer: BinaryIO | None = getattr(stream, "buffer", None)
    stream.flush()
    if buffer is None:
        stream.write(b"".join(chunks).decode())
        stream.flush()
        return
    buffer.write(b"".join(chunks))
    buffer.flush()
