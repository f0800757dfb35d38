"""``cdr-publisher tail``: read committed events and print them decoded through the registry."""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path
from typing import Any

from publisher.cli import EXIT_OK


def register(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "tail", help="print committed events (read_committed), decoded through the registry"
    )
    parser.add_argument("--config", type=Path, help="TOML file with settings (env vars win)")
    parser.add_argument("--from-beginning", action="store_true", help="start at the oldest event")
    parser.add_argument("--max", type=int, default=None, metavar="N", help="stop after N events")
    parser.add_argument("--correlation-id", help="only the legs of this call")
    parser.add_argument("--topic", help="events topic (default: the EVENTS_TOPIC setting)")
    parser.add_argument(
        "--idle-exit",
        type=float,
        default=None,
        metavar="S",
        help="exit after S seconds without a new event (default: follow forever)",
    )
    parser.add_argument("--format", choices=["pretty", "json"], default="pretty")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import time  # noqa: PLC0415

    from confluent_kafka import Consumer  # noqa: PLC0415

    from publisher.cli_support import (  # noqa: PLC0415
        OneLineErrors,
        check_reachable,
        load_reader_settings,
        reader_config,
    )
    from publisher.errors import UsageError  # noqa: PLC0415
    from publisher.events import unframe  # noqa: PLC0415
    from publisher.kafka.config import registry_config  # noqa: PLC0415
    from publisher.registry import fetch_schema  # noqa: PLC0415

    if args.max is not None and args.max < 1:
        raise UsageError("--max must be at least 1")
    settings = load_reader_settings(args.config)
    topic = args.topic or settings.events_topic
    check_reachable(settings, topic)
    errors = OneLineErrors()
    config = reader_config(settings, f"cdr-publisher-tail-{uuid.uuid4().hex[:8]}", errors)
    config["auto.offset.reset"] = "earliest" if args.from_beginning else "latest"
    config["enable.partition.eof"] = False
    consumer = Consumer(config)
    known_schemas: dict[int, dict[str, Any]] = {}
    shown = 0
    last_event = time.monotonic()
    try:
        consumer.subscribe([topic])
        while args.max is None or shown < args.max:
            msg = consumer.poll(0.5)
            if msg is None:
                if args.idle_exit is not None and time.monotonic() - last_event > args.idle_exit:
                    break
                continue
            err = msg.error()
            if err is not None:
                errors(err)
                continue
            last_event = time.monotonic()
            where = f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"
            try:
                schema_id, event = unframe(msg.value() or b"")
            except ValueError as exc:
                print(f"cdr-publisher: {where}: skipped, {exc}", file=sys.stderr)
                continue
            if schema_id not in known_schemas:
                # Decoding "through the registry": the writer's schema must be registered.
                known_schemas[schema_id] = fetch_schema(registry_config(settings), schema_id)
            if args.correlation_id and event.get("correlation_id") != args.correlation_id:
                continue
            shown += 1
            _show(event, f"{where} key={(msg.key() or b'').decode()} schema={schema_id}", args)
    finally:
        consumer.close()
    return EXIT_OK


def _show(event: dict[str, Any], header: str, args: argparse.Namespace) -> None:
    import orjson  # noqa: PLC0415

    if args.format == "json":
        print(orjson.dumps(event).decode(), flush=True)
        return
    cdr = event["cdr"]
    print(
        f"--- {header}\n"
        f"{cdr.get('start_time')}  {cdr.get('direction')}  {cdr.get('calling_number')} -> "
        f"{cdr.get('called_number')}  {cdr.get('duration')}s  report={event['event_id']}"
    )
    print(orjson.dumps(event, option=orjson.OPT_INDENT_2).decode(), flush=True)
