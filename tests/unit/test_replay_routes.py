"""The fleet's replay routes: a DELETE for a replay another replica owns is handed over."""

from __future__ import annotations

from typing import Any

from publisher.errors import KafkaError
from publisher.replay.request import cancel_request, is_cancel
from publisher.replay.routes import ReplayRoutes


def _routes(
    found: dict[str, Any] | None, handed: list[tuple[str, dict[str, Any]]], *, fail: bool = False
) -> ReplayRoutes:
    def hand_over(org: str, request: dict[str, Any]) -> None:
        if fail:
            raise KafkaError("broker away", retriable=True)
        handed.append((org, request))

    return ReplayRoutes(
        dict,
        deployment="dep",
        catalogue=("org-a", "org-b"),
        hand_over=hand_over,
        find=lambda _id: found,
    )


def test_a_running_replay_of_another_replica_is_cancelled_through_its_owner() -> None:
    handed: list[tuple[str, dict[str, Any]]] = []
    routes = _routes({"id": "r1", "org": "org-b", "status": "running"}, handed)

    status, body = routes._delete("/replays/r1", b"")

    assert (status, body["status"]) == (202, "cancel handed over")
    assert handed == [("org-b", cancel_request("r1", "org-b"))]
    assert is_cancel(handed[0][1])


def test_a_pending_request_is_cancelled_under_the_org_of_its_request() -> None:
    handed: list[tuple[str, dict[str, Any]]] = []
    found = {"id": "r2", "status": "pending", "request": {"id": "r2", "org": "org-a"}}

    status, _ = _routes(found, handed)._delete("/replays/r2", b"")

    assert status == 202
    assert handed == [("org-a", cancel_request("r2", "org-a"))]


def test_an_ended_unknown_or_foreign_replay_is_not_handed_over() -> None:
    handed: list[tuple[str, dict[str, Any]]] = []

    ended = _routes({"id": "r3", "org": "org-a", "status": "done"}, handed)._delete(
        "/replays/r3", b""
    )
    unknown = _routes(None, handed)._delete("/replays/r4", b"")
    foreign = _routes({"id": "r5", "org": "org-z", "status": "running"}, handed)._delete(
        "/replays/r5", b""
    )

    assert [ended[0], unknown[0], foreign[0]] == [409, 404, 404]
    assert handed == []


def test_a_cancel_that_cannot_be_handed_over_is_a_503_to_retry() -> None:
    status, body = _routes(
        {"id": "r6", "org": "org-a", "status": "running"}, [], fail=True
    )._delete("/replays/r6", b"")

    assert status == 503
    assert "broker away" in body["error"]
