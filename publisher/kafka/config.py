"""librdkafka and Schema Registry client settings, built from ours (security passed through)."""

from __future__ import annotations

import logging
import time
from typing import Any

from publisher.events import DEFAULT_MESSAGE_MAX_BYTES
from publisher.settings import Settings


class _Throttle(logging.Filter):
    """librdkafka repeats a failing connect every few milliseconds; one line per minute per
    kind of message is enough to tell an operator the broker is away."""

    def __init__(self, every_s: float = 60.0) -> None:
        super().__init__()
        self.every_s = every_s
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        kind = str(args[0]) if args else str(record.msg)[:60]
        now = time.monotonic()
        if now - self._last.get(kind, -self.every_s) < self.every_s:
            return False
        self._last[kind] = now
        return True


RDKAFKA_LOG = logging.getLogger("publisher.rdkafka")
RDKAFKA_LOG.addFilter(_Throttle())


def client_config(settings: Settings) -> dict[str, Any]:
    """Properties every Kafka client of ours shares: servers and security."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "security.protocol": settings.kafka_security_protocol,
        "client.id": f"cdr-publisher-{settings.deployment_id}",
        # librdkafka's own log goes through ours (JSON, throttled) instead of raw stderr.
        "logger": RDKAFKA_LOG,
        # Topics are made by ensure_topics alone, with the policies they need. librdkafka's
        # producer default (true) lets a metadata request or a produce have the broker create a
        # missing topic with its defaults: a replay handed over while a fresh deployment started
        # made the state topic that way (cleanup.policy=delete) and start-up then refused it.
        # The admin client is a producer inside (librdkafka c64de6e).
        "allow.auto.create.topics": False,
    }
    if settings.kafka_sasl_mechanism:
        config["sasl.mechanism"] = settings.kafka_sasl_mechanism
    if settings.kafka_sasl_username:
        config["sasl.username"] = settings.kafka_sasl_username
    if settings.kafka_sasl_password:
        config["sasl.password"] = settings.kafka_sasl_password.get_secret_value()
    optional_paths = {
        "ssl.ca.location": settings.kafka_ssl_ca_location,
        "ssl.certificate.location": settings.kafka_ssl_certificate_location,
        "ssl.key.location": settings.kafka_ssl_key_location,
    }
    config.update({k: str(v) for k, v in optional_paths.items() if v is not None})
    if settings.kafka_ssl_key_password:
        config["ssl.key.password"] = settings.kafka_ssl_key_password.get_secret_value()
    # Anything else librdkafka knows (OAUTHBEARER OIDC settings, timeouts...) passes through last,
    # so an operator can override what we chose.
    config.update(settings.kafka_extra)
    return config


def producer_config(settings: Settings, transactional_id: str) -> dict[str, Any]:
    return {
        **client_config(settings),
        "transactional.id": transactional_id,
        "enable.idempotence": True,
        "acks": "all",
        # Transactions of a few thousand records commit in milliseconds; a minute covers a broker
        # hiccup without holding back read_committed consumers for long.
        "transaction.timeout.ms": 60000,
        "linger.ms": 20,
        # lz4 rather than zstd: with zstd, librdkafka's threads took 22-36 us a record (profiled).
        "compression.type": "lz4",
        "queue.buffering.max.messages": 200000,
        # librdkafka's default, under the broker's default topic limit (max.message.bytes
        # 1048588), which librdkafka cannot check at produce time. Every message we build is
        # made to fit this (an event too large goes to the DLQ, a DLQ entry is cut): raise it
        # through CDR_PUBLISHER_KAFKA_EXTRA only with the topics' max.message.bytes.
        "message.max.bytes": DEFAULT_MESSAGE_MAX_BYTES,
        # Java's default for keyed records (librdkafka: "Java Producer compatible Murmur2 hash of
        # key"), instead of librdkafka's CRC32 default: a Java, Kafka Streams or ksqlDB consumer
        # that joins or re-keys by Correlation ID finds every leg where it computes it should be.
        # publisher.kafka.partitioning computes the same partition in Python.
        "partitioner": "murmur2_random",
        **settings.kafka_extra,
    }


def max_message_bytes(settings: Settings) -> int:
    """The producer's message.max.bytes as configured (our default or the operator's)."""
    return int(producer_config(settings, "-")["message.max.bytes"])


def consumer_config(settings: Settings, group_id: str) -> dict[str, Any]:
    return {
        **client_config(settings),
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "enable.partition.eof": True,
        **settings.kafka_extra,
    }


def registry_config(settings: Settings) -> dict[str, Any]:
    # The registry client has no time-out by default: a registry that accepts a connection and
    # never answers would hang start-up (seen with Apicurio under load).
    config: dict[str, Any] = {"url": settings.schema_registry_url, "timeout": 30}
    if settings.schema_registry_basic_auth:
        config["basic.auth.user.info"] = settings.schema_registry_basic_auth.get_secret_value()
    if settings.schema_registry_ca_location:
        config["ssl.ca.location"] = str(settings.schema_registry_ca_location)
    return config
