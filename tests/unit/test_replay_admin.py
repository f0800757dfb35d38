"""Replays and the admin boundary: the topic a replay may write to, and the CLI's admin token.

The topic rule is checked in the pure ``plan()``, so the CLI, POST /replays and a resumed replay
all meet it; the CLI hands a replay to the daemon with the admin token and says clearly when the
daemon refuses it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from publisher.cli import main
from publisher.errors import ConfigError, UsageError
from publisher.health import Health
from publisher.http_api import HttpApi
from publisher.replay import ReplayManager, ReplayRequest, plan
from publisher.runtime import Runtime
from publisher.settings import ENV_PREFIX, Settings, load_settings
from publisher.state.memory import OrgState

ORG = "org-1"
NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)
ADMIN_TOKEN = "replay-admin-token-0123456789"


def _manager(settings: Settings) -> ReplayManager:
    """The daemon's replay manager, over the real runtime (nothing runs until a replay does)."""
    return ReplayManager(
        Runtime(settings, health=Health()), OrgState(settings.deployment_id, settings.org_id)
    )


def _request(topic: str | None) -> ReplayRequest:
    return ReplayRequest(
        replay_id="r1", start=NOW - timedelta(days=3), end=NOW - timedelta(days=2), topic=topic
    )


def _plan(topic: str | None, settings: Settings) -> None:
    plan(
        _request(topic),
        now=NOW,
        org_id=ORG,
        skew=timedelta(seconds=30),
        topic_pattern=settings.replay_topic_regex(),
        reserved_topics=(settings.state_topic, settings.dlq_topic),
    )


@pytest.mark.parametrize(
    "topic",
    [None, "webex.calling.cdr", "webex.calling.cdr.replay.2026-03", "webex.calling.cdr.replay.x_1"],
)
def test_the_default_pattern_allows_the_events_topic_and_its_replay_topics(
    topic: str | None,
) -> None:
    """No --topic, the events topic, or <events topic>.replay.<name>: planned."""
    _plan(topic, Settings())


@pytest.mark.parametrize(
    "topic",
    [
        "webex.calling.cdr.state",
        "webex.calling.cdr.dlq",
        "hr.salaries",
        "webex.calling.cdr.replay.",
        "webex.calling.cdrX",
        "xwebex.calling.cdr",
        "webex.calling.cdr.replay.a/b",
    ],
)
def test_any_other_topic_is_refused_naming_the_setting(topic: str) -> None:
    """Other topics, the state and DLQ topics, and near misses are refused by name."""
    with pytest.raises(UsageError, match="CDR_PUBLISHER_REPLAY_TOPIC_PATTERN"):
        _plan(topic, Settings())


def test_a_configured_pattern_is_matched_in_full_and_never_opens_the_state_topic() -> None:
    """A custom pattern replaces the default; the state and DLQ topics stay refused even when
    the pattern would match them."""
    settings = Settings(replay_topic_pattern=r"webex\.calling\..*")
    _plan("webex.calling.archive", settings)
    for topic in ("webex.calling.cdr.state", "webex.calling.cdr.dlq"):
        with pytest.raises(UsageError):
            _plan(topic, settings)
    with pytest.raises(UsageError):
        _plan("other.webex.calling.x", settings)
    assert settings.replay_topic_regex().pattern == r"webex\.calling\..*"
    assert re.fullmatch(Settings().replay_topic_regex(), "webex.calling.cdr.replay.a")


def test_an_invalid_pattern_stops_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pattern that is no regex names CDR_PUBLISHER_REPLAY_TOPIC_PATTERN."""
    monkeypatch.setenv("CDR_PUBLISHER_REPLAY_TOPIC_PATTERN", "([")
    with pytest.raises(ConfigError, match="CDR_PUBLISHER_REPLAY_TOPIC_PATTERN"):
        load_settings()


def test_post_replays_refuses_a_topic_outside_the_pattern_and_starts_nothing() -> None:
    """POST /replays naming the state topic (or any other) is 400 with the reason; no job."""
    manager = _manager(Settings(org_id=ORG, webex_token="t"))  # type: ignore[arg-type]
    end = datetime.now(UTC) - timedelta(days=1)
    try:
        for topic in ("webex.calling.cdr.state", "customer.pii"):
            body = {"start": (end - timedelta(hours=1)).isoformat(), "end": end.isoformat()}
            status, payload = manager._post("/replays", orjson.dumps({**body, "topic": topic}))
            assert status == 400, payload
            assert "REPLAY_TOPIC_PATTERN" in payload["error"]
        assert manager._list("/replays", b"")[1]["replays"] == []
    finally:
        manager.close()


# --- the CLI and the daemon's admin token -------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    monkeypatch.setenv(ENV_PREFIX + "ORG_ID", ORG)
    monkeypatch.setenv(ENV_PREFIX + "WEBEX_TOKEN", "t")
    monkeypatch.setattr("publisher.logs.configure", lambda *_a: None)

    def never(*_args: object) -> None:
        raise AssertionError("the replay must not run in the CLI's process here")

    monkeypatch.setattr("publisher.commands.replay._run_here", never)
    return monkeypatch


def test_cli_refuses_a_topic_outside_the_pattern_before_any_io(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`replay --topic <state topic>` exits 2 naming the setting, before it looks for a daemon."""
    clean_env.setenv(ENV_PREFIX + "HTTP_PORT", "0")
    end = datetime.now(UTC) - timedelta(days=1)
    span = ["--start", (end - timedelta(hours=1)).isoformat(), "--end", end.isoformat()]

    code = main(["replay", *span, "--topic", "webex.calling.cdr.state"])

    assert code == 2
    assert "CDR_PUBLISHER_REPLAY_TOPIC_PATTERN" in capsys.readouterr().err


class FakeDaemon:
    """The daemon's real HttpApi (so its real admin checks) with stand-in replay routes."""

    def __init__(self, admin_token: str | None) -> None:
        self.posted: list[dict[str, Any]] = []
        self.api = HttpApi(
            Health(),
            host="127.0.0.1",
            port=0,
            poll_interval_s=60.0,
            clock=lambda: datetime.now(UTC),
            admin_token=admin_token,
        )
        identity = {"org_id": ORG, "deployment_id": "default"}
        self.api.add_route("GET", "/replays", lambda _p, _b: (200, {**identity, "replays": []}))
        self.api.add_route("POST", "/replays", self._post)
        self.api.add_route("GET", "/replays/", self._status, prefix=True)

    def _post(self, _path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        self.posted.append(orjson.loads(body))
        return 202, {"status": "running", "windows_done": 0, "windows_total": 1}

    def _status(self, _path: str, _body: bytes) -> tuple[int, dict[str, Any]]:
        return 200, {"status": "done", "windows_done": 1, "windows_total": 1, "published": 3}


@pytest.fixture
def daemon(clean_env: pytest.MonkeyPatch) -> Iterator[FakeDaemon]:
    fake = FakeDaemon(ADMIN_TOKEN)
    fake.api.start()
    clean_env.setenv(ENV_PREFIX + "HTTP_PORT", str(fake.api.port))
    yield fake
    fake.api.close()


def _span() -> list[str]:
    end = datetime.now(UTC) - timedelta(days=1)
    return ["--start", (end - timedelta(hours=1)).isoformat(), "--end", end.isoformat()]


def test_cli_hands_the_replay_over_with_the_admin_token(
    daemon: FakeDaemon, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With the daemon's admin token in its settings, the CLI is let in, hands the replay over
    and follows it to the end."""
    clean_env.setenv(ENV_PREFIX + "ADMIN_TOKEN", ADMIN_TOKEN)

    code = main(["replay", *_span(), "--id", "handed"])

    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "handed to the daemon" in captured.err
    assert [body["id"] for body in daemon.posted] == ["handed"]


@pytest.mark.parametrize("token", [None, "some-other-token-0123456789"])
def test_cli_says_clearly_when_the_daemon_refuses_it(
    token: str | None,
    daemon: FakeDaemon,
    clean_env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No or a wrong admin token: exit 1 with one line saying the daemon refuses and how to fix
    it; nothing handed over, nothing run here."""
    if token is not None:
        clean_env.setenv(ENV_PREFIX + "ADMIN_TOKEN", token)

    code = main(["replay", *_span()])

    err = capsys.readouterr().err
    assert code == 1
    assert "refuses the replay" in err
    assert "CDR_PUBLISHER_ADMIN_TOKEN" in err
    # One line, no traceback (the fake daemon's own log lines may share this stderr).
    assert err.strip().splitlines()[-1].startswith("cdr-publisher: error: the daemon at")
    assert daemon.posted == []


def test_cli_says_so_when_the_daemon_has_admin_routes_disabled(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A daemon with no admin token: exit 1 naming the setting that enables its admin routes."""
    fake = FakeDaemon(None)
    fake.api.start()
    clean_env.setenv(ENV_PREFIX + "HTTP_PORT", str(fake.api.port))
    clean_env.setenv(ENV_PREFIX + "ADMIN_TOKEN", ADMIN_TOKEN)
    try:
        code = main(["replay", *_span()])
    finally:
        fake.api.close()

    err = capsys.readouterr().err
    assert code == 1
    assert "disabled" in err
    assert "CDR_PUBLISHER_ADMIN_TOKEN" in err
    assert fake.posted == []
