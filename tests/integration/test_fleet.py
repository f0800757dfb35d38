"""Many orgs in one deployment (issue 11): one process, an [[orgs]] catalogue of token files,
some orgs in another region, killed and restarted; one org's token revoked; real broker,
registry and daemon processes against the many-org simulator."""

from __future__ import annotations

import random
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from publisher.commands.simulate import write_orgs
from publisher.events import unframe
from publisher.simulator.faults import Faults
from publisher.simulator.server import Simulator, SimulatorConfig
from publisher.state.codec import Cursor, cursor_key
from tests.integration.daemon_helpers import DaemonEnv, stop
from tests.integration.kafka_helpers import read_all

# Webex allows 1 initial + 10 page requests a minute per token; the fleet test runs the same
# sliding-window budget scaled by 30 (30 + 300) so that ten restarts fit in CI's time, and checks
# with the simulator's own count that no token ever went over it.
INITIAL_PER_MINUTE = 30
PAGES_PER_MINUTE = 300
HISTORY_HOURS = 2.0


def _fleet(orgs: int, regional: int, *, seed: int, faults: Faults) -> Simulator:
    return Simulator(
        SimulatorConfig(
            seed=seed,
            orgs=orgs,
            regional_orgs=regional,
            calls_per_minute=0.6,
            history_hours=HISTORY_HOURS,
            initial_per_minute=INITIAL_PER_MINUTE,
            pages_per_minute=PAGES_PER_MINUTE,
            faults=faults,
        )
    )


def _env(
    sim: Simulator, bootstrap: str, registry: str, prefix: str, config: Path, **extra: str
) -> DaemonEnv:
    return DaemonEnv(
        bootstrap,
        registry,
        sim.base_url,
        prefix=prefix,
        config=config,
        extra={
            "CDR_PUBLISHER_WEBEX_INITIAL_REQUESTS_PER_MINUTE": str(INITIAL_PER_MINUTE),
            "CDR_PUBLISHER_WEBEX_PAGE_REQUESTS_PER_MINUTE": str(PAGES_PER_MINUTE),
            "CDR_PUBLISHER_ORG_BACKOFF_MAX_SECONDS": "4",
            **extra,
        },
    )


def _cursors(env: DaemonEnv, org_ids: list[str]) -> dict[str, Cursor]:
    keys = {cursor_key(env.prefix, org): org for org in org_ids}
    found: dict[str, Cursor] = {}
    for msg in read_all(env.bootstrap_servers, env.state_topic):
        org = keys.get(msg.key() or b"")
        if org is not None and msg.value():
            found[org] = Cursor.decode(msg.value())
    return found


def _wait_all_caught_up(
    env: DaemonEnv, org_ids: list[str], proc: Any, log: Path, *, since: float, timeout: float
) -> dict[str, Cursor]:
    target = (datetime.now(UTC) - timedelta(minutes=2)).timestamp()
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, log.read_text()[-4000:]
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
        assert time.monotonic() < deadline, (
            f"orgs not caught up: {behind}\n{log.read_text()[-3000:]}"
        )
        time.sleep(1.0)


def _events_by_org(env: DaemonEnv) -> dict[str, Counter[str]]:
    out: dict[str, Counter[str]] = defaultdict(Counter)
    for msg in read_all(env.bootstrap_servers, env.events_topic):
        event = unframe(msg.value())[1]
        out[event["org_id"]][event["event_id"]] += 1
    return out


@pytest.fixture
def fleet() -> Iterator[Simulator]:
    faults = Faults(error_5xx=0.1, duplicates=0.1, casing=0.2, unknown_keys=0.1, slow=0.2)
    with _fleet(20, 2, seed=41, faults=faults) as sim:
        yield sim


def test_twenty_orgs_killed_ten_times_publish_every_record_once_under_their_org(
    fleet: Simulator, bootstrap_servers: str, registry_url: str, unique_name: str, tmp_path: Path
) -> None:
    """One process, 20 orgs with their own token files (two in another region, found by 451),
    SIGKILLed at random moments ten times while publishing through 5xx, slow replies and
    duplicates: afterwards every record of every org is in the events topic exactly once with
    its org_id, no token appears in the log, and no token ever went over its rate budget."""
    sim = fleet
    catalogue = write_orgs(sim, tmp_path / "orgs")
    env = _env(sim, bootstrap_servers, registry_url, unique_name, catalogue)
    org_ids = sim.org_ids
    log = tmp_path / "daemon.log"
    rng = random.Random(11)
    for _ in range(10):
        proc = env.start(log)
        time.sleep(rng.uniform(2.0, 7.0))
        assert proc.poll() is None, log.read_text()[-3000:]
        stop(proc, signal.SIGKILL)
    started = time.time()
    proc = env.start(log)
    try:
        cursors = _wait_all_caught_up(env, org_ids, proc, log, since=started, timeout=240)
    finally:
        assert stop(proc, timeout=30) == 0

    events = _events_by_org(env)
    malformed = set(sim.malformed_report_ids())
    assert set(events) <= set(org_ids)
    for n, org in enumerate(org_ids, start=1):
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
    text = log.read_text()
    for info in sim.orgs_info():
        assert info["token"] not in text, f"org {info['n']}'s token is in the log"
    for stats in sim.token_stats():
        assert stats["max_initial_60s"] <= INITIAL_PER_MINUTE, stats
        assert stats["max_page_60s"] <= PAGES_PER_MINUTE, stats
        assert stats["refused_for_rate"] == 0, stats
    regional = [info for info in sim.orgs_info() if info["home_host"]]
    assert len(regional) == 2
    assert all(cursors[info["org_id"]].region_base_url for info in regional)
    assert sim.stats()["451"] >= 2


def test_a_revoked_token_stops_only_its_org_until_the_file_is_replaced(
    bootstrap_servers: str, registry_url: str, unique_name: str, tmp_path: Path
) -> None:
    """One org's token is revoked mid-run: the others publish on, /readyz and `state` name that
    org, and when its token file is replaced it catches up with nothing lost."""
    with _fleet(4, 0, seed=42, faults=Faults()) as sim:
        catalogue = write_orgs(sim, tmp_path / "orgs")
        port = _free_port()
        env = _env(
            sim,
            bootstrap_servers,
            registry_url,
            unique_name,
            catalogue,
            CDR_PUBLISHER_HTTP_PORT=str(port),
        )
        org_ids = sim.org_ids
        victim, victim_n = org_ids[1], 2
        log = tmp_path / "daemon.log"
        proc = env.start(log)
        try:
            _wait_all_caught_up(env, org_ids, proc, log, since=0, timeout=120)
            new_token = sim.revoke(victim_n)["token"]
            deadline = time.monotonic() + 60
            while True:
                reply = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
                ready = reply.json()
                named = [f for f in ready["orgs_failing"] if f.startswith(f"org {victim}: ")]
                if named:
                    break
                assert time.monotonic() < deadline, ready
                time.sleep(0.5)
            # Only that org is named, and the replica stays ready for the others.
            assert not [f for f in ready["orgs_failing"] if not f.startswith(f"org {victim}: ")]
            assert reply.status_code == 200, ready
            assert ready["orgs"][victim]["problem"], ready
            state = _state(env)
            assert f"{victim}  failing since" in state, state
            # The others go on meanwhile.
            others = [org for org in org_ids if org != victim]
            _wait_all_caught_up(env, others, proc, log, since=time.time(), timeout=60)
            (tmp_path / "orgs" / f"org-{victim_n}.token").write_text(new_token + "\n")
            _wait_all_caught_up(env, org_ids, proc, log, since=time.time(), timeout=120)
            after = _state(env)
        finally:
            assert stop(proc, timeout=30) == 0
        assert f"{victim}  failing since" not in after, after
        events = _events_by_org(env)
        cursors = _cursors(env, org_ids)
        for n, org in enumerate(org_ids, start=1):
            expected = sim.expected_report_ids(
                "stream",
                cursors[org].position - timedelta(hours=HISTORY_HOURS + 1),
                cursors[org].position,
                org=n,
            )
            published = events.get(org, Counter())
            assert max(published.values(), default=1) == 1
            assert expected <= set(published), f"org {org}: records missing"


def _state(env: DaemonEnv) -> str:
    import subprocess

    return subprocess.run(
        env.command("state"),
        env=env.environ(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_service_app_orgs_mint_refresh_and_keep_rotated_tokens_across_a_restart(
    bootstrap_servers: str, registry_url: str, unique_name: str, tmp_path: Path
) -> None:
    """Three orgs reached through one Service App: each org's token pair is minted once, its
    access token refreshed before it expires (20 s here), the rotated refresh token kept 0600 in
    the store, and after a restart the stored tokens are used, not a second mint; every record
    is published once."""
    config = SimulatorConfig(
        seed=43,
        orgs=3,
        calls_per_minute=0.6,
        history_hours=HISTORY_HOURS,
        initial_per_minute=INITIAL_PER_MINUTE,
        pages_per_minute=PAGES_PER_MINUTE,
        service_app_token_lifetime_s=20.0,
    )
    with Simulator(config) as sim:
        secret, apps_token = tmp_path / "app-secret", tmp_path / "apps-token"
        secret.write_text(config.service_app_client_secret)
        apps_token.write_text(config.applications_token or "")
        store = tmp_path / "store"
        lines = [
            "[service_app]",
            f'application_id = "{config.service_app_id}"',
            f'client_id = "{config.service_app_client_id}"',
            f'client_secret_file = "{secret}"',
            f'token_store_dir = "{store}"',
            f'applications_token_file = "{apps_token}"',
            f'api_url = "{sim.base_url}"',
        ]
        for org in sim.org_ids:
            lines += ["", "[[orgs]]", f'id = "{org}"', "service_app = true"]
        catalogue = tmp_path / "orgs.toml"
        catalogue.write_text("\n".join(lines) + "\n")
        env = _env(sim, bootstrap_servers, registry_url, unique_name, catalogue)
        log = tmp_path / "daemon.log"
        proc = env.start(log)
        try:
            _wait_all_caught_up(env, sim.org_ids, proc, log, since=0, timeout=120)
            issued = sim.stats()["tokens_issued"]
            time.sleep(25)  # past the access tokens' lifetime: each is refreshed in time
            _wait_all_caught_up(env, sim.org_ids, proc, log, since=time.time(), timeout=60)
            assert sim.stats()["tokens_issued"] >= issued + 3
        finally:
            assert stop(proc, timeout=30) == 0
        assert sim.stats()["service_app_mints"] == 3
        stored = sorted(store.iterdir())
        assert len(stored) == 3
        assert all(path.stat().st_mode & 0o777 == 0o600 for path in stored)
        before = {path.name: path.read_text() for path in stored}

        restarted = time.time()
        proc = env.start(log)
        try:
            cursors = _wait_all_caught_up(env, sim.org_ids, proc, log, since=restarted, timeout=120)
        finally:
            assert stop(proc, timeout=30) == 0
        assert sim.stats()["service_app_mints"] == 3, "a restart minted again"
        after = {path.name: path.read_text() for path in sorted(store.iterdir())}
        assert after != before  # refreshed with the stored token, which rotated
        text = log.read_text()
        for path in stored:
            assert before[path.name].strip() not in text
        events = _events_by_org(env)
        for n, org in enumerate(sim.org_ids, start=1):
            expected = sim.expected_report_ids(
                "stream",
                cursors[org].position - timedelta(hours=HISTORY_HOURS + 1),
                cursors[org].position,
                org=n,
            )
            assert max(events[org].values()) == 1
            assert expected <= set(events[org])
