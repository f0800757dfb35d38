"""Telling a timed-out transaction from another owner of the transactional.id (issue 10, item 5)."""

from __future__ import annotations

from typing import Any

import pytest

from publisher.errors import FencedError, ProducerLostError
from publisher.kafka.owner import TransactionalOwner


class FakeSink:
    made: list[FakeSink] = []  # noqa: RUF012 - a registry of instances for the test

    def __init__(self, config: dict[str, Any], **_kwargs: Any) -> None:
        self.config = config
        self.inits = 0
        self.closed = False
        FakeSink.made.append(self)

    def init(self) -> None:
        self.inits += 1

    def close(self) -> None:
        self.closed = True


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _owner(clock: Clock) -> TransactionalOwner:
    FakeSink.made.clear()
    owner = TransactionalOwner(
        {"transactional.id": "cdr-publisher.d.o.live", "transaction.timeout.ms": 10000},
        sink_factory=FakeSink,  # type: ignore[arg-type]
        monotonic=clock,
        fence_window_s=600.0,
    )
    owner.start()
    return owner


def test_a_transaction_that_outlived_its_timeout_always_gets_a_new_producer() -> None:
    """Fencings of transactions open longer than transaction.timeout.ms are timeouts: each one
    gets a fresh producer (init_transactions again), however often they come."""
    clock = Clock()
    owner = _owner(clock)
    for _ in range(5):
        owner.recover(FencedError("fenced", transaction_age_s=25.0))
        clock.now += 1

    assert len(FakeSink.made) == 6
    assert all(sink.inits == 1 for sink in FakeSink.made)
    assert all(sink.closed for sink in FakeSink.made[:-1])


def test_a_second_fencing_soon_after_the_first_means_another_owner() -> None:
    """A fencing of a young transaction takes the id back once; fenced again within the window,
    the owner gives up: another instance holds the id (the daemon exits 3)."""
    clock = Clock()
    owner = _owner(clock)
    owner.recover(FencedError("fenced", transaction_age_s=0.2))
    clock.now += 30

    with pytest.raises(FencedError, match="another instance owns this work now"):
        owner.recover(FencedError("fenced", transaction_age_s=0.1))
    assert len(FakeSink.made) == 2


def test_fencings_far_apart_are_each_taken_back() -> None:
    """Two fencings more than the window apart are each recovered from."""
    clock = Clock()
    owner = _owner(clock)
    owner.recover(FencedError("fenced", transaction_age_s=0.2))
    clock.now += 601
    owner.recover(FencedError("fenced", transaction_age_s=0.2))

    assert len(FakeSink.made) == 3


def test_a_lost_producer_is_replaced() -> None:
    """A fatal error that is not fencing only costs the producer."""
    clock = Clock()
    owner = _owner(clock)
    owner.recover(ProducerLostError("fatal"))

    assert len(FakeSink.made) == 2
    assert FakeSink.made[0].closed
