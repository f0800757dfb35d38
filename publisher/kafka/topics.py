"""Create missing topics and refuse a state topic that is not compacted."""

from __future__ import annotations

import time
from collections.abc import Callable

from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import ConfigResource
from confluent_kafka.admin._resource import ResourceType
from confluent_kafka.cimpl import NewTopic

from publisher.errors import ConfigError, KafkaError
from publisher.settings import Settings

TIMEOUT_S = 30.0
# A topic created a moment ago can be unknown to DescribeConfigs for a while (measured: a fresh
# clone's test saw UNKNOWN_TOPIC_OR_PART right after create_topics succeeded).
UNKNOWN_TOPIC_WAIT_S = 15.0


def _describe_policy(
    admin: AdminClient,
    topic: str,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    resource = ConfigResource(ResourceType.TOPIC, topic)
    deadline = clock() + UNKNOWN_TOPIC_WAIT_S
    while True:
        try:
            configs = admin.describe_configs([resource])[resource].result(timeout=TIMEOUT_S)
            return str(configs["cleanup.policy"].value)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            unknown = isinstance(error, RdKafkaError) and error.code() == (
                RdKafkaError.UNKNOWN_TOPIC_OR_PART
            )
            if not unknown or clock() >= deadline:
                raise
            sleep(0.25)


def wanted_topics(settings: Settings) -> dict[str, NewTopic]:
    rf = settings.topic_replication_factor
    return {
        settings.events_topic: NewTopic(
            settings.events_topic,
            num_partitions=settings.topic_partitions,
            replication_factor=rf,
            # Never compacted: the legs of one call share a key.
            config={"cleanup.policy": "delete"},
        ),
        # One partition per slot: an org's state lives in the partition its id hashes to.
        settings.state_topic: NewTopic(
            settings.state_topic,
            num_partitions=settings.state_partitions,
            replication_factor=rf,
            config={"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1"},
        ),
        settings.dlq_topic: NewTopic(
            settings.dlq_topic,
            num_partitions=settings.topic_partitions,
            replication_factor=rf,
            config={"cleanup.policy": "delete"},
        ),
    }


def ensure_topics(admin: AdminClient, settings: Settings) -> list[str]:
    """Create what is missing (when allowed) and check the policies; returns the topics created."""
    try:
        existing = set(admin.list_topics(timeout=TIMEOUT_S).topics)
        wanted = wanted_topics(settings)
        missing = [topic for name, topic in wanted.items() if name not in existing]
        if missing and not settings.create_topics:
            names = ", ".join(t.topic for t in missing)
            raise ConfigError(f"topics missing and CDR_PUBLISHER_CREATE_TOPICS is off: {names}")
        futures = admin.create_topics(missing).values() if missing else []
        for future in futures:
            try:
                future.result(timeout=TIMEOUT_S)
            except KafkaException as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):  # another instance raced us: fine
                    raise
        state_policy = _describe_policy(admin, settings.state_topic)
        events_policy = _describe_policy(admin, settings.events_topic)
    except KafkaException as exc:
        raise KafkaError(f"cannot check or create topics: {exc}", retriable=True) from exc
    if "compact" not in state_policy.split(","):
        raise ConfigError(
            f"CDR_PUBLISHER_STATE_TOPIC {settings.state_topic!r} has "
            f"cleanup.policy={state_policy}; it must be compacted (cleanup.policy=compact)"
        )
    if "compact" in events_policy.split(","):
        raise ConfigError(
            f"CDR_PUBLISHER_EVENTS_TOPIC {settings.events_topic!r} is compacted; legs of one call "
            "share a key, so compaction would delete events: use cleanup.policy=delete"
        )
    return [t.topic for t in missing]
