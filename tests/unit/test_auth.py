"""Token providers: static tokens, OAuth refresh and rotation, and secrets kept out of sight."""

from __future__ import annotations

import stat
from pathlib import Path
from urllib.parse import parse_qs

import orjson
import pytest
import requests

from publisher.errors import ConfigError, WebexAuthError, WebexUnavailableError
from publisher.settings import load_settings
from publisher.webex.auth import (
    OAuthTokens,
    StaticToken,
    provider_from_settings,
    write_secret_file,
)
from tests.unit.test_client import Reply, Transport, session_with

TOKEN_URL = "https://webexapis.com/v1/access_token"
SECRET = "client-secret-abcdef"
REFRESH = "refresh-token-0001"


class TokenEndpoint:
    """A scripted OAuth token endpoint that records the forms it receives."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.forms: list[dict[str, list[str]]] = []
        self.transport = Transport(self.answer)

    def answer(self, request: requests.PreparedRequest) -> Reply:
        body = request.body if isinstance(request.body, str) else (request.body or b"").decode()
        self.forms.append(parse_qs(body))
        return self.replies.pop(0)


def granted(access: str, refresh: str | None = None, expires_in: int = 3600) -> Reply:
    data: dict[str, object] = {"access_token": access, "expires_in": expires_in}
    if refresh is not None:
        data["refresh_token"] = refresh
    return 200, {}, orjson.dumps(data)


@pytest.fixture
def clock() -> list[float]:
    return [1000.0]


@pytest.fixture
def endpoint() -> TokenEndpoint:
    return TokenEndpoint()


def oauth(
    endpoint: TokenEndpoint, clock: list[float], tmp_path: Path, **kwargs: object
) -> tuple[OAuthTokens, requests.Session]:
    session = session_with(endpoint.transport)
    options: dict[str, object] = {
        "client_id": "client-1",
        "client_secret": SECRET,
        "refresh_token": REFRESH,
        "token_url": TOKEN_URL,
        "refresh_token_file": tmp_path / "refresh",
        "session": session,
        "clock": lambda: clock[0],
    }
    options.update(kwargs)
    return OAuthTokens(**options), session  # type: ignore[arg-type]


def test_static_token_hides_itself() -> None:
    """A static token is served as given; its repr and identity do not contain it."""
    provider = StaticToken(" static-token-value-123 \n")

    assert provider.token() == "static-token-value-123"
    assert "static-token-value" not in repr(provider)
    assert "static-token-value" not in provider.identity
    assert provider.refresh() is False


def test_static_token_file(tmp_path: Path) -> None:
    """A token file is read and stripped; a missing or empty one is a ConfigError."""
    (tmp_path / "t").write_text("from-a-file-0001\n")
    (tmp_path / "empty").write_text("\n")

    assert StaticToken.from_file(tmp_path / "t").token() == "from-a-file-0001"
    with pytest.raises(ConfigError, match="empty"):
        StaticToken.from_file(tmp_path / "empty")
    with pytest.raises(ConfigError, match="cannot read"):
        StaticToken.from_file(tmp_path / "missing")


def test_oauth_refreshes_at_first_use_and_caches(
    endpoint: TokenEndpoint, clock: list[float], tmp_path: Path
) -> None:
    """The first token() posts the refresh grant; later calls reuse the token until it is due."""
    endpoint.replies = [granted("access-1")]
    provider, session = oauth(endpoint, clock, tmp_path)
    with session:
        assert provider.token() == "access-1"
        assert provider.token() == "access-1"

    assert endpoint.forms == [
        {
            "grant_type": ["refresh_token"],
            "client_id": ["client-1"],
            "client_secret": [SECRET],
            "refresh_token": [REFRESH],
        }
    ]


def test_oauth_refreshes_before_expiry(
    endpoint: TokenEndpoint, clock: list[float], tmp_path: Path
) -> None:
    """With an hour's lifetime, the token is refreshed once 54 minutes have passed (10% margin)."""
    endpoint.replies = [granted("access-1"), granted("access-2")]
    provider, session = oauth(endpoint, clock, tmp_path)
    with session:
        provider.token()
        clock[0] += 3239
        assert provider.token() == "access-1"
        clock[0] += 2
        assert provider.token() == "access-2"


def test_rotated_refresh_token_is_saved_0600_and_used_at_restart(
    endpoint: TokenEndpoint, clock: list[float], tmp_path: Path
) -> None:
    """A new refresh token is written atomically with mode 0600 and read first by the next start."""
    endpoint.replies = [granted("access-1", refresh="refresh-token-0002"), granted("access-2")]
    provider, session = oauth(endpoint, clock, tmp_path)
    with session:
        provider.token()
        saved = tmp_path / "refresh"
        assert saved.read_text() == "refresh-token-0002"
        assert stat.S_IMODE(saved.stat().st_mode) == 0o600

        restarted, session2 = oauth(endpoint, clock, tmp_path)
        with session2:
            restarted.token()
    assert endpoint.forms[1]["refresh_token"] == ["refresh-token-0002"]
    assert [p.name for p in tmp_path.iterdir()] == ["refresh"]


def test_refused_refresh_is_an_auth_error_without_secrets(
    endpoint: TokenEndpoint, clock: list[float], tmp_path: Path
) -> None:
    """A 400 invalid_grant raises WebexAuthError quoting only the error code."""
    endpoint.replies = [
        (400, {}, orjson.dumps({"error": "invalid_grant", "error_description": REFRESH}))
    ]
    provider, session = oauth(endpoint, clock, tmp_path)
    with session, pytest.raises(WebexAuthError, match="invalid_grant") as info:
        provider.token()
    text = str(info.value) + repr(provider)
    assert REFRESH not in text
    assert SECRET not in text


def test_token_endpoint_down_is_retriable(
    endpoint: TokenEndpoint, clock: list[float], tmp_path: Path
) -> None:
    """A 503 or a refused connection at the token endpoint is WebexUnavailableError."""
    endpoint.replies = [(503, {}, b""), requests.ConnectionError("refused")]
    provider, session = oauth(endpoint, clock, tmp_path)
    with session:
        with pytest.raises(WebexUnavailableError):
            provider.token()
        with pytest.raises(WebexUnavailableError):
            provider.token()


def test_write_secret_file_replaces_atomically(tmp_path: Path) -> None:
    """The file ends up with the new value, mode 0600, and no temporary left behind."""
    target = tmp_path / "secret"
    target.write_text("old")
    target.chmod(0o644)
    write_secret_file(target, "new")

    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]


def test_provider_from_settings_picks_the_source(tmp_path: Path) -> None:
    """OAuth when a client id is set (shared per process), else the static token, else an error."""
    static = provider_from_settings(load_settings(webex_token="settings-token-0001"))
    assert isinstance(static, StaticToken)
    assert static.token() == "settings-token-0001"

    (tmp_path / "token").write_text("file-token-0001")
    from_file = provider_from_settings(load_settings(webex_token_file=tmp_path / "token"))
    assert from_file.token() == "file-token-0001"

    oauth_settings = load_settings(
        webex_client_id="cid",
        webex_client_secret=SECRET,
        webex_refresh_token=REFRESH,
        webex_refresh_token_file=tmp_path / "rt",
    )
    first = provider_from_settings(oauth_settings)
    assert isinstance(first, OAuthTokens)
    assert provider_from_settings(oauth_settings) is first

    with pytest.raises(ConfigError, match="no Webex credentials"):
        provider_from_settings(load_settings())


def test_a_refresh_token_another_replica_rotated_in_the_shared_file_is_used(
    endpoint: TokenEndpoint, clock: list[float], tmp_path: Path
) -> None:
    """Replicas share the refresh token file: when the org's slot comes back to this process
    after another rotated the token, the next refresh sends the file's token, not the stale
    one this process held (which Webex no longer accepts)."""
    endpoint.replies = [
        granted("access-1", refresh="refresh-token-0002", expires_in=3600),
        granted("access-2", refresh="refresh-token-0004", expires_in=3600),
    ]
    provider, session = oauth(endpoint, clock, tmp_path)
    with session:
        provider.token()
        # Meanwhile the replica that owned the slot refreshed and rotated it in the shared file.
        write_secret_file(tmp_path / "refresh", "refresh-token-0003")
        clock[0] += 3600
        provider.token()
    assert endpoint.forms[1]["refresh_token"] == ["refresh-token-0003"]
    assert (tmp_path / "refresh").read_text() == "refresh-token-0004"


def test_a_refusal_raced_by_another_replicas_rotation_is_retried_with_the_file(
    endpoint: TokenEndpoint, clock: list[float], tmp_path: Path
) -> None:
    """Two replicas refreshing one shared token at once: the loser is refused, finds the
    winner's token in the file and succeeds with it; a refusal with nothing new stays one."""
    path = tmp_path / "refresh"

    def refuse_after_rival_rotates(request: requests.PreparedRequest) -> Reply:
        endpoint.forms.append(parse_qs(str(request.body)))
        if len(endpoint.forms) == 1:
            write_secret_file(path, "refresh-token-rival")  # the rival's commit came first
            return 400, {}, orjson.dumps({"error": "invalid_grant"})
        return granted("access-1")

    endpoint.transport = Transport(refuse_after_rival_rotates)
    provider, session = oauth(endpoint, clock, tmp_path)
    with session:
        assert provider.token() == "access-1"
    assert [f["refresh_token"] for f in endpoint.forms] == [[REFRESH], ["refresh-token-rival"]]
