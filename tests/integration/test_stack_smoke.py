"""Proves the broker and registry the tests run against are real and do what the publisher needs."""

from __future__ import annotations

import json

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from tests.integration.kafka_helpers import create_topic, read_all

SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "Smoke",
    "type": "object",
    "properties": {"id": {"type": "string"}, "n": {"type": "integer"}},
    "required": ["id", "n"],
    "additionalProperties": False,
}


def test_read_committed_sees_only_the_committed_transaction(
    admin: AdminClient, bootstrap_servers: str, unique_name: str
) -> None:
    """A transaction that commits is visible to read_committed; one that aborts is not."""
    create_topic(admin, unique_name)
    producer = Producer(
        {"bootstrap.servers": bootstrap_servers, "transactional.id": f"smoke-{unique_name}"}
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    for i in range(5):
        producer.produce(unique_name, key=b"k", value=f"committed-{i}".encode())
    producer.commit_transaction(30)
    producer.begin_transaction()
    for i in range(3):
        producer.produce(unique_name, key=b"k", value=f"aborted-{i}".encode())
    producer.flush(30)
    producer.abort_transaction(30)

    committed = [m.value() for m in read_all(bootstrap_servers, unique_name)]
    uncommitted = [
        m.value() for m in read_all(bootstrap_servers, unique_name, isolation="read_uncommitted")
    ]

    assert committed == [f"committed-{i}".encode() for i in range(5)]
    assert len(uncommitted) == 8  # the aborted records are in the log, just not visible


def test_compacted_topic_config_reads_back(admin: AdminClient, unique_name: str) -> None:
    """A topic created with cleanup.policy=compact reports that policy when described."""
    create_topic(admin, unique_name, config={"cleanup.policy": "compact"})
    resource = ConfigResource(ResourceType.TOPIC, unique_name)
    configs = admin.describe_configs([resource])[resource].result(timeout=30)

    assert configs["cleanup.policy"].value == "compact"


def test_json_schema_registers_and_fetches_by_id(registry_url: str, unique_name: str) -> None:
    """The registry's Confluent-compatible API stores a JSON Schema and returns it by id."""
    with SchemaRegistryClient({"url": registry_url, "timeout": 30}) as client:
        schema_id = client.register_schema(
            f"{unique_name}-value", Schema(json.dumps(SCHEMA), schema_type="JSON")
        )
        fetched = client.get_schema(schema_id)

    assert fetched.schema_type == "JSON"
    assert json.loads(fetched.schema_str) == SCHEMA


def test_json_serializer_frame_decodes(registry_url: str, unique_name: str) -> None:
    """A value framed by JSONSerializer (TOPIC strategy) carries magic 0 + id and decodes back."""
    with SchemaRegistryClient({"url": registry_url, "timeout": 30}) as client:
        serializer = JSONSerializer(
            json.dumps(SCHEMA), client, conf={"subject.name.strategy.type": "TOPIC"}
        )
        # TOPIC on both sides: the default strategy asks the registry for "associations", an
        # API Apicurio's ccompat layer does not serve.
        deserializer = JSONDeserializer(
            json.dumps(SCHEMA),
            schema_registry_client=client,
            conf={"subject.name.strategy.type": "TOPIC"},
        )
        ctx = SerializationContext(unique_name, MessageField.VALUE)

        framed = serializer({"id": "a", "n": 7}, ctx)

        assert framed is not None
        assert framed[0] == 0
        schema_id = int.from_bytes(framed[1:5], "big")
        assert client.get_schema(schema_id).schema_type == "JSON"
        assert deserializer(framed, ctx) == {"id": "a", "n": 7}
