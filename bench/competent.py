"""The competent baseline: what a user who knows the libraries would write, without our design.

A pydantic model whose fields accept every known key spelling (``AliasChoices``), absent values
mapped to None, the Confluent ``JSONSerializer`` with its per-record validation turned off,
produce calls batched per page with one flush, no transactions, no dedup, no DLQ. It gets the
same raw page bytes as the publisher and makes the same event documents, so the rates compare
like for like; the publisher does more (typed and valid by construction, exactly once).
"""

from __future__ import annotations

import json
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.json_schema import JSONSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, create_model, field_validator

from publisher.event_schema import EVENT_TYPE, SCHEMA_VERSION, schema_text
from publisher.webex.fields import FIELDS, NA_IS_A_VALUE, Kind

_PY_TYPE: dict[Kind, Any] = {
    Kind.STRING: str | None,
    Kind.OPEN_ENUM: str | None,
    Kind.TIMESTAMP: str | None,
    Kind.BOOLEAN: bool | None,
    Kind.INTEGER: int | None,
}


class _Base(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    @field_validator("*", mode="before")
    @classmethod
    def _absent(cls, value: Any, info: Any) -> Any:
        if value == "" or (value in ("NA", "na") and info.field_name not in NA_IS_A_VALUE):
            return None
        return value


def competent_model() -> type[BaseModel]:
    """The 87 fields, each accepting its documented and its real-payload spellings."""
    fields: dict[str, Any] = {
        f.name: (
            _PY_TYPE[f.kind],
            Field(None, validation_alias=AliasChoices(f.raw_key, *f.spellings)),
        )
        for f in FIELDS
    }
    model: type[BaseModel] = create_model("CompetentCdr", __base__=_Base, **fields)
    return model


def competent_event(
    model: type[BaseModel], raw: dict[str, Any], org_id: str, source: dict[str, str]
) -> dict[str, Any]:
    cdr = model.model_validate(raw)
    extra = cdr.model_extra or {}
    known = cdr.model_dump(exclude=set(extra))
    return {
        "event_id": known["report_id"],
        "event_type": EVENT_TYPE,
        "schema_version": SCHEMA_VERSION,
        "org_id": org_id,
        "correlation_id": known["correlation_id"],
        "report_time": known["report_time"],
        "source": source,
        "replay_id": None,
        "cdr": known,
        "unknown_fields": dict(extra),
    }


def run_competent(
    pages: list[bytes],
    *,
    limit: int,
    producer_config: dict[str, Any],
    registry_url: str,
    topic: str,
    org_id: str,
    source: dict[str, str],
) -> int:
    """Publish the first ``limit`` records of ``pages`` the competent way; returns how many."""
    model = competent_model()
    with SchemaRegistryClient({"url": registry_url, "timeout": 30}) as registry:
        serializer = JSONSerializer(
            schema_text(),
            registry,
            conf={"subject.name.strategy.type": "TOPIC", "validate": False},
        )
        producer = Producer(
            {**producer_config, "linger.ms": 20, "compression.type": "lz4", "acks": "all"}
        )
        context = SerializationContext(topic, MessageField.VALUE)
        sent = 0
        for body in pages:
            for raw in json.loads(body)["items"]:
                if sent >= limit:
                    break
                event = competent_event(model, raw, org_id, source)
                value = serializer(event, context)
                key = (event["correlation_id"] or event["event_id"]).encode()
                while True:
                    try:
                        producer.produce(topic, value=value, key=key)
                        break
                    except BufferError:
                        producer.poll(0.1)
                sent += 1
            producer.poll(0)
            if sent >= limit:
                break
        remaining = producer.flush(60)
        if remaining:
            raise RuntimeError(f"competent baseline: {remaining} records not delivered in 60 s")
    return sent
