"""How the sink classifies librdkafka's transactional errors (the error paths, with a fake)."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import KafkaException

from publisher.errors import FencedError, KafkaError, ProducerLostError
from publisher.kafka.sink import OutRecord, TransactionalSink


class FakeProducer:
    """Stands in for confluent_kafka.Producer: raises the given error at commit."""

    def __init__(self, commit_errors: list[RdKafkaError]) -> None:
        self.commit_errors = commit_errors
        self.produced: list[Any] = []
        self.calls: list[str] = []

    def begin_transaction(self) -> None:
        self.calls.append("begin")

    def produce(self, topic: str, **kwargs: Any) -> None:
        self.produced.append((topic, kwargs))

    def commit_transaction(self, _timeout: float) -> None:
        self.calls.append("commit")
        if self.commit_errors:
            raise KafkaException(self.commit_errors.pop(0))

    def abort_transaction(self, _timeout: float) -> None:
        self.calls.append("abort")

    def flush(self, _timeout: float) -> int:
        self.calls.append("flush")
        return 0


def _sink(
    monkeypatch: pytest.MonkeyPatch, errors: list[RdKafkaError]
) -> tuple[TransactionalSink, FakeProducer]:
    fake = FakeProducer(errors)
    monkeypatch.setattr("publisher.kafka.sink.Producer", lambda _config: fake)
    sink = TransactionalSink({"transactional.id": "t1"}, sleep=lambda _s: None)
    return sink, fake


RECORDS = [OutRecord("t", b"k", b"v")]


def test_unknown_commit_outcome_is_retried_not_assumed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A retriable commit error leads to the same commit being asked again until it lands."""
    sink, fake = _sink(monkeypatch, [RdKafkaError(RdKafkaError._TIMED_OUT, retriable=True)])

    assert sink.commit(RECORDS) == 1
    assert fake.calls == ["begin", "commit", "commit"]


def test_abortable_error_aborts_and_asks_to_go_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """An error that requires abort aborts the transaction and raises a retriable KafkaError."""
    err = RdKafkaError(RdKafkaError._MSG_TIMED_OUT, txn_requires_abort=True)
    sink, fake = _sink(monkeypatch, [err])

    with pytest.raises(KafkaError) as info:
        sink.commit(RECORDS)

    assert info.value.retriable
    assert not isinstance(info.value, ProducerLostError)
    assert fake.calls[-1] == "abort"


def test_fencing_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    """PRODUCER_FENCED means another instance owns the work: FencedError (exit 3)."""
    err = RdKafkaError(RdKafkaError.PRODUCER_FENCED, fatal=True)
    sink, _fake = _sink(monkeypatch, [err])

    with pytest.raises(FencedError, match="another instance"):
        sink.commit(RECORDS)


def test_other_fatal_error_asks_for_a_new_producer(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fatal error that is not fencing (a transaction timed out while the broker was away)
    asks for a new producer, and closing the dead one does not raise."""
    err = RdKafkaError(RdKafkaError.INVALID_TXN_STATE, fatal=True)
    sink, fake = _sink(monkeypatch, [err])

    with pytest.raises(ProducerLostError):
        sink.commit(RECORDS)
    sink.close()

    assert "abort" not in fake.calls


def test_an_abort_that_timed_out_is_finished_before_the_next_transaction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the broker away an abort times out and goes on inside librdkafka, which refuses
    begin_transaction until abort_transaction is called again: the next commit finishes it
    first (it stalled the daemon for good when the broker stayed away past the timeout)."""
    err = RdKafkaError(RdKafkaError._MSG_TIMED_OUT, txn_requires_abort=True)
    sink, fake = _sink(monkeypatch, [err])
    aborts = [RdKafkaError(RdKafkaError._TIMED_OUT, retriable=True)]

    def abort(_timeout: float) -> None:
        fake.calls.append("abort")
        if aborts:
            raise KafkaException(aborts.pop(0))

    fake.abort_transaction = abort  # type: ignore[method-assign]
    with pytest.raises(KafkaError):
        sink.commit(RECORDS)

    assert sink.commit(RECORDS) == 1
    assert fake.calls == ["begin", "commit", "abort", "abort", "begin", "commit"]


def test_an_abort_the_producer_cannot_finish_asks_for_a_new_producer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An abort resumed after a time-out that fails fatally (INVALID_TXN_STATE once the broker
    is back) raises ProducerLostError, so the caller makes a new producer instead of waiting for
    an abort that can never complete (seen: the daemon stuck for minutes)."""
    err = RdKafkaError(RdKafkaError._MSG_TIMED_OUT, txn_requires_abort=True)
    sink, fake = _sink(monkeypatch, [err])
    aborts = [
        RdKafkaError(RdKafkaError._TIMED_OUT, retriable=True),
        RdKafkaError(RdKafkaError.INVALID_TXN_STATE, fatal=True),
    ]

    def abort(_timeout: float) -> None:
        fake.calls.append("abort")
        if aborts:
            raise KafkaException(aborts.pop(0))

    fake.abort_transaction = abort  # type: ignore[method-assign]
    with pytest.raises(KafkaError):
        sink.commit(RECORDS)

    with pytest.raises(ProducerLostError):
        sink.commit(RECORDS)
