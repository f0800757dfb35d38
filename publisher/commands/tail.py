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

    import orjson  # noqa: PLC0415
    from confluent_kafka import Consumer  # noqa: PLC0415

    from publisher.errors import UsageError  # noqa: PLC0415
    from publisher.events import unframe  # noqa: PLC0415
    from publisher.kafka.config import consumer_config, registry_config  # noqa: PLC0415
    from publisher.registry import fetch_schema  # noqa: PLC0415
    from publisher.settings import load_settings  # noqa: PLC0415

    if args.max is not None and args.max < 1:
        raise UsageError("--max must be at least 1")
    settings = load_settings(args.config)
    topic = args.topic or settings.events_topic
    config = consumer_config(settings, f"cdr-publisher-tail-{uuid.uuid4().hex[:8]}")
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
            if msg.error():
                print(f"cdr-publisher: kafka: {msg.error()}", file=sys.stderr)
                continue
            last_event = time.monotonic()
            schema_id, event = unframe(msg.value() or b"")
            if schema_id not in known_schemas:
                # Decoding "through the registry": the writer's schema must be registered.
                known_schemas[schema_id] = fetch_schema(registry_config(settings), schema_id)
            if args.correlation_id and event.get("correlation_id") != args.correlation_id:
                continue
            shown += 1
            if args.format == "json":
                print(orjson.dumps(event).decode(), flush=True)
                continue
            cdr = event["cdr"]
            key = (msg.key() or b"").decode()
            print(
                f"--- {msg.topic()}[{msg.partition()}]@{msg.offset()} key={key} "
                f"schema={schema_id}\n"
                f"{cdr.get('start_time')}  {cdr.get('direction')}  {cdr.get('calling_number')} -> "
                f"{cdr.get('called_number')}  {cdr.get('duration')}s  report={event['event_id']}"
            )
            print(orjson.dumps(event, option=orjson.OPT_INDENT_2).decode(), flush=True)
    finally:
        consumer.close()
    return EXIT_OK
