"""The typed event: the envelope the schema requires around the generated ``cdr`` model."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from publisher.consumer.fields import CdrFields


class EventSource(BaseModel):
    """Where the publisher fetched the record: endpoint and window."""

    model_config = ConfigDict(extra="allow", frozen=True)

    endpoint: str
    window_start: datetime
    window_end: datetime


class CdrEvent(BaseModel):
    """One published event (``schemas/cdr-event.schema.json``), typed.

    Keys Webex sent that the schema does not know are in ``unknown_fields`` as they came; fields
    of a newer schema version than this model are kept as extras (``model_extra``) on the event
    and on ``cdr``.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    event_id: str
    """The Report ID: unique per record."""
    event_type: str
    schema_version: int
    org_id: str
    correlation_id: str | None
    """Ties the legs of one call together (the Kafka key); None when Webex sent none."""
    report_time: datetime | None
    source: EventSource
    replay_id: str | None
    cdr: CdrFields
    unknown_fields: dict[str, Any]
