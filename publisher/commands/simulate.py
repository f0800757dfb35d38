"""``cdr-publisher simulate``: run the Webex CDR API simulator in the foreground.

The first line of stdout is the base URL (flushed), so scripts can read it; SIGTERM or SIGINT
stops it cleanly with exit 0.

``--orgs N`` serves N orgs, each with its own token (``<--token>-<n>``), traffic, limits and
OAuth refresh token (``<--refresh-token>-<n>``); ``--regional-orgs K`` puts the last K in another
region (451 naming ``--home-region``, default ``localhost``); ``--write-orgs DIR`` writes each
org's token to ``DIR/org-<n>.token`` (mode 0600) and an ``[[orgs]]`` catalogue to
``DIR/orgs.toml`` for ``run --config``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from publisher.cli import EXIT_OK
from publisher.errors import ConfigError, UsageError


def _faults(value: str) -> Any:
    from publisher.simulator.faults import Faults  # noqa: PLC0415 - keep --help fast

    try:
        return Faults.parse(value)
    except (ValueError, TypeError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _non_negative(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not number >= 0:  # also refuses NaN
        raise argparse.ArgumentTypeError(f"must be >= 0: {value!r}")
    return number


def _positive(value: str) -> float:
    number = _non_negative(value)
    if number == 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {value!r}")
    return number


def _count(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0: {value!r}")
    return number


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port: {value!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range: {value!r}")
    return port


def register(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "simulate",
        help="run a local Webex CDR API simulator (for the demo, tests and benchmarks)",
        description="Serve /v1/cdr_stream, /v1/cdr_feed and /v1/access_token with generated "
        "traffic. Prints the base URL on the first line of stdout.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=_port, default=0, help="port (0: any free port)")
    parser.add_argument("--seed", type=int, default=1, help="traffic seed (same seed, same CDRs)")
    parser.add_argument("--calls-per-minute", type=_non_negative, default=20.0)
    parser.add_argument(
        "--history-hours", type=_non_negative, default=13.0, help="how far back traffic exists"
    )
    parser.add_argument("--token", default="sim-token", help="static bearer token accepted")
    parser.add_argument("--client-id", default="sim-client")
    parser.add_argument("--client-secret", default="sim-secret")
    parser.add_argument("--refresh-token", default="sim-refresh", help="first OAuth refresh token")
    parser.add_argument("--access-token-lifetime", type=_positive, default=3600.0, metavar="S")
    parser.add_argument("--initial-per-minute", type=_positive, default=1.0)
    parser.add_argument("--pages-per-minute", type=_positive, default=10.0)
    parser.add_argument("--no-rate-limits", action="store_true", help="never answer 429")
    parser.add_argument(
        "--home-region",
        metavar="HOST",
        help="serve CDRs only to this Host header (e.g. localhost); others get 451",
    )
    many = parser.add_argument_group("many orgs (docs/orgs.md)")
    many.add_argument(
        "--orgs",
        type=_count,
        default=0,
        metavar="N",
        help="serve N orgs, each its own token <token>-<n>, data and limits (0: one org, as "
        "without the flag)",
    )
    many.add_argument(
        "--regional-orgs",
        type=_count,
        default=0,
        metavar="K",
        help="the last K of the --orgs answer 451 naming --home-region (default localhost)",
    )
    many.add_argument(
        "--stream-retention-hours",
        type=_positive,
        default=12.0,
        metavar="H",
        help="how far back cdr_stream accepts startTime (Webex: 12); the feed keeps 30 days",
    )
    many.add_argument("--service-app-id", default="sim-app", help="the Service App's id")
    many.add_argument("--service-app-client-id", default="sim-app-client")
    many.add_argument("--service-app-client-secret", default="sim-app-secret")
    many.add_argument(
        "--applications-token",
        default="sim-apps-token",
        help="static token with scope spark:applications_token (mints Service App tokens)",
    )
    many.add_argument(
        "--write-orgs",
        type=Path,
        metavar="DIR",
        help="write DIR/org-<n>.token files and an [[orgs]] catalogue DIR/orgs.toml",
    )
    parser.add_argument(
        "--faults",
        type=_faults,
        default=None,
        help="e.g. 5xx=0.05,slow=0.02,malformed=0.01,unknown-keys=0.1,casing=0.2,duplicates=0.05"
        ",429=0.01,slow-seconds=1.5,huge=0.001 (a 5 MB field),bad-utf8=0.001 (bytes not UTF-8)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from publisher.simulator.faults import Faults  # noqa: PLC0415 - keep --help fast
    from publisher.simulator.server import Simulator, SimulatorConfig  # noqa: PLC0415

    if args.regional_orgs > args.orgs:
        raise UsageError(f"--regional-orgs {args.regional_orgs} is more than --orgs {args.orgs}")
    if args.write_orgs is not None and not (args.orgs and args.token):
        raise UsageError("--write-orgs needs --orgs N and static tokens (--token)")
    config = SimulatorConfig(
        seed=args.seed,
        calls_per_minute=args.calls_per_minute,
        history_hours=args.history_hours,
        port=args.port,
        host=args.host,
        static_token=args.token or None,
        client_id=args.client_id,
        client_secret=args.client_secret,
        refresh_token=args.refresh_token,
        access_token_lifetime_s=args.access_token_lifetime,
        initial_per_minute=args.initial_per_minute,
        pages_per_minute=args.pages_per_minute,
        rate_limits=not args.no_rate_limits,
        home_region=args.home_region,
        faults=args.faults or Faults(),
        orgs=args.orgs,
        regional_orgs=args.regional_orgs,
        stream_retention_hours=args.stream_retention_hours,
        service_app_id=args.service_app_id,
        service_app_client_id=args.service_app_client_id,
        service_app_client_secret=args.service_app_client_secret,
        applications_token=args.applications_token or None,
    )
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    simulator = Simulator(config)
    try:
        simulator.start()
    except OSError as exc:
        raise ConfigError(
            f"simulate: cannot listen on {args.host}:{args.port}: {exc.strerror}"
        ) from exc
    try:
        with simulator as sim:
            if args.write_orgs is not None:
                write_orgs(sim, args.write_orgs)
            print(sim.base_url, flush=True)
            orgs = f", {config.orgs} orgs ({config.regional_orgs} regional)" if config.orgs else ""
            print(
                f"simulator: seed {config.seed}, {config.calls_per_minute:g} calls/min{orgs}, "
                f"token endpoint {sim.token_url}, home {sim.home_url}",
                file=sys.stderr,
                flush=True,
            )
            while not stop.wait(0.5):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return EXIT_OK


def write_orgs(sim: Any, directory: Path) -> Path:
    """Each org's static token in ``directory/org-<n>.token`` (0600) and ``orgs.toml``, an
    ``[[orgs]]`` catalogue naming them; returns the catalogue's path."""
    from publisher.commands.config import toml_string  # noqa: PLC0415
    from publisher.webex.auth import write_secret_file  # noqa: PLC0415

    try:
        directory.mkdir(parents=True, exist_ok=True)
        lines = [f"# {len(sim.org_ids)} orgs of the simulator at {sim.base_url}"]
        for info in sim.orgs_info():
            token_file = (directory / f"org-{info['n']}.token").resolve()
            write_secret_file(token_file, info["token"] + "\n")
            lines += [
                "",
                "[[orgs]]",
                f"id = {toml_string(info['org_id'])}",
                f"name = {toml_string('simulated org ' + str(info['n']))}",
                f"token_file = {toml_string(str(token_file))}",
            ]
        catalogue = directory / "orgs.toml"
        catalogue.write_text("\n".join(lines) + "\n", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"simulate --write-orgs {directory}: {exc.strerror}") from None
    return catalogue
