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
    from publisher.daemon import Daemon, install_signal_handlers, utcnow  # noqa: PLC0415
    from publisher.health import Health  # noqa: PLC0415
    from publisher.http_api import HttpApi  # noqa: PLC0415
    from publisher.settings import load_settings  # noqa: PLC0415

    settings = load_settings(args.config)
    logs.configure(settings.log_level, args.log_format or settings.log_format)
    for secret in (
        settings.webex_token,
        settings.webex_client_secret,
        settings.webex_refresh_token,
        settings.kafka_sasl_password,
        settings.kafka_ssl_key_password,
        settings.schema_registry_basic_auth,
    ):
        logs.register_secret(secret.get_secret_value() if secret else None)
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
    api.start()
    logging.getLogger("publisher").info(
        "http endpoint listening", extra={"address": f"{settings.http_host}:{api.port}"}
    )
    try:
        Daemon(settings, stop=stop, health=health).run()
    finally:
        api.close()
    return EXIT_OK
