"""The ``cdr-publisher`` command line: parses arguments, builds settings, hands off, maps errors.

Expected failures print one line and exit non-zero without a stack trace: a bad argument exits 2
(argparse prints usage), a bad setting or a refused request exits 1, a fenced producer exits 3.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from publisher import __version__
from publisher.errors import FencedError, PublisherError, UsageError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_FENCED = 3

Handler = Callable[[argparse.Namespace], int]


def _stack(args: argparse.Namespace) -> int:
    from publisher import stack  # noqa: PLC0415 - each command imports only what it needs

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cdr-publisher",
        description="Publish Webex Calling CDRs to Kafka exactly once.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    stack_cmd = commands.add_parser(
        "stack", help="start, stop or check the local Kafka + Schema Registry (no Docker)"
    )
    stack_cmd.add_argument("action", choices=["up", "down", "status"])
    stack_cmd.add_argument(
        "--purge", action="store_true", help="with down: also delete the stack's data"
    )
    stack_cmd.set_defaults(handler=_stack)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"cdr-publisher: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except FencedError as exc:
        print(f"cdr-publisher: fenced: {exc}", file=sys.stderr)
        return EXIT_FENCED
    except PublisherError as exc:
        print(f"cdr-publisher: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
