"""Topics are created by ensure_topics alone, with the configuration they need: no client of ours
may have the broker create one with its defaults (auto.create.topics.enable is on by default)."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient

from publisher.errors import KafkaError
from publisher.health import Health
from publisher.kafka.topics import ensure_topics
from publisher.runtime import Runtime
from tests.integration.daemon_helpers import in_process_settings


def test_a_replay_handed_over_before_start_up_creates_no_state_topic(
    bootstrap_servers: str, registry_url: str, admin: AdminClient, unique_name: str
) -> None:
    """A replay POSTed while a fresh deployment starts is handed over through the state topic.
    Its metadata request and produce once made the broker create that topic with
    cleanup.policy=delete, and the daemon then refused to start for good ("must be compacted").
    Now the hand-over fails retriably (the client gets a 503 and retries) and leaves no topic,
    so start-up creates it compacted."""
    settings = in_process_settings(bootstrap_servers, registry_url, unique_name)
    runtime = Runtime(settings, health=Health())
    with pytest.raises(KafkaError) as raised:
        runtime.hand_over("org-test", {"id": "early", "start": "x", "end": "y"})
    assert raised.value.retriable
    assert settings.state_topic not in admin.list_topics(timeout=10).topics

    created = ensure_topics(admin, settings)

    assert settings.state_topic in created
