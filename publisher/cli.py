"""The ``cdr-publisher`` command line: parses arguments, builds settings, hands off, maps errors.

Expected failures print one line and exit non-zero without a stack trace: a bad argument exits 2
(argparse prints usage), a bad setting or a refused request exits 1, a fenced producer exits 3.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Callable, Sequence

import publisher.commands
from publisher import __version__
from publisher.errors import FencedError, PublisherError, UsageError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_FENCED = 3

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cdr-publisher",
        description="Publish Webex Calling CDRs to Kafka exactly once.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Each command lives in its own module under publisher/commands with a register() function,
    # so adding a command never touches this file.
    for info in sorted(pkgutil.iter_modules(publisher.commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"publisher.commands.{info.name}")
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler  # every command sets it with set_defaults(handler=...)
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
