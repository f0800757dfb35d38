"""Log lines are JSON objects (or console lines) and never carry a registered secret."""

from __future__ import annotations

import logging

import orjson
import pytest

from publisher import logs


@pytest.fixture
def secret() -> str:
    value = "s3cr3t-token-value-123"
    logs.register_secret(value)
    return value


def _record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("publisher.test", logging.WARNING, __file__, 1, msg, args, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_line_carries_message_and_extras() -> None:
    """One JSON object a line, with the message, level, logger and extra fields."""
    line = logs.JsonFormatter().format(_record("hello %s", "world", tracking_id="T1"))

    payload = orjson.loads(line)
    assert payload["msg"] == "hello world"
    assert payload["level"] == "warning"
    assert payload["logger"] == "publisher.test"
    assert payload["tracking_id"] == "T1"


def test_secret_is_scrubbed_from_message_args_and_extras(secret: str) -> None:
    """A registered secret is replaced wherever it would appear, in both formats."""
    record = _record("token=%s", secret, header=f"Bearer {secret}")

    for formatter in (logs.JsonFormatter(), logs.ConsoleFormatter()):
        line = formatter.format(record)
        assert secret not in line
        assert logs.REDACTED in line
