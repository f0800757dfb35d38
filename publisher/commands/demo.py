"""``cdr-publisher demo``: local stack + simulator + daemon, then what landed (``make demo``)."""

from __future__ import annotations

import argparse
from typing import Any


def register(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "demo",
        help="run simulator -> daemon -> Kafka on the local stack and show what was published",
    )
    parser.set_defaults(handler=run)


def run(_args: argparse.Namespace) -> int:
    from publisher.demo import run_demo  # noqa: PLC0415 - keep --help fast

    return run_demo()
