"""Framed value -> typed event, through the registry by the writer's schema id.

Each value names the schema it was written with (Confluent wire format: byte 0, 4-byte schema id,
JSON). The decoder fetches that schema from the registry once per id, so every registered version
decodes, checks the JSON against it with a compiled validator (on by default), and builds the
typed :class:`~publisher.consumer.model.CdrEvent`.
"""

from __future__ import annotations

import struct
from typing import Any

import jsonschema_rs
import orjson
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.common._httpx_compat import httpx
from confluent_kafka.schema_registry.error import SchemaRegistryError
from pydantic import ValidationError

from publisher.consumer.model import CdrEvent
from publisher.errors import DecodeError, SchemaRegistryUnavailableError

_HEADER = struct.Struct(">bI")


class EventDecoder:
    """Decodes framed values; one per consumer (it caches the writers' schemas by id)."""

    def __init__(self, registry_config: dict[str, Any], *, validate: bool = True) -> None:
        self._client = SchemaRegistryClient(registry_config)
        self._validate = validate
        self._validators: dict[int, Any] = {}

    def schema_id(self, value: bytes) -> int:
        """The writer's schema id; DecodeError when ``value`` is not our wire format."""
        if len(value) < _HEADER.size or value[0] != 0:
            raise DecodeError("not a Confluent wire-format value (magic byte 0 + 4-byte id)")
        return int(_HEADER.unpack_from(value)[1])

    def decode(self, value: bytes) -> tuple[int, CdrEvent]:
        """(schema id, event). Raises DecodeError, or SchemaRegistryUnavailableError (retriable)."""
        schema_id = self.schema_id(value)
        validator = self._validator(schema_id)
        try:
            data = orjson.loads(value[_HEADER.size :])
        except orjson.JSONDecodeError as exc:
            raise DecodeError(f"schema id {schema_id}: the payload is not JSON ({exc})") from None
        if validator is not None and not validator.is_valid(data):
            first = next(iter(validator.iter_errors(data)))
            raise DecodeError(
                f"schema id {schema_id}: the event fails its writer's schema at "
                f"{first.instance_path}: {first.message}"
            )
        try:
            return schema_id, CdrEvent.model_validate(data)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"])
            raise DecodeError(
                f"schema id {schema_id}: not a CDR event at {where}: {error['msg']}"
            ) from None

    def _validator(self, schema_id: int) -> Any:
        if schema_id in self._validators:
            return self._validators[schema_id]
        try:
            schema = orjson.loads(self._client.get_schema(schema_id).schema_str or "{}")
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                raise DecodeError(f"schema id {schema_id} is not registered") from None
            raise SchemaRegistryUnavailableError(
                f"schema registry: {exc.error_message} (HTTP {exc.http_status_code})"
            ) from exc
        except httpx.HTTPError as exc:
            raise SchemaRegistryUnavailableError(f"schema registry unreachable: {exc}") from exc
        validator = jsonschema_rs.validator_for(schema) if self._validate else None
        self._validators[schema_id] = validator
        return validator

    def close(self) -> None:
        self._client.close()
