"""The naive way the issue compares against: a pydantic model per record, then the Confluent
``JSONSerializer`` with its default per-record validation, one produce per record, one flush.

It gets the same raw page bytes and produces the same event documents (same registered schema)
as the pipeline, so the two rates compare like for like.
"""

from __future__ import annotations

import json
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.json_schema import JSONSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from publisher.event_schema import EVENT_TYPE, SCHEMA_VERSION, schema_text
from publisher.webex.fields import FIELDS, FIELDS_BY_KEY, NA_IS_A_VALUE, Kind, normalise_key

_PY_TYPE: dict[Kind, Any] = {
    Kind.STRING: str | None,
    Kind.OPEN_ENUM: str | None,
    Kind.TIMESTAMP: str | None,
    Kind.BOOLEAN: bool | None,
    Kind.INTEGER: int | None,
}


class _Base(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _names(cls, raw: Any) -> Any:
        # Webex's key spellings vary in case and spacing; map each to its field name.
        if not isinstance(raw, dict):
            return raw
        out: dict[str, Any] = {}
        for key, value in raw.items():
            field = FIELDS_BY_KEY.get(normalise_key(key))
            out[field.name if field is not None else key] = value
        return out

    @field_validator("*", mode="before")
    @classmethod
    def _absent(cls, value: Any, info: Any) -> Any:
        # What a hand-written model does: "", "NA" mean absent (except where NA is a value).
        if value == "" or (value in ("NA", "na") and info.field_name not in NA_IS_A_VALUE):
            return None
        return value


def cdr_model() -> type[BaseModel]:
    """A pydantic model of the 87 known fields (raw keys mapped to names before validation)."""
    fields: dict[str, Any] = {f.name: (_PY_TYPE[f.kind], Field(None)) for f in FIELDS}
    model: type[BaseModel] = create_model("NaiveCdr", __base__=_Base, **fields)
    return model


def naive_event(
    model: type[BaseModel], raw: dict[str, Any], org_id: str, source: dict[str, str]
) -> dict[str, Any]:
    cdr = model.model_validate(raw)
    known = cdr.model_dump(exclude=set(cdr.model_extra or {}))
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
        "unknown_fields": dict(cdr.model_extra or {}),
    }


def run_naive(
    pages: list[bytes],
    *,
    limit: int,
    producer_config: dict[str, Any],
    registry_url: str,
    topic: str,
    org_id: str,
    source: dict[str, str],
) -> int:
    """Publish the first ``limit`` records of ``pages`` the naive way; returns how many."""
    model = cdr_model()
    with SchemaRegistryClient({"url": registry_url, "timeout": 30}) as registry:
        serializer = JSONSerializer(
            schema_text(), registry, conf={"subject.name.strategy.type": "TOPIC"}
        )
        producer = Producer(producer_config)
        context = SerializationContext(topic, MessageField.VALUE)
        sent = 0
        for body in pages:
            for raw in json.loads(body)["items"]:
                if sent >= limit:
                    break
                event = naive_event(model, raw, org_id, source)
                value = serializer(event, context)
                while True:
                    try:
                        producer.produce(topic, value=value, key=event["event_id"].encode())
                        break
                    except BufferError:
                        producer.poll(0.1)
                producer.poll(0)
                sent += 1
            if sent >= limit:
                break
        remaining = producer.flush(60)
        if remaining:
            raise RuntimeError(f"naive baseline: {remaining} records not delivered in 60 s")
    return sent
