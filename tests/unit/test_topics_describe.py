"""Reading a topic's cleanup policy right after creating it (publisher.kafka.topics)."""

from __future__ import annotations

from concurrent.futures import Future
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from publisher.kafka import topics


class _Admin:
    """DescribeConfigs that answers ``errors`` in turn, then the policy (an error path only)."""

    def __init__(self, errors: list[int]) -> None:
        self.errors = list(errors)
        self.calls = 0

    def describe_configs(self, resources: list[Any]) -> dict[Any, Future[Any]]:
        self.calls += 1
        future: Future[Any] = Future()
        if self.errors:
            future.set_exception(KafkaException(KafkaError(self.errors.pop(0))))
        else:
            future.set_result({"cleanup.policy": SimpleNamespace(value="compact")})
        return {resources[0]: future}


class _Time:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_topic_created_a_moment_ago_is_described_once_it_is_known() -> None:
    """Its creation succeeded, yet DescribeConfigs first answers UNKNOWN_TOPIC_OR_PART: that is
    the broker catching up, not an error to stop start-up (or a test) for."""
    admin, t = _Admin([KafkaError.UNKNOWN_TOPIC_OR_PART] * 3), _Time()

    policy = topics._describe_policy(admin, "t.state", sleep=t.sleep, clock=t.clock)  # type: ignore[arg-type]

    assert policy == "compact"
    assert admin.calls == 4


def test_a_topic_still_unknown_after_the_wait_is_an_error() -> None:
    admin, t = _Admin([KafkaError.UNKNOWN_TOPIC_OR_PART] * 1000), _Time()

    with pytest.raises(KafkaException):
        topics._describe_policy(admin, "t.state", sleep=t.sleep, clock=t.clock)  # type: ignore[arg-type]
    assert t.now >= topics.UNKNOWN_TOPIC_WAIT_S


def test_other_errors_are_not_waited_for() -> None:
    admin, t = _Admin([KafkaError.TOPIC_AUTHORIZATION_FAILED]), _Time()

    with pytest.raises(KafkaException):
        topics._describe_policy(admin, "t.state", sleep=t.sleep, clock=t.clock)  # type: ignore[arg-type]
    assert admin.calls == 1
