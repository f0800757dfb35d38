"""Replicas of one deployment share its slots through Kafka's consumer-group protocol (issue 12):
a replica killed, one joining, one stopped; a zombie paused past its session timeout; a static
member restarted within it. Real broker, registry, daemon processes and the many-org simulator."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from publisher.commands.simulate import write_orgs
from publisher.events import unframe
from publisher.kafka.partitioning import slot_of
from publisher.replay.request import DEFAULT_WIDEN
from publisher.simulator.faults import Faults
from publisher.simulator.server import Simulator, SimulatorConfig
from publisher.state.codec import Cursor, cursor_key
from tests.integration.daemon_helpers import ADMIN_AUTH, DaemonEnv, stop
from tests.integration.kafka_helpers import read_all

# Webex's 1 + 10 a minute per token, scaled by 30 so that the moves fit CI's time (see test_fleet).
INITIAL_PER_MINUTE = 30
PAGES_PER_MINUTE = 300
HISTORY_HOURS = 2.0
SESSION_S = 6


@dataclass
class Replica:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def assignments(self) -> list[list[int]]:
        """The slots each 'slots assigned' line of its log names, in order."""
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            if '"msg":"slots assigned"' in line:
                found.append(json.loads(line)["slots"])
        return found


def _fleet(orgs: int, *, seed: int, faults: Faults) -> Simulator:
    return Simulator(
        SimulatorConfig(
            seed=seed,
            orgs=orgs,
            calls_per_minute=0.4,
            history_hours=HISTORY_HOURS,
            initial_per_minute=INITIAL_PER_MINUTE,
            pages_per_minute=PAGES_PER_MINUTE,
            faults=faults,
        )
    )


def _env(sim: Simulator, bootstrap: str, registry: str, prefix: str, config: Path) -> DaemonEnv:
    return DaemonEnv(
        bootstrap,
        registry,
        sim.base_url,
        prefix=prefix,
        config=config,
        extra={
            # Exactly the budget the simulator enforces: the limiter counts each request from
            # its reply, so scheduling delays of three replicas on two cores cannot put one
            # request more in a minute (counted from the send, a CI run saw 31 of 30).
            "CDR_PUBLISHER_WEBEX_INITIAL_REQUESTS_PER_MINUTE": str(INITIAL_PER_MINUTE),
            "CDR_PUBLISHER_WEBEX_PAGE_REQUESTS_PER_MINUTE": str(PAGES_PER_MINUTE),
            "CDR_PUBLISHER_GROUP_SESSION_TIMEOUT_SECONDS": str(SESSION_S),
            "CDR_PUBLISHER_POLL_INTERVAL_SECONDS": "2",
        },
    )


def _start(env: DaemonEnv, name: str, tmp_path: Path, *, run: int = 1) -> Replica:
    """Replica ``name`` (its group.instance.id), logging to ``<name>.<run>.log``."""
    log = tmp_path / f"{name}.{run}.log"
    env.extra["CDR_PUBLISHER_GROUP_INSTANCE_ID"] = name
    return Replica(name, env.start(log), log)


def _cursors(env: DaemonEnv, org_ids: list[str]) -> dict[str, Cursor]:
    keys = {cursor_key(env.prefix, org): org for org in org_ids}
    found: dict[str, Cursor] = {}
    for msg in read_all(env.bootstrap_servers, env.state_topic):
        org = keys.get(msg.key() or b"")
        if org is not None and msg.value():
            found[org] = Cursor.decode(msg.value())
    return found


def _caught_up(
    env: DaemonEnv, org_ids: list[str], replicas: list[Replica], *, since: float, timeout: float
) -> dict[str, Cursor]:
    target = (datetime.now(UTC) - timedelta(minutes=2)).timestamp()
    deadline = time.monotonic() + timeout
    while True:
        for replica in replicas:
            assert replica.proc.poll() is None, replica.log.read_text()[-3000:]
        cursors = _cursors(env, org_ids)
        behind = [
            org
            for org in org_ids
            if org not in cursors
            or cursors[org].position.timestamp() < target
            or cursors[org].committed_at.timestamp() < since
        ]
        if not behind:
            return cursors
        assert time.monotonic() < deadline, f"not caught up: {behind}"
        time.sleep(1.0)


def _assert_every_record_once(env: DaemonEnv, sim: Simulator, cursors: dict[str, Cursor]) -> None:
    events: dict[str, Counter[str]] = defaultdict(Counter)
    for msg in read_all(env.bootstrap_servers, env.events_topic):
        event = unframe(msg.value())[1]
        events[event["org_id"]][event["event_id"]] += 1
    malformed = set(sim.malformed_report_ids())
    for n, org in enumerate(sim.org_ids, start=1):
        expected = sim.expected_report_ids(
            "stream",
            cursors[org].position - timedelta(hours=HISTORY_HOURS + 1),
            cursors[org].position,
            org=n,
        )
        published = events.get(org, Counter())
        twice = [rid for rid, count in published.items() if count > 1]
        assert not twice, f"org {org}: {len(twice)} records published twice"
        missing = (expected - malformed) - set(published)
        assert not missing, f"org {org}: {len(missing)} of {len(expected)} records missing"


def _assert_within_budget(sim: Simulator) -> None:
    """No token went over its budget: no org was polled by two replicas at once."""
    for stats in sim.token_stats():
        assert stats["max_initial_60s"] <= INITIAL_PER_MINUTE, stats
        assert stats["max_page_60s"] <= PAGES_PER_MINUTE, stats
        assert stats["refused_for_rate"] == 0, stats


_REPLICA_LINE = re.compile(r"^  (\S+) at \S+: slots ([\d,]+|-) \((\d+) orgs\)$", re.MULTILINE)


def _state_replicas(env: DaemonEnv, *, slots: int) -> dict[str, tuple[list[int], int]]:
    """What `cdr-publisher state` says of the replicas, name -> (slots, orgs), once the group
    has settled with all ``slots`` owned (a cooperative rebalance moves slots in two rounds)."""
    deadline = time.monotonic() + 60
    while True:
        proc = subprocess.run(
            env.command("state"),
            check=False,
            env=env.environ(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        found: dict[str, tuple[list[int], int]] = {}
        for match in _REPLICA_LINE.finditer(proc.stdout):
            owned = [] if match[2] == "-" else [int(n) for n in match[2].split(",")]
            found[match[1]] = (owned, int(match[3]))
        if sum(len(owned) for owned, _orgs in found.values()) == slots:
            return found
        assert time.monotonic() < deadline, proc.stdout
        time.sleep(1.0)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def fleet() -> Iterator[Simulator]:
    faults = Faults(error_5xx=0.05, duplicates=0.1, casing=0.2, unknown_keys=0.1)
    with _fleet(30, seed=61, faults=faults) as sim:
        yield sim


def test_three_replicas_share_thirty_orgs_through_kills_joins_and_stops(
    fleet: Simulator, bootstrap_servers: str, registry_url: str, unique_name: str, tmp_path: Path
) -> None:
    """Three replicas over 30 orgs with faults and duplicates: one is SIGKILLed, a new one
    joins, one is stopped with SIGTERM; every record of every org is published exactly once and
    no token ever went over its budget (no org was polled by two replicas at once)."""
    sim = fleet
    env = _env(sim, bootstrap_servers, registry_url, unique_name, write_orgs(sim, tmp_path / "o"))
    replicas = [_start(env, name, tmp_path) for name in ("r1", "r2", "r3")]
    try:
        _caught_up(env, sim.org_ids, replicas, since=0, timeout=240)
        owned = {r.name: r.assignments() for r in replicas}
        assert sum(len(a) for a in owned.values()) >= 3, owned
        killed = replicas.pop(0)
        stop(killed.proc, signal.SIGKILL)
        moved = time.time()
        replicas.append(_start(env, "r4", tmp_path))
        _caught_up(env, sim.org_ids, replicas, since=moved, timeout=240)
        leaving = replicas.pop(0)
        assert stop(leaving.proc, timeout=30) == 0
        left = time.time()
        cursors = _caught_up(env, sim.org_ids, replicas, since=left, timeout=240)
    finally:
        for replica in replicas:
            if replica.proc.poll() is None:
                stop(replica.proc, timeout=30)
    _assert_every_record_once(env, sim, cursors)
    _assert_within_budget(sim)
    # The slots of the killed and the stopped replica went to the others.
    assert any(r.assignments() for r in replicas)


def test_a_zombie_paused_past_its_session_timeout_publishes_nothing_and_rejoins(
    bootstrap_servers: str, registry_url: str, unique_name: str, tmp_path: Path
) -> None:
    """A replica paused with SIGSTOP past its session timeout loses its slots to the other;
    resumed with SIGCONT, it learns it lost them (its producers are fenced), publishes nothing
    for them, rejoins the group cleanly, and the topic holds every record once."""
    with _fleet(12, seed=62, faults=Faults(duplicates=0.1)) as sim:
        env = _env(
            sim, bootstrap_servers, registry_url, unique_name, write_orgs(sim, tmp_path / "o")
        )
        zombie = _start(env, "zombie", tmp_path)
        other = _start(env, "other", tmp_path)
        try:
            _caught_up(env, sim.org_ids, [zombie, other], since=0, timeout=240)
            before = len(other.assignments())
            zombie.proc.send_signal(signal.SIGSTOP)
            time.sleep(SESSION_S * 2 + 5)
            # The other replica took the zombie's slots meanwhile and publishes them.
            assert len(other.assignments()) > before, other.log.read_text()[-3000:]
            paused = time.time()
            _caught_up(env, sim.org_ids, [other], since=paused, timeout=120)
            zombie.proc.send_signal(signal.SIGCONT)
            time.sleep(SESSION_S * 2)
            resumed = time.time()
            cursors = _caught_up(env, sim.org_ids, [zombie, other], since=resumed, timeout=120)
        finally:
            zombie.proc.send_signal(signal.SIGCONT)
            for replica in (zombie, other):
                if replica.proc.poll() is None:
                    stop(replica.proc, timeout=30)
        text = zombie.log.read_text()
        assert '"msg":"slots lost"' in text or '"msg":"slots revoked"' in text, text[-3000:]
        assert "Traceback" not in text
        assert zombie.proc.returncode == 0
        _assert_every_record_once(env, sim, cursors)


def test_a_static_member_restarted_within_its_session_timeout_keeps_its_slots(
    bootstrap_servers: str, registry_url: str, unique_name: str, tmp_path: Path
) -> None:
    """With group.instance.id, a replica stopped and started again inside the session timeout
    gets the same slots back, and the other replica's assignment does not move."""
    with _fleet(12, seed=63, faults=Faults()) as sim:
        env = _env(
            sim, bootstrap_servers, registry_url, unique_name, write_orgs(sim, tmp_path / "o")
        )
        first = _start(env, "first", tmp_path)
        second = _start(env, "second", tmp_path)
        replicas = [first, second]
        try:
            _caught_up(env, sim.org_ids, replicas, since=0, timeout=240)
            time.sleep(SESSION_S)
            # The group's own view (cooperative moves come in rounds, so log lines of additions
            # alone do not say what a member holds now).
            shown = _state_replicas(env, slots=12)
            before_second = second.assignments()
            assert stop(first.proc, timeout=30) == 0
            again = _start(env, "first", tmp_path, run=2)
            replicas = [again, second]
            restarted = time.time()
            _caught_up(env, sim.org_ids, replicas, since=restarted, timeout=120)
            after = _state_replicas(env, slots=12)
        finally:
            for replica in replicas:
                if replica.proc.poll() is None:
                    stop(replica.proc, timeout=30)
        # `state` shows each replica (by its group.instance.id) with the slots it owns, as the
        # group assigned them, together all 12 slots and all 12 orgs.
        assert set(shown) == {"first", "second"}, shown
        assert shown["first"][0], shown
        assert shown["second"][0], shown
        assert sorted(shown["first"][0] + shown["second"][0]) == list(range(12))
        assert shown["first"][1] + shown["second"][1] == 12
        # The restarted member got its own slots back, and nothing moved on the other.
        assert after["first"][0] == shown["first"][0], (shown, after)
        assert after["second"][0] == shown["second"][0], (shown, after)
        assert second.assignments() == before_second, "the other replica's slots moved"


def test_a_replay_posted_to_the_replica_without_the_orgs_slot_runs_on_its_owner(
    bootstrap_servers: str, registry_url: str, unique_name: str, tmp_path: Path
) -> None:
    """POST /replays for an org whose slot the other replica owns: the request is handed over
    through the slot's state partition (no replica calls another), the owner runs it, and its
    progress is readable from the replica that took the request, to the end; and a DELETE that
    reaches that replica cancels a replay on its owner the same way."""
    with _fleet(6, seed=64, faults=Faults()) as sim:
        env = _env(
            sim, bootstrap_servers, registry_url, unique_name, write_orgs(sim, tmp_path / "o")
        )
        ports = {"near": _free_port(), "far": _free_port()}
        replicas = []
        for name, port in ports.items():
            env.extra["CDR_PUBLISHER_HTTP_PORT"] = str(port)
            replicas.append(_start(env, name, tmp_path))
        try:
            _caught_up(env, sim.org_ids, replicas, since=0, timeout=240)
            shown = _state_replicas(env, slots=12)
            org_n, org = next(
                (n, o)
                for n, o in enumerate(sim.org_ids, start=1)
                if slot_of(o, 12) in shown["far"][0]
            )
            now = datetime.now(UTC)
            start, end = now - timedelta(hours=1, minutes=30), now - timedelta(minutes=30)
            target = f"{env.events_topic}.replay.handover"
            body = {
                "id": "handover",
                "org": org,
                "start": start.isoformat(),
                "end": end.isoformat(),
                "mode": "republish",
                "topic": target,
            }
            near = f"http://127.0.0.1:{ports['near']}"
            posted = requests.post(f"{near}/replays", json=body, headers=ADMIN_AUTH, timeout=10)
            assert posted.status_code == 202, posted.text
            assert posted.json()["status"] == "handed over", posted.json()
            got = _wait_for_status(near, "handover", "done", timeout=180)
            _cancel_through_the_other_replica(near, body, now)
        finally:
            for replica in replicas:
                if replica.proc.poll() is None:
                    stop(replica.proc, timeout=30)
        far_log = replicas[1].log.read_text()
        near_log = replicas[0].log.read_text()
        assert "handover" in far_log, "the owner did not run the replay"
        assert "replay cancelled (handed over)" in far_log
        assert '"replay_id":"handover"' not in near_log
        # What the feed held when the replay was posted: a record of the span inserted later
        # (late records arrive for hours) may come after the replay read its window.
        expected = sim.expected_report_ids(
            "feed", start - DEFAULT_WIDEN, end, org=org_n, visible_at=now
        )
        republished: Counter[str] = Counter()
        for msg in read_all(env.bootstrap_servers, target):
            event = unframe(msg.value())[1]
            assert event["org_id"] == org
            republished[event["event_id"]] += 1
        assert expected, "the span held no record of the org"
        assert set(republished) == expected
        assert max(republished.values()) == 1
        assert got.json()["published"] == len(expected)


def _wait_for_status(
    base: str, replay_id: str, status: str, *, timeout: float
) -> requests.Response:
    deadline = time.monotonic() + timeout
    while True:
        got = requests.get(f"{base}/replays/{replay_id}", headers=ADMIN_AUTH, timeout=10)
        if got.status_code == 200 and got.json().get("status") == status:
            return got
        assert time.monotonic() < deadline, got.text
        time.sleep(1.0)


def _cancel_through_the_other_replica(near: str, body: dict[str, Any], now: datetime) -> None:
    """A DELETE reaching the replica without the slot travels to the owner too: a long replay
    (40 windows at 30 initial requests a minute) is cancelled there."""
    long_span = {
        **body,
        "id": "tocancel",
        "start": (now - timedelta(days=20)).isoformat(),
        "end": (now - timedelta(hours=1)).isoformat(),
    }
    posted = requests.post(f"{near}/replays", json=long_span, headers=ADMIN_AUTH, timeout=10)
    assert posted.status_code == 202, posted.text
    deadline = time.monotonic() + 60
    while True:
        deleted = requests.delete(f"{near}/replays/tocancel", headers=ADMIN_AUTH, timeout=10)
        # 404 until the owner has committed the replay's first progress.
        if deleted.status_code != 404 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert deleted.status_code == 202, deleted.text
    assert deleted.json()["status"] == "cancel handed over", deleted.json()
    got = _wait_for_status(near, "tocancel", "cancelled", timeout=60)
    assert got.json()["windows_done"] < got.json()["windows_total"], got.json()
