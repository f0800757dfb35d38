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
    from publisher import logs, malloc  # noqa: PLC0415 - keep --help fast
    from publisher.clock import utcnow  # noqa: PLC0415
    from publisher.daemon import Worker, install_signal_handlers  # noqa: PLC0415
    from publisher.health import Health  # noqa: PLC0415
    from publisher.http_api import HttpApi  # noqa: PLC0415
    from publisher.replay.routes import ReplayRoutes  # noqa: PLC0415
    from publisher.settings import load_settings, read_admin_token  # noqa: PLC0415

    # Before anything large is allocated: page-sized blocks mmapped, so freed pages leave.
    malloc.configure()
    settings = load_settings(args.config)
    logs.configure(settings.log_level, args.log_format or settings.log_format)
    # Also the secret KAFKA_EXTRA properties (OIDC client secret...) and URL passwords.
    for secret in settings.secret_values():
        logs.register_secret(secret)
    admin_token = read_admin_token(settings)
    logs.register_secret(admin_token)
    stop = threading.Event()
    install_signal_handlers(stop)
    health = Health()
    api = HttpApi(
        health,
        host=settings.http_host,
        port=settings.http_port,
        poll_interval_s=settings.poll_interval_seconds,
        clock=utcnow,
        admin_token=admin_token,
    )
    worker = Worker(settings, stop=stop, health=health)
    for warning in worker.catalogue.warnings:
        logging.getLogger("publisher").warning(warning)
    # Replays run inside the daemon so that they share the token's limiter with the live stream.
    routes = ReplayRoutes(
        lambda: {org: work.replays for org, work in worker.orgs.items()},
        deployment=settings.deployment_id,
        catalogue=worker.catalogue.ids,
        hand_over=worker.services.hand_over if worker.group else None,
        find=worker.services.find_replay if worker.group else None,
    )
    for method, path, route, prefix in routes.routes():
        api.add_route(method, path, route, prefix=prefix)
    api.start()
    logging.getLogger("publisher").info(
        "http endpoint listening",
        extra={
            "address": f"{settings.http_host}:{api.port}",
            "admin_routes": "enabled" if admin_token else "disabled (no CDR_PUBLISHER_ADMIN_TOKEN)",
        },
    )
    try:
        worker.run()
    finally:
        api.close()
    return EXIT_OK
