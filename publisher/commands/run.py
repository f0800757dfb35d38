"""``cdr-publisher run``: the daemon."""

from __future__ import annotations

import argparse
import logging
import threading
from pathlib import Path
from typing import Any

from publisher.cli import EXIT_OK


def register(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "run", help="follow cdr_stream and publish every record to Kafka exactly once"
    )
    parser.add_argument("--config", type=Path, help="TOML file with settings (env vars win)")
    parser.add_argument(
        "--log-format", choices=["json", "console"], help="log line format (default: json)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from publisher import logs  # noqa: PLC0415 - keep --help fast
    from publisher.clock import utcnow  # noqa: PLC0415
    from publisher.daemon import Daemon, install_signal_handlers  # noqa: PLC0415
    from publisher.health import Health  # noqa: PLC0415
    from publisher.http_api import HttpApi  # noqa: PLC0415
    from publisher.replay import ReplayManager  # noqa: PLC0415
    from publisher.settings import load_settings  # noqa: PLC0415

    settings = load_settings(args.config)
    logs.configure(settings.log_level, args.log_format or settings.log_format)
    # Also the secret KAFKA_EXTRA properties (OIDC client secret...) and URL passwords.
    for secret in settings.secret_values():
        logs.register_secret(secret)
    stop = threading.Event()
    install_signal_handlers(stop)
    health = Health()
    api = HttpApi(
        health,
        host=settings.http_host,
        port=settings.http_port,
        poll_interval_s=settings.poll_interval_seconds,
        clock=utcnow,
    )
    # Replays run inside the daemon so that they share the token's limiter with the live stream.
    replays = ReplayManager(settings)
    for method, path, route, prefix in replays.routes():
        api.add_route(method, path, route, prefix=prefix)
    api.start()
    logging.getLogger("publisher").info(
        "http endpoint listening", extra={"address": f"{settings.http_host}:{api.port}"}
    )
    replays.resume_in_background()
    try:
        Daemon(settings, stop=stop, health=health).run()
    finally:
        replays.close()
        api.close()
    return EXIT_OK
