"""``cdr-publisher fetch``: print the normalised records of one span of the Webex API as JSON lines.

Records go to stdout, one JSON object a line (the per-record JSON of ``convert``), each Report ID
once: the API may hand a record over twice (within a window or in a later one), and the copy is
dropped and counted as the daemon's dedup would. Rejected records and unreadable pages go to
stderr as JSON lines with the reason. Nothing is published. The span is cut into legal windows;
one that cannot be made legal is a usage error (exit 2).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from publisher.cli import EXIT_FAILURE, EXIT_OK

# The key under which ``convert`` prints unknown raw keys; fetch prints records the same way.
UNKNOWN_KEY = "_unknown"

if TYPE_CHECKING:
    from publisher.webex.record import Cdr, RejectedRecord


def register(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "fetch", help="print the records of a time span from the Webex API as JSON lines"
    )
    parser.add_argument("--endpoint", choices=["stream", "feed"], required=True)
    parser.add_argument(
        "--start", required=True, type=_iso, metavar="ISO", help="span start (UTC if no zone)"
    )
    parser.add_argument(
        "--end", required=True, type=_iso, metavar="ISO", help="span end, exclusive"
    )
    parser.add_argument(
        "--locations",
        action="append",
        default=[],
        metavar="NAMES",
        help="location names, comma separated (at most 10; overrides WEBEX_LOCATIONS)",
    )
    parser.add_argument("--config", type=Path, help="TOML file with settings (env vars win)")
    parser.set_defaults(handler=run)


def _iso(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO-8601 time (e.g. 2026-03-01T10:00:00Z)"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def run(args: argparse.Namespace) -> int:
    from publisher import logs  # noqa: PLC0415 - keep --help fast
    from publisher.clock import utcnow  # noqa: PLC0415
    from publisher.dedup import mark_of  # noqa: PLC0415
    from publisher.errors import UsageError, WebexBadPageError, WindowError  # noqa: PLC0415
    from publisher.settings import load_settings  # noqa: PLC0415
    from publisher.webex.client import CdrClient  # noqa: PLC0415
    from publisher.webex.record import parse_page  # noqa: PLC0415
    from publisher.webex.windows import Endpoint, split  # noqa: PLC0415

    start: datetime = args.start
    end: datetime = args.end
    if end <= start:
        raise UsageError("--end must be after --start")
    locations = [n.strip() for value in args.locations for n in value.split(",") if n.strip()]
    if len(locations) > 10:
        raise UsageError(f"--locations names {len(locations)} locations; Webex takes at most 10")
    settings = load_settings(args.config, webex_locations=locations or None)
    logs.configure(settings.log_level, "console")
    for secret in settings.secret_values():
        logs.register_secret(secret)

    endpoint = Endpoint(args.endpoint)
    try:
        windows = split(endpoint, start, end, utcnow(), settings.webex_clock_skew_seconds)
    except WindowError as exc:
        raise UsageError(str(exc)) from None

    out, err = sys.stdout.buffer, sys.stderr.buffer
    to_json = record_formatter()
    records = rejected = pages = 0
    bad_pages = duplicates = 0
    printed: set[int] = set()  # 64-bit marks of the Report IDs printed, as the daemon keeps them
    with CdrClient.from_settings(settings) as client:
        for window in windows:
            for page in client.pages(endpoint, window):
                pages += 1
                try:
                    parsed = parse_page(page.body)
                except WebexBadPageError as exc:
                    bad_pages += 1
                    _write(err, {"error": exc.message, "page": page.url, "bytes": len(page.body)})
                    continue
                for cdr in parsed.records:
                    mark = mark_of(cdr.report_id)
                    if mark in printed:
                        duplicates += 1
                        continue
                    printed.add(mark)
                    out.write(to_json(cdr) + b"\n")
                    records += 1
                for bad in parsed.rejected:
                    _write(err, _rejected_json(bad))
                rejected += len(parsed.rejected)
                out.flush()
    print(
        f"cdr-publisher: {records} records ({duplicates} duplicates dropped), {rejected} "
        f"rejected, {pages} pages ({bad_pages} unreadable) in {len(windows)} windows",
        file=sys.stderr,
    )
    return EXIT_FAILURE if bad_pages else EXIT_OK


def record_formatter() -> Callable[[Cdr], bytes]:
    """The ``convert`` command's per-record function when it exports one, else :func:`record_json`
    (the same shape, built here), so that ``fetch`` and ``convert`` print records alike."""
    try:
        convert = importlib.import_module("publisher.commands.convert")
    except ImportError:
        return record_json
    for name in ("record_json", "format_record", "cdr_json"):
        found = getattr(convert, name, None)
        if callable(found):
            return _as_bytes(found)
    return record_json


def _as_bytes(function: Callable[[Cdr], Any]) -> Callable[[Cdr], bytes]:
    def wrapped(cdr: Cdr) -> bytes:
        value = function(cdr)
        return value.encode("utf-8") if isinstance(value, str) else bytes(value)

    return wrapped


def record_json(cdr: Cdr) -> bytes:
    """One record as ``convert`` prints it: flat, keyed by field name in table order (so records
    diff alike whatever key order Webex used), with ``"_unknown"`` holding unknown raw keys."""
    import orjson  # noqa: PLC0415

    from publisher.webex.fields import FIELDS  # noqa: PLC0415

    fields = cdr.fields
    flat: dict[str, object] = {f.name: fields[f.name] for f in FIELDS if f.name in fields}
    if cdr.unknown:
        flat[UNKNOWN_KEY] = cdr.unknown
    return orjson.dumps(flat, option=orjson.OPT_NON_STR_KEYS)


def _rejected_json(bad: RejectedRecord) -> dict[str, Any]:
    return {
        "reason": bad.reason,
        "report_id": bad.report_id,
        "raw": bad.raw.decode("utf-8", "replace"),
    }


def _write(stream: IO[bytes], obj: dict[str, Any]) -> None:
    import orjson  # noqa: PLC0415

    stream.write(orjson.dumps(obj) + b"\n")
    stream.flush()
