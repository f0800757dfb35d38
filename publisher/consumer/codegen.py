"""Writes ``publisher/consumer/fields.py``, the typed ``cdr`` model, from the field table. Pure.

The same table (``publisher/webex/fields.py``) generates the event schema
(``publisher/event_schema.py``), so the model and the schema cannot drift apart: a unit test fails
when the committed module differs from this output (``make schema`` rewrites both).
"""

from __future__ import annotations

from publisher.webex.fields import FIELDS, Kind

_PYTHON_TYPE = {
    Kind.STRING: "str",
    Kind.OPEN_ENUM: "str",
    Kind.INTEGER: "int",
    Kind.BOOLEAN: "bool",
    Kind.TIMESTAMP: "datetime",
}

_HEADER = '''"""The typed ``cdr`` of an event: every known Webex CDR field. GENERATED: do not edit.

Written by ``python -m publisher.consumer.codegen`` (``make schema``) from the field table in
publisher/webex/fields.py, which the event schema is generated from too. Fields a newer schema
version adds are kept as extra attributes (``model_extra``), so an older consumer loses nothing.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict


class CdrFields(BaseModel):
    """One CDR: each field under its wxc_sdk name, None when Webex sent it empty."""

    model_config = ConfigDict(extra="allow", frozen=True)

'''


def model_source() -> str:
    """The text of publisher/consumer/fields.py."""
    lines = [
        f"    {field.name}: {_PYTHON_TYPE[field.kind]} | None = None\n"
        f'    """Webex key {field.raw_key!r}."""\n'
        for field in FIELDS
    ]
    return _HEADER + "".join(lines)


if __name__ == "__main__":  # pragma: no cover - `make schema`
    print(model_source(), end="")
