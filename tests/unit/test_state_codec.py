"""The state topic's keys and their folding into memory: deployment ids in every key, old keys
read and migrated, tombstones honoured, republish marks apart (issue 10, items 8 and 9)."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from publisher.dedup import pack_marks
from publisher.state.codec import Cursor, cursor_key, dedup_key, fold, parse_key, replay_key
from publisher.state.memory import OrgState

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
HOUR = int(NOW.timestamp() // 3600)


def _cursor(seq: int) -> bytes:
    return Cursor(NOW, None, seq, NOW).encode()


def test_keys_carry_the_deployment_and_survive_slashes_in_ids() -> None:
    """Every key names its deployment; an org id holding '/' cannot shift the other parts."""
    key = dedup_key("prod", "Y2lz/Y29", "fill.r1", HOUR, 7)

    assert key.startswith(b"dedup/prod/")
    parsed = parse_key(key)
    assert parsed is not None
    assert (parsed.deployment, parsed.org, parsed.name, parsed.hour) == (
        "prod",
        "Y2lz/Y29",
        "fill.r1",
        HOUR,
    )
    assert parse_key(cursor_key("prod", "o")) is not None


def test_two_deployments_sharing_a_topic_never_read_each_others_state() -> None:
    """Records of another deployment are ignored by fold."""
    records = [
        (cursor_key("a", "org"), _cursor(1)),
        (cursor_key("b", "org"), _cursor(9)),
        (dedup_key("b", "org", "live", HOUR, 9), pack_marks([5])),
    ]

    org = fold(records, deployment="a", orgs=None)["org"]

    assert org.cursors["live"].seq == 1
    assert org.marks == []


def test_old_layout_is_read_and_the_next_commit_migrates_it() -> None:
    """Keys written before deployment ids are read; the first commit tombstones the old cursor
    and replay keys and writes each replay under its new key."""
    progress = {"id": "r1", "org": "org", "mode": "fill-gaps", "status": "running"}
    records = [
        (b"cursor/org/live", _cursor(4)),
        (b"dedup/org/live/%d/4" % HOUR, pack_marks([11, 12])),
        (b"replay/r1", orjson.dumps(progress)),
        (b"dedup/org/replay.r1/%d/2" % HOUR, pack_marks([13])),
    ]

    folded = fold(records, deployment="prod", orgs=["org"])["org"]
    state = OrgState("prod", "org")
    state.load(folded, oldest_hour=HOUR)
    write = state.plan_write("live", [99], hour=HOUR, seq=5, oldest_hour=HOUR)

    assert folded.cursors["live"].seq == 4
    assert all(m in state.table("live") for m in (11, 12, 13))
    assert dict(write.records)[b"cursor/org/live"] is None
    assert dict(write.records)[b"replay/r1"] is None
    assert orjson.loads(dict(write.records)[replay_key("prod", "org", "r1")] or b"") == progress
    state.committed(write)
    again = state.plan_write("live", [], hour=HOUR, seq=6, oldest_hour=HOUR)
    assert b"cursor/org/live" not in dict(again.records)


def test_a_tombstone_removes_what_came_before_it() -> None:
    """A key deleted after it was written (compaction not run yet) is not revived."""
    key = dedup_key("d", "org", "live", HOUR, 1)
    records = [(key, pack_marks([1, 2])), (key, None)]

    assert fold(records, deployment="d", orgs=None) == {}


def test_fill_gaps_marks_are_the_orgs_republish_marks_are_their_own() -> None:
    """The live stream and fill-gaps jobs check one table; a republish checks only its own."""
    records = [
        (dedup_key("d", "org", "live", HOUR, 1), pack_marks([1])),
        (dedup_key("d", "org", "fill.g1", HOUR, 1), pack_marks([2])),
        (dedup_key("d", "org", "republish.r1", HOUR, 1), pack_marks([3])),
    ]
    state = OrgState("d", "org")
    state.load(fold(records, deployment="d", orgs=None)["org"], oldest_hour=HOUR)

    assert 1 in state.table("live")
    assert 2 in state.table("live")
    assert 3 not in state.table("live")
    assert 3 in state.table("republish.r1")
    assert 1 not in state.table("republish.r1")
    assert state.table("fill.other") is state.table("live")


def test_expired_shared_marks_are_tombstoned_by_the_next_commit() -> None:
    """Marks older than the horizon are forgotten and their keys deleted in the next commit."""
    old = dedup_key("d", "org", "live", HOUR - 20, 1)
    state = OrgState("d", "org")
    state.load(
        fold([(old, pack_marks([1]))], deployment="d", orgs=None)["org"], oldest_hour=HOUR - 13
    )

    write = state.plan_write("live", [2], hour=HOUR, seq=2, oldest_hour=HOUR - 13)
    state.committed(write)

    assert dict(write.records)[old] is None
    assert 1 not in state.table("live")
    assert 2 in state.table("live")


def test_a_cursor_keeps_when_its_sends_were_read() -> None:
    """The next owner bounds the requests that may have followed the record by the time its
    sends were read; a record written before that was kept reads as None (the old bound)."""
    cursor = Cursor(NOW, None, 3, NOW, sends=((1.5, 2.25), (3.0,)), sends_at=4.125)

    assert Cursor.decode(cursor.encode()) == cursor
    old = orjson.loads(cursor.encode())
    del old["sends"]["at"]
    assert Cursor.decode(orjson.dumps(old)).sends_at is None
    old["sends"]["at"] = True  # not a time
    assert Cursor.decode(orjson.dumps(old)).sends_at is None
