"""``cdr-publisher stack up|down|status``: the local Kafka + Schema Registry, no Docker."""

from __future__ import annotations

import argparse
from typing import Any

from publisher.cli import EXIT_FAILURE, EXIT_OK


def register(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "stack", help="start, stop or check the local Kafka + Schema Registry (no Docker)"
    )
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("--purge", action="store_true", help="with down: also delete its data")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from publisher import stack  # noqa: PLC0415 - keep --help fast

    config = stack.StackConfig.from_env()
    if args.action == "up":
        addrs = stack.up(config)
        print(f"kafka     {addrs['kafka']}")
        print(f"registry  {addrs['registry']}")
        return EXIT_OK
    if args.action == "down":
        stopped = stack.down(config, purge=args.purge)
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        return EXIT_OK
    states = stack.status(config)
    addrs = stack.addresses(config)
    for name, ok in states.items():
        print(f"{name:<9} {'up' if ok else 'down':<5} {addrs[name]}")
    return EXIT_OK if all(states.values()) else EXIT_FAILURE
