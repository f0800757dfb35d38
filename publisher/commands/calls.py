"""``cdr-publisher calls``: the legs of each call grouped, one JSON object per call."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from publisher.cli import EXIT_OK


def register(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "calls",
        help="group committed events into calls by Correlation ID; one JSON line per call",
        description=(
            "A call is printed once no leg of it has come for the quiet period, measured on "
            "report time; a leg that comes later prints the call again with a higher revision."
        ),
    )
    parser.add_argument("--config", type=Path, help="TOML file with settings (env vars win)")
    parser.add_argument("--from-beginning", action="store_true", help="start at the oldest event")
    parser.add_argument("--max", type=int, default=None, metavar="N", help="stop after N calls")
    parser.add_argument("--topic", help="events topic (default: the EVENTS_TOPIC setting)")
    parser.add_argument(
        "--quiet-minutes",
        type=float,
        default=15.0,
        metavar="M",
        help="report-time minutes without a new leg before a call is printed (default 15)",
    )
    parser.add_argument(
        "--idle-exit",
        type=float,
        default=None,
        metavar="S",
        help="after S seconds without an event print the calls still open and exit",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from datetime import timedelta  # noqa: PLC0415

    import orjson  # noqa: PLC0415

    from publisher.calls import Call, CallAssembler  # noqa: PLC0415
    from publisher.cli_support import (  # noqa: PLC0415
        OneLineErrors,
        check_reachable,
        load_reader_settings,
        quiet_client_config,
    )
    from publisher.consumer.client import EventConsumer, unique_group  # noqa: PLC0415
    from publisher.errors import UsageError  # noqa: PLC0415
    from publisher.kafka.config import registry_config  # noqa: PLC0415

    if args.max is not None and args.max < 1:
        raise UsageError("--max must be at least 1")
    if args.quiet_minutes < 0:
        raise UsageError("--quiet-minutes must not be negative")
    settings = load_reader_settings(args.config)
    topic = args.topic or settings.events_topic
    check_reachable(settings, topic)
    assembler = CallAssembler(quiet=timedelta(minutes=args.quiet_minutes))
    printed = 0

    def emit(calls: list[Call]) -> bool:
        nonlocal printed
        for call in calls:
            print(orjson.dumps(call.summary()).decode(), flush=True)
            printed += 1
            if args.max is not None and printed >= args.max:
                return True
        return False

    with EventConsumer(
        quiet_client_config(settings),
        registry_config(settings),
        topics=[topic],
        group_id=unique_group("cdr-publisher-calls"),
        from_beginning=args.from_beginning,
        commit=False,
        on_error=OneLineErrors(),
    ) as consumer:
        for item in consumer.events(idle_timeout=args.idle_exit):
            if emit(assembler.add(item.event, item.partition)):
                return EXIT_OK
    emit(assembler.flush())
    return EXIT_OK
