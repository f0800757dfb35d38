"""What the reading commands (``tail``, ``state``, ``calls``) share.

- **Where Kafka and the registry are.** When neither the environment nor ``--config`` names the
  bootstrap servers (or the registry URL) and the local stack of this checkout runs (with the
  ``CDR_STACK_*`` ports), the commands use it and say so in one line on stderr, so what ``make
  demo`` and the README print works as printed on a fresh clone.
- **librdkafka's trouble as one line.** Its own log lines (``FAIL [thrd:...] ...``) are dropped;
  errors reach us through ``error_cb`` and become one ``cdr-publisher: ...`` line, and a broker
  that cannot be reached at start stops the command with one line that says what to do.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException
from confluent_kafka import KafkaError as RdKafkaError

from publisher.errors import KafkaError, StackError
from publisher.kafka.config import client_config, consumer_config
from publisher.settings import ENV_PREFIX, Settings, load_settings

_SILENT = logging.getLogger("publisher.cli.rdkafka")
_SILENT.addHandler(logging.NullHandler())
_SILENT.propagate = False
_LOCATED = ("kafka_bootstrap_servers", "schema_registry_url")
REACH_TIMEOUT_S = 10.0


def configured(config_file: Path | None, names: tuple[str, ...] = _LOCATED) -> set[str]:
    """Which of these settings the user gave (env or TOML), defaults aside."""
    found = {name for name in names if (ENV_PREFIX + name.upper()) in _upper_env()}
    if config_file is not None:
        try:
            with config_file.open("rb") as fh:
                found |= set(tomllib.load(fh)) & set(names)
        except (OSError, tomllib.TOMLDecodeError):
            pass  # load_settings has already said what is wrong with it
    return found


def _upper_env() -> set[str]:
    return {key.upper() for key in os.environ}


def load_reader_settings(config_file: Path | None) -> Settings:
    """The settings, with the local stack's addresses where none were given and it runs."""
    settings = load_settings(config_file)
    missing = [name for name in _LOCATED if name not in configured(config_file)]
    if not missing:
        return settings
    from publisher import stack  # noqa: PLC0415 - only when something is missing

    try:
        config = stack.StackConfig.from_env()
    except StackError:
        return settings
    up = stack.status(config)
    overrides: dict[str, str] = {}
    if "kafka_bootstrap_servers" in missing and up["kafka"]:
        overrides["kafka_bootstrap_servers"] = config.bootstrap_servers
    if "schema_registry_url" in missing and up["registry"]:
        overrides["schema_registry_url"] = config.registry_url
    if not overrides:
        return settings
    where = ", ".join(
        f"{'kafka' if name.startswith('kafka') else 'registry'} {value}"
        for name, value in overrides.items()
    )
    what = " or ".join(
        "bootstrap servers" if name.startswith("kafka") else "registry URL" for name in overrides
    )
    print(f"cdr-publisher: no {what} configured; using the local stack ({where})", file=sys.stderr)
    return load_settings(config_file, **overrides)


class OneLineErrors:
    """librdkafka's error callback: each distinct error once a minute, as one stderr line; the
    latest is kept to explain a failure."""

    def __init__(self, every_s: float = 60.0) -> None:
        self.every_s = every_s
        self.last: str | None = None
        self._shown: dict[str, float] = {}

    def __call__(self, err: RdKafkaError) -> None:
        text = err.str()
        self.last = text
        now = time.monotonic()
        if now - self._shown.get(text, -self.every_s) >= self.every_s:
            self._shown[text] = now
            print(f"cdr-publisher: kafka: {text}", file=sys.stderr)


def quiet_client_config(settings: Settings) -> dict[str, Any]:
    """Servers and security of ours, librdkafka's log silenced (for the consumer kit)."""
    return {**client_config(settings), "logger": _SILENT}


def reader_config(settings: Settings, group_id: str, errors: OneLineErrors) -> dict[str, Any]:
    """Consumer properties of ours with librdkafka's log silenced and its errors to ``errors``."""
    return {**consumer_config(settings, group_id), "logger": _SILENT, "error_cb": errors}


def check_reachable(settings: Settings, topic: str | None = None) -> None:
    """Raise one-line KafkaError unless the brokers answer (and ``topic`` exists)."""
    trouble: list[str] = []
    config = {
        **consumer_config(settings, "cdr-publisher-check"),
        "logger": _SILENT,
        "error_cb": lambda err: trouble.append(err.str()),
    }
    servers = settings.kafka_bootstrap_servers
    consumer = Consumer(config)
    try:
        meta = consumer.list_topics(topic, timeout=REACH_TIMEOUT_S)
    except KafkaException as exc:
        consumer.poll(0.2)  # serves error_cb, which names the broker and the socket error
        reason = trouble[-1] if trouble else str(exc.args[0].str())
        raise KafkaError(
            f"cannot reach Kafka at {servers} ({reason}); set "
            f"{ENV_PREFIX}KAFKA_BOOTSTRAP_SERVERS, or start the local stack with "
            f"`cdr-publisher stack up`"
        ) from None
    finally:
        consumer.close()
    if topic is not None:
        found = meta.topics.get(topic)
        if found is None or found.error is not None:
            raise KafkaError(f"topic {topic!r} does not exist at {servers}")
