"""The state topic's records: their keys, their values, and folding them into memory. Pure.

Keys (UTF-8; every segment percent-encoded, so an id holding ``/`` cannot shift the others), all
under the deployment id, like the ``transactional.id``, so that two deployments may share a topic:

- ``cursor/<deployment>/<org>/<job>`` -> :class:`Cursor` JSON: where a stream job is, written in
  the same transaction as the events it covers.
- ``dedup/<deployment>/<org>/<job>/<hour>/<seq>`` -> packed 64-bit marks (:mod:`publisher.dedup`)
  of the Report IDs that transaction ``seq`` of ``job`` published, made in ``hour`` (hours since
  the epoch). Expired hours are deleted with tombstones, so compaction keeps the topic bounded.
- ``replay/<deployment>/<org>/<id>`` -> JSON progress of a replay (or a gap fill).
- ``request/<deployment>/<org>/<id>`` -> a replay request (the ``POST /replays`` body) that a
  replica not owning the org's slot handed over; deleted when the replay ends.
- ``status/<deployment>/<org>`` -> JSON ``{"problem", "since"}`` while the org's live job fails
  for a reason of its own (token revoked, role missing); deleted when it works again.

Jobs: ``live`` (the stream), ``fill.<id>`` (a fill-gaps replay or gap fill) and
``republish.<id>``. The marks of ``live`` and ``fill.*`` are one table per org (one Report ID
is published once, whichever job fetched it); a republish publishes on purpose what was already
published, so its marks only guard its own resumption and are kept apart.

Keys written before deployment ids existed (``cursor/<org>/<job>``,
``dedup/<org>/<job>/<hour>/<seq>``, ``replay/<id>``) are still read, as the same deployment's;
:attr:`OrgRecords.legacy_keys` names them so that the next commit deletes them.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from urllib.parse import quote, unquote

import orjson

from publisher.dedup import unpack_marks
from publisher.webex.record import format_timestamp, parse_timestamp

LIVE_JOB = "live"
FILL_PREFIX = "fill."
REPUBLISH_PREFIX = "republish."
_LEGACY_REPLAY_PREFIX = "replay."


def _segment(text: str) -> str:
    return quote(text, safe="")


def cursor_key(deployment: str, org: str, job: str = LIVE_JOB) -> bytes:
    return f"cursor/{_segment(deployment)}/{_segment(org)}/{_segment(job)}".encode()


def dedup_key(deployment: str, org: str, job: str, hour: int, seq: int) -> bytes:
    return f"dedup/{_segment(deployment)}/{_segment(org)}/{_segment(job)}/{hour}/{seq}".encode()


def replay_key(deployment: str, org: str, replay_id: str) -> bytes:
    return f"replay/{_segment(deployment)}/{_segment(org)}/{_segment(replay_id)}".encode()


def request_key(deployment: str, org: str, replay_id: str) -> bytes:
    return f"request/{_segment(deployment)}/{_segment(org)}/{_segment(replay_id)}".encode()


def status_key(deployment: str, org: str) -> bytes:
    return f"status/{_segment(deployment)}/{_segment(org)}".encode()


def shares_marks(job: str) -> bool:
    """True for the jobs whose marks are the org's one dedup table (all but republishes)."""
    return not job.startswith(REPUBLISH_PREFIX)


@dataclass(frozen=True, slots=True)
class Cursor:
    position: datetime
    region_base_url: str | None
    seq: int
    committed_at: datetime
    sends: tuple[tuple[float, ...], tuple[float, ...]] = ((), ())
    """Unix times of the token's last initial and page requests when this was written, so a
    restarted process does not spend the same minute's rate budget again."""
    sends_at: float | None = None
    """The Unix time ``sends`` were read from the limiter (None in records written before it
    was kept): the next owner bounds the requests that may have followed by it."""

    def committed(self, seq: int, now: datetime) -> Cursor:
        return replace(self, seq=seq, committed_at=now)

    def encode(self) -> bytes:
        data: dict[str, object] = {
            "cursor": format_timestamp(self.position),
            "region_base_url": self.region_base_url,
            "seq": self.seq,
            "committed_at": format_timestamp(self.committed_at),
        }
        if any(self.sends) or self.sends_at is not None:
            sends: dict[str, object] = {"initial": list(self.sends[0]), "page": list(self.sends[1])}
            if self.sends_at is not None:
                sends["at"] = self.sends_at
            data["sends"] = sends
        return orjson.dumps(data)

    @classmethod
    def decode(cls, value: bytes) -> Cursor:
        data = orjson.loads(value)
        sends = data.get("sends") if isinstance(data.get("sends"), dict) else {}
        return cls(
            position=parse_timestamp(data["cursor"]),
            region_base_url=data.get("region_base_url"),
            seq=int(data["seq"]),
            committed_at=parse_timestamp(data["committed_at"]),
            sends=(_times(sends.get("initial")), _times(sends.get("page"))),
            sends_at=_time(sends.get("at")),
        )


def _time(value: object) -> float | None:
    # bool is an int: a hand-edited true is no time.
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _times(value: object) -> tuple[float, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(float(t) for t in value if isinstance(t, int | float))


@dataclass(frozen=True, slots=True)
class MarkRecord:
    """One ``dedup/...`` record: the marks one transaction of ``job`` made in ``hour``."""

    key: bytes
    job: str
    hour: int
    marks: array[int]


@dataclass
class OrgRecords:
    """What the state topic holds for one (deployment, org), latest value per key."""

    cursors: dict[str, Cursor] = field(default_factory=dict)
    replays: dict[str, dict[str, Any]] = field(default_factory=dict)
    marks: list[MarkRecord] = field(default_factory=list)
    requests: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Replay requests handed over by other replicas, not ended yet (``request/...``)."""
    status: dict[str, Any] | None = None
    """The org's problem while its live job fails on its own account (``status/...``)."""
    legacy_keys: list[bytes] = field(default_factory=list)
    """Cursor and replay keys in the old layout that were read: the org's next commit deletes
    them, and in the same transaction writes the replays' records under their new keys
    (:attr:`migrated`; the cursor is rewritten by that commit anyway)."""
    migrated: dict[bytes, bytes] = field(default_factory=dict)
    records_read: int = 0


@dataclass(frozen=True, slots=True)
class _Key:
    kind: str  # cursor | dedup | replay
    deployment: str | None  # None: the legacy layout
    org: str | None
    name: str  # job, or replay id
    hour: int = 0


def parse_key(key: bytes) -> _Key | None:
    """What a state key names, or None for a key that is not ours (or unreadable)."""
    try:
        parts = [unquote(p) for p in key.decode().split("/")]
    except UnicodeDecodeError:
        return None
    kind, count = parts[0], len(parts)
    try:
        if kind == "cursor" and count == 4:
            return _Key("cursor", parts[1], parts[2], parts[3])
        if kind == "cursor" and count == 3:
            return _Key("cursor", None, parts[1], parts[2])
        if kind == "dedup" and count == 6:
            return _Key("dedup", parts[1], parts[2], parts[3], int(parts[4]))
        if kind == "dedup" and count == 5:
            return _Key("dedup", None, parts[1], parts[2], int(parts[3]))
        if kind == "replay" and count == 4:
            return _Key("replay", parts[1], parts[2], parts[3])
        if kind == "replay" and count == 2:
            return _Key("replay", None, None, parts[1])
        if kind == "status" and count == 3:
            return _Key("status", parts[1], parts[2], "")
        if kind == "request" and count == 4:
            return _Key("request", parts[1], parts[2], parts[3])
    except ValueError:
        return None
    return None


def fold(
    records: Iterable[tuple[bytes, bytes | None]], *, deployment: str, orgs: Iterable[str] | None
) -> dict[str, OrgRecords]:
    """Latest state per org of ``deployment`` from state-topic records in offset order.

    ``orgs`` limits the result to those orgs (None: every org found). A tombstone removes what
    came before it under its key, so data that compaction has not yet removed is never revived.
    Unreadable values are skipped rather than stopping a restore.
    """
    latest: dict[bytes, tuple[_Key, bytes]] = {}
    for key, value in records:
        parsed = parse_key(key)
        if parsed is None or parsed.deployment not in (None, deployment):
            continue
        if value is None:
            latest.pop(key, None)
        else:
            latest[key] = (parsed, value)
    folder = _Folder(deployment, None if orgs is None else set(orgs))
    # Replays first: the mode of an old-layout replay decides whose table its marks join.
    for kind in ("replay", "cursor", "dedup", "status", "request"):
        for key, (parsed, value) in latest.items():
            if parsed.kind == kind:
                folder.add(kind, key, parsed, value)
    return folder.out


class _Folder:
    def __init__(self, deployment: str, wanted: set[str] | None) -> None:
        self.deployment = deployment
        self.wanted = wanted
        self.out: dict[str, OrgRecords] = {}
        self.legacy_modes: dict[str, str] = {}

    def _target(self, org: object) -> OrgRecords | None:
        if not isinstance(org, str) or (self.wanted is not None and org not in self.wanted):
            return None
        target = self.out.setdefault(org, OrgRecords())
        target.records_read += 1
        return target

    def add(self, kind: str, key: bytes, parsed: _Key, value: bytes) -> None:
        if kind == "replay":
            self._replay(key, parsed, value)
        elif kind == "status":
            target = self._target(parsed.org)
            if target is not None:
                target.status = _json_object(value)
        elif kind == "request":
            target = self._target(parsed.org)
            request = _json_object(value)
            if target is not None and request is not None:
                target.requests[parsed.name] = request
        elif kind == "cursor":
            self._cursor(key, parsed, value)
        else:
            self._marks(key, parsed, value)

    def _replay(self, key: bytes, parsed: _Key, value: bytes) -> None:
        progress = _json_object(value)
        if progress is None:
            return
        target = self._target(parsed.org if parsed.org is not None else progress.get("org"))
        if target is None:
            return
        if parsed.deployment is not None:
            target.replays[parsed.name] = progress
            target.migrated.pop(key, None)
            return
        target.legacy_keys.append(key)
        self.legacy_modes[parsed.name] = str(progress.get("mode"))
        # A record of the same replay in the new layout wins over the old one.
        if parsed.name not in target.replays:
            target.replays[parsed.name] = progress
            org = str(progress.get("org"))
            target.migrated[replay_key(self.deployment, org, parsed.name)] = value

    def _cursor(self, key: bytes, parsed: _Key, value: bytes) -> None:
        target = self._target(parsed.org)
        if target is None:
            return
        try:
            cursor = Cursor.decode(value)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return
        if parsed.deployment is not None:
            target.cursors[parsed.name] = cursor
            return
        target.legacy_keys.append(key)
        if parsed.name not in target.cursors:
            target.cursors[parsed.name] = cursor

    def _marks(self, key: bytes, parsed: _Key, value: bytes) -> None:
        target = self._target(parsed.org)
        if target is None:
            return
        job = parsed.name
        if parsed.deployment is None and job.startswith(_LEGACY_REPLAY_PREFIX):
            # Old replays wrote their marks under ``replay.<id>`` and deleted them when done:
            # what is left belongs to an unfinished replay, whose progress says its mode.
            replay_id = job[len(_LEGACY_REPLAY_PREFIX) :]
            republish = self.legacy_modes.get(replay_id) == "republish"
            job = (REPUBLISH_PREFIX if republish else FILL_PREFIX) + replay_id
        # Legacy mark keys are not rewritten: they expire and are tombstoned like the others.
        target.marks.append(MarkRecord(key, job, parsed.hour, unpack_marks(value)))


def _json_object(value: bytes) -> dict[str, Any] | None:
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None
