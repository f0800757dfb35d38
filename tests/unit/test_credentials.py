"""Per-org credential providers against the many-org simulator over real HTTP: token files
re-read when replaced, OAuth per org, the Service App flow (mint, refresh before expiry and on
401, rotation kept across a restart, 403/404 named), the factory, and no secret in any log."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from publisher import logs
from publisher.errors import ConfigError, WebexAuthError, WebexRequestError
from publisher.orgs import Catalogue, Org, build_catalogue
from publisher.settings import load_settings
from publisher.simulator.server import Simulator, SimulatorConfig
from publisher.webex.auth import TokenProvider
from publisher.webex.client import CdrClient
from publisher.webex.credentials import (
    Credentials,
    RefreshTokenStore,
    ServiceApp,
    ServiceAppTokens,
    TokenFile,
)
from publisher.webex.ratelimit import LimiterRegistry, RateLimiter
from publisher.webex.windows import Endpoint
from tests.unit.test_client import FakeTime

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SPAN = (T0 - timedelta(hours=2), T0 - timedelta(hours=1))
LIFETIME = 3600.0


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("CDR_PUBLISHER_"):
            monkeypatch.delenv(key)


@contextmanager
def simulator(t: FakeTime, **changes: Any) -> Iterator[Simulator]:
    config = SimulatorConfig(
        seed=3,
        calls_per_minute=4.0,
        orgs=3,
        rate_limits=False,
        clock=t.utc,
        service_app_token_lifetime_s=LIFETIME,
        access_token_lifetime_s=LIFETIME,
    )
    with Simulator(replace(config, **changes)) as sim:
        yield sim


def wallclock(t: FakeTime) -> float:
    return t.utc().timestamp()


def client(sim: Simulator, t: FakeTime, tokens: TokenProvider) -> CdrClient:
    limiter = RateLimiter(
        initial_per_minute=60.0, page_per_minute=600.0, clock=t.mono, sleep=t.sleep
    )
    return CdrClient(
        base_url=sim.base_url,
        tokens=tokens,
        limiter=limiter,
        page_size=500,
        clock=t.utc,
        sleep=t.sleep,
        retries=2,
    )


def org_ids_read(sim: Simulator, t: FakeTime, tokens: TokenProvider) -> set[str]:
    """The Org UUIDs of every record the provider's token reads in SPAN."""
    with client(sim, t, tokens) as c:
        pages = list(c.fetch(Endpoint.STREAM, *SPAN))
    return {item["Org UUID"] for page in pages for item in orjson.loads(page.body)["items"]}


def service_app(sim: Simulator, t: FakeTime, store: Path, **changes: Any) -> ServiceApp:
    apps = tmp_token_file(store.parent / "apps-token", "sim-apps-token")
    options: dict[str, Any] = {
        "application_id": "sim-app",
        "client_id": "sim-app-client",
        "client_secret": "sim-app-secret",
        "applications_tokens": TokenFile(apps),
        "store": RefreshTokenStore(store),
        "api_url": sim.base_url,
        "clock": lambda: wallclock(t),
    }
    options.update(changes)
    return ServiceApp(**options)


def tmp_token_file(path: Path, token: str) -> Path:
    path.write_text(token + "\n")
    return path


# --- token files -------------------------------------------------------------------------------


def test_token_file_is_re_read_when_replaced_without_restart(tmp_path: Path) -> None:
    """A token file's new content is used on the next request; refresh() is True only when the
    token changed; the token is registered with the scrubber and shows in no repr."""
    path = tmp_token_file(tmp_path / "token", "first-token-aaaa")
    provider = TokenFile(path, place="orgs[0].token_file")

    assert provider.token() == "first-token-aaaa"
    assert provider.refresh() is False  # nothing changed: a 401 is final
    tmp_token_file(tmp_path / "next", "second-token-bbbb").replace(path)  # an atomic swap
    assert provider.token() == "second-token-bbbb"
    path.write_text("third-token-cccc")  # rewritten in place
    assert provider.refresh() is True
    assert provider.token() == "third-token-cccc"
    assert "cccc" not in provider.identity
    assert "cccc" not in repr(provider)
    assert logs.scrub("third-token-cccc") == logs.REDACTED


def test_a_token_file_being_rewritten_keeps_the_last_token(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Removed or emptied mid-run, the file keeps serving the last good token with one warning,
    and the next complete token is picked up."""
    path = tmp_token_file(tmp_path / "token", "good-token-1111")
    provider = TokenFile(path, place="orgs[2].token_file")
    path.unlink()
    assert provider.token() == "good-token-1111"
    assert provider.token() == "good-token-1111"
    path.write_text("")
    assert provider.token() == "good-token-1111"
    path.write_text("newer-token-2222\n")

    assert provider.token() == "newer-token-2222"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2  # once for the missing file, once for the empty one
    assert all(r.setting == "orgs[2].token_file" for r in warnings)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("content", "words"),
    [(None, "cannot read it"), ("", "the file is empty"), ("two words", "white space")],
)
def test_an_unusable_token_file_at_start_names_its_place(
    tmp_path: Path, content: str | None, words: str
) -> None:
    """Missing, empty or not one token at start: ConfigError naming the setting and the path."""
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)

    with pytest.raises(ConfigError) as info:
        TokenFile(path, place="orgs[3].token_file")

    assert str(info.value).startswith(f"orgs[3].token_file {path}: ")
    assert words in str(info.value)
    assert "words" not in str(info.value)


def test_a_revoked_org_recovers_when_its_token_file_is_replaced(tmp_path: Path) -> None:
    """The simulator revokes org 2's token: the client's 401 is final while the file is
    unchanged; once the operator writes the new token into the file, the same provider reads
    org 2 again, without a restart or another 401."""
    t = FakeTime(T0)
    with simulator(t) as sim:
        path = tmp_token_file(tmp_path / "org-2.token", "sim-token-2")
        provider = TokenFile(path, place="orgs[1].token_file")
        before = org_ids_read(sim, t, provider)
        new = sim.revoke(2)["token"]
        with pytest.raises(WebexAuthError):
            org_ids_read(sim, t, provider)
        tmp_token_file(tmp_path / "swap", new).replace(path)
        after = org_ids_read(sim, t, provider)
        stats = sim.stats()

    assert before == after == {sim.org_ids[1]}
    assert stats["401"] == 1


# --- OAuth refresh per org ---------------------------------------------------------------------


def test_oauth_orgs_refresh_their_own_tokens_with_their_own_identity(tmp_path: Path) -> None:
    """Two orgs authorised the same integration: each refreshes its own refresh token into its
    own file, reads its own org, and gets its own rate-limit identity."""
    t = FakeTime(T0)
    with simulator(t) as sim:
        config = tmp_path / "c.toml"
        config.write_text(
            "".join(
                f'[[orgs]]\nid = "{sim.org_ids[n - 1]}"\nclient_id = "sim-client"\n'
                f'client_secret = "sim-secret"\nrefresh_token = "sim-refresh-{n}"\n'
                f'refresh_token_file = "{tmp_path}/org-{n}.refresh"\n'
                for n in (1, 2)
            )
        )
        settings = load_settings(config, webex_token_url=sim.token_url)
        factory = Credentials(
            build_catalogue(settings), token_url=sim.token_url, clock=lambda: wallclock(t)
        )
        one, two = (factory.for_org(org) for org in factory.catalogue.orgs)
        read = [org_ids_read(sim, t, p) for p in (one, two)]
        saved = [(tmp_path / f"org-{n}.refresh").read_text() for n in (1, 2)]
        current = [sim.org_info(n)["refresh_token"] for n in (1, 2)]

    assert read == [{sim.org_ids[0]}, {sim.org_ids[1]}]
    assert saved == current
    assert one.identity != two.identity
    assert factory.for_org(sim.org_ids[0]) is one
    registry = LimiterRegistry()
    limiters = {
        id(registry.get(p.identity, initial_per_minute=1, page_per_minute=10)) for p in (one, two)
    }
    assert len(limiters) == 2


def test_an_oauth_org_whose_refresh_token_is_refused_is_named(tmp_path: Path) -> None:
    """A refused refresh is a WebexAuthError naming the org, never the token."""
    t = FakeTime(T0)
    with simulator(t) as sim:
        org = Org(
            id="org-7",
            kind="oauth",
            where="orgs[0]",
            client_id="sim-client",
            client_secret=None,
            client_secret_file=tmp_token_file(tmp_path / "secret", "sim-secret"),
            refresh_token_file=tmp_token_file(tmp_path / "refresh", "not-a-refresh-token"),
        )
        provider = Credentials(Catalogue((org,)), token_url=sim.token_url).for_org(org)
        with pytest.raises(WebexAuthError) as info:
            provider.token()

    assert str(info.value).startswith("org org-7: the OAuth token endpoint refused the refresh")
    assert "not-a-refresh-token" not in str(info.value)


def test_unreadable_oauth_credentials_are_named_by_their_place(tmp_path: Path) -> None:
    """A client_secret_file that cannot be read, or no refresh token anywhere: ConfigError
    naming orgs[i].<setting>."""
    base = {"id": "o", "kind": "oauth", "where": "orgs[4]", "client_id": "c"}
    no_secret = Org(**base, client_secret_file=tmp_path / "missing")  # type: ignore[arg-type]
    no_refresh = Org(
        **base,  # type: ignore[arg-type]
        client_secret_file=tmp_token_file(tmp_path / "s", "a-secret-value"),
        refresh_token_file=tmp_path / "absent.refresh",
    )

    with pytest.raises(ConfigError, match=r"^orgs\[4\]\.client_secret_file .*cannot read it"):
        Credentials(Catalogue((no_secret,)), token_url="https://x").for_org("o")
    with pytest.raises(ConfigError, match=r"^orgs\[4\]\.refresh_token_file holds no refresh"):
        Credentials(Catalogue((no_refresh,)), token_url="https://x").for_org("o")


def test_the_first_refresh_token_comes_from_a_read_only_file_while_the_store_holds_none(
    tmp_path: Path,
) -> None:
    """first_refresh_token_file (a mounted Secret, no secret in the config) seeds an OAuth org
    whose store is empty: the token reads the org, the rotated token goes to the store, and the
    seed file is left as it was. Once the store holds one, the seed is not read at all."""
    t = FakeTime(T0)
    with simulator(t) as sim:
        seed = tmp_token_file(tmp_path / "first.refresh", "sim-refresh-2")
        store = tmp_path / "store.refresh"
        org = Org(
            id=sim.org_ids[1],
            kind="oauth",
            where="orgs[1]",
            client_id="sim-client",
            client_secret_file=tmp_token_file(tmp_path / "secret", "sim-secret"),
            refresh_token_file=store,
            first_refresh_token_file=seed,
        )
        provider = Credentials(Catalogue((org,)), token_url=sim.token_url).for_org(org)
        read = org_ids_read(sim, t, provider)
        seed.unlink()  # from now on the store's rotated token is the one
        again = Credentials(Catalogue((org,)), token_url=sim.token_url).for_org(org)
        again.refresh()

    assert read == {sim.org_ids[1]}
    assert store.read_text().strip() not in {"", "sim-refresh-2"}


def test_a_first_refresh_token_file_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    org = Org(
        id="o",
        kind="oauth",
        where="orgs[2]",
        client_id="c",
        client_secret_file=tmp_token_file(tmp_path / "s", "a-secret-value"),
        refresh_token_file=tmp_path / "empty.refresh",
        first_refresh_token_file=tmp_path / "missing",
    )

    with pytest.raises(ConfigError, match=r"^orgs\[2\]\.first_refresh_token_file .*cannot read"):
        Credentials(Catalogue((org,)), token_url="https://x").for_org("o")


# --- the Service App ---------------------------------------------------------------------------


def test_service_app_mints_stores_and_reads_the_org(tmp_path: Path) -> None:
    """The first token() mints a pair for the org; the token reads that org; the refresh token
    is at once in a 0600 file of the store; both tokens are registered with the scrubber."""
    t = FakeTime(T0)
    with simulator(t) as sim:
        app = service_app(sim, t, tmp_path / "store")
        provider = app.tokens_for(sim.org_ids[2])
        access = provider.token()
        read = org_ids_read(sim, t, provider)
        stored_path = app.store.path_for(sim.org_ids[2])
        stored = orjson.loads(stored_path.read_bytes())
        stats = sim.stats()

    assert read == {sim.org_ids[2]}
    assert stats["service_app_mints"] == 1
    assert stat.S_IMODE(stored_path.stat().st_mode) == 0o600
    assert stored["org_id"] == sim.org_ids[2]
    assert stored["refresh_token_expires_at"] > wallclock(t)
    assert logs.scrub(access) == logs.REDACTED
    assert logs.scrub(stored["refresh_token"]) == logs.REDACTED
    assert provider.identity == f"service_app:sim-app:{sim.org_ids[2]}"
    assert access not in repr(provider) + repr(app)


def test_service_app_refreshes_before_expiry_and_after_a_401(tmp_path: Path) -> None:
    """Near the end of the reply's lifetime token() refreshes (no 401 met); after the simulator
    expires every token, the client's 401 makes the provider refresh once and go on; each
    rotation is stored and the previous refresh token no longer works."""
    t = FakeTime(T0)
    with simulator(t) as sim:
        app = service_app(sim, t, tmp_path / "store")
        provider = app.tokens_for(sim.org_ids[0])
        first = provider.token()
        first_refresh = orjson.loads(app.store.path_for(sim.org_ids[0]).read_bytes())
        assert provider.expires_at == pytest.approx(wallclock(t) + LIFETIME)
        t.sleep(LIFETIME * 0.95)
        second = provider.token()
        sim.expire_tokens()
        read = org_ids_read(sim, t, provider)
        third = provider.token()
        stats = sim.stats()
        last_refresh = orjson.loads(app.store.path_for(sim.org_ids[0]).read_bytes())
        old_refused = app.refresh_grant(first_refresh["refresh_token"]).status

    assert len({first, second, third}) == 3
    assert read == {sim.org_ids[0]}
    assert stats["service_app_mints"] == 1
    assert stats["401"] == 1
    assert last_refresh["refresh_token"] != first_refresh["refresh_token"]
    assert old_refused == 400


def test_a_restart_refreshes_with_the_stored_token_instead_of_minting(tmp_path: Path) -> None:
    """A new provider on the same store (a restart) refreshes with the stored refresh token:
    no second mint, and its token reads the org."""
    t = FakeTime(T0)
    with simulator(t) as sim:
        org_id = sim.org_ids[1]
        service_app(sim, t, tmp_path / "store").tokens_for(org_id).token()
        restarted = service_app(sim, t, tmp_path / "store").tokens_for(org_id)
        read = org_ids_read(sim, t, restarted)
        stats = sim.stats()

    assert read == {org_id}
    assert stats["service_app_mints"] == 1
    assert stats["tokens_issued"] == 2


def test_a_refused_stored_refresh_token_falls_back_to_minting_once(tmp_path: Path) -> None:
    """When the stored refresh token no longer works (the app was re-authorised), the provider
    mints a new pair once and stores it."""
    t = FakeTime(T0)
    with simulator(t) as sim:
        org_id = sim.org_ids[0]
        service_app(sim, t, tmp_path / "store").tokens_for(org_id).token()
        sim.authorise(1, authorised=False)  # revokes what the app minted there
        sim.authorise(1, authorised=True)
        provider = service_app(sim, t, tmp_path / "store").tokens_for(org_id)
        read = org_ids_read(sim, t, provider)
        stats = sim.stats()

    assert read == {org_id}
    assert stats["service_app_mints"] == 2


def test_an_org_that_has_not_authorised_the_app_is_named_in_a_403(tmp_path: Path) -> None:
    """403 "Service App not authorized by Full Admin in Control Hub": a WebexAuthError naming
    the org and saying what its admin must do; no secret in the message."""
    t = FakeTime(T0)
    with simulator(t) as sim:
        sim.authorise(3, authorised=False)
        provider = service_app(sim, t, tmp_path / "store").tokens_for(sim.org_ids[2])
        with pytest.raises(WebexAuthError) as info:
            provider.token()

    message = str(info.value)
    assert message.startswith(f"org {sim.org_ids[2]}: Webex refused minting")
    assert "Service App not authorized by Full Admin in Control Hub" in message
    assert "Control Hub" in message
    assert info.value.status == 403
    assert "sim-app-secret" not in message
    assert "sim-apps-token" not in message


def test_an_unknown_service_app_is_named_in_a_404(tmp_path: Path) -> None:
    """404 "Service App not found": a WebexRequestError naming the org and the application id."""
    t = FakeTime(T0)
    with simulator(t) as sim:
        app = service_app(sim, t, tmp_path / "store", application_id="no-such-app")
        with pytest.raises(WebexRequestError) as info:
            app.tokens_for(sim.org_ids[0]).token()

    assert "Service App not found" in str(info.value)
    assert f"org {sim.org_ids[0]}" in str(info.value)
    assert "'no-such-app'" in str(info.value)


def test_a_replaced_applications_token_file_is_used_after_a_401(tmp_path: Path) -> None:
    """The minting token was revoked (401): the provider re-reads its file once and mints."""
    t = FakeTime(T0)
    with simulator(t, applications_token="apps-token-new") as sim:
        app = service_app(sim, t, tmp_path / "store")
        with pytest.raises(WebexAuthError, match="spark:applications_token was refused"):
            app.tokens_for(sim.org_ids[0]).token()
        (tmp_path / "apps-token").write_text("apps-token-new")
        read = org_ids_read(sim, t, app.tokens_for(sim.org_ids[0]))

    assert read == {sim.org_ids[0]}


def test_a_service_app_api_off_https_is_refused(tmp_path: Path) -> None:
    """Secrets go only to an https host (or loopback): a plain-http remote API is a ConfigError."""
    store = RefreshTokenStore(tmp_path / "store")

    with pytest.raises(ConfigError, match=r"service_app\.api_url: plain http"):
        ServiceApp(
            application_id="a",
            client_id="c",
            client_secret="s-123456",
            applications_tokens=TokenFile(tmp_token_file(tmp_path / "t", "apps-1234")),
            store=store,
            api_url="http://webexapis.com",
        )


def test_a_store_directory_that_cannot_be_made_is_named(tmp_path: Path) -> None:
    """token_store_dir under a file: ConfigError naming service_app.token_store_dir."""
    blocker = tmp_path / "file"
    blocker.write_text("x")

    with pytest.raises(ConfigError, match=r"^service_app\.token_store_dir .*cannot create it"):
        RefreshTokenStore(blocker / "store")


# --- the factory over a whole catalogue --------------------------------------------------------


def fleet_toml(sim: Simulator, tmp_path: Path) -> Path:
    ids = sim.org_ids
    tmp_token_file(tmp_path / "org-1.token", "sim-token-1")
    tmp_token_file(tmp_path / "apps.token", "sim-apps-token")
    tmp_token_file(tmp_path / "app.secret", "sim-app-secret")
    config = tmp_path / "fleet.toml"
    config.write_text(
        f'webex_token_url = "{sim.token_url}"\n\n'
        f'[[orgs]]\nid = "{ids[0]}"\ntoken_file = "{tmp_path}/org-1.token"\n\n'
        f'[[orgs]]\nid = "{ids[1]}"\nclient_id = "sim-client"\nclient_secret = "sim-secret"\n'
        f'refresh_token = "sim-refresh-2"\nrefresh_token_file = "{tmp_path}/org-2.refresh"\n\n'
        f'[[orgs]]\nid = "{ids[2]}"\nservice_app = true\n\n'
        f'[service_app]\napplication_id = "sim-app"\nclient_id = "sim-app-client"\n'
        f'client_secret_file = "{tmp_path}/app.secret"\ntoken_store_dir = "{tmp_path}/store"\n'
        f'applications_token_file = "{tmp_path}/apps.token"\napi_url = "{sim.base_url}"\n'
    )
    return config


def test_the_factory_gives_each_org_of_a_catalogue_its_own_provider(tmp_path: Path) -> None:
    """From one TOML file: a token-file org, an OAuth org and a Service App org, each provider
    reading its own org, each with its own identity (so its own limiter)."""
    t = FakeTime(T0)
    with simulator(t) as sim:
        settings = load_settings(fleet_toml(sim, tmp_path))
        factory = Credentials.from_settings(settings, build_catalogue(settings))
        providers = [factory.for_org(org_id) for org_id in sim.org_ids]
        read = [org_ids_read(sim, t, provider) for provider in providers]

    assert read == [{org_id} for org_id in sim.org_ids]
    assert len({p.identity for p in providers}) == 3
    assert isinstance(providers[0], TokenFile)
    assert isinstance(providers[2], ServiceAppTokens)
    assert factory.service_app() is factory.service_app()
    with pytest.raises(KeyError):
        factory.for_org("not-in-the-catalogue")


def test_the_single_org_environment_settings_make_one_provider(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """CDR_PUBLISHER_WEBEX_TOKEN_FILE alone: a catalogue of one whose provider re-reads the
    file, its errors naming the variable."""
    path = tmp_token_file(tmp_path / "token", "env-token-abcdef")
    monkeypatch.setenv("CDR_PUBLISHER_WEBEX_TOKEN_FILE", str(path))
    settings = load_settings()
    factory = Credentials.from_settings(settings, build_catalogue(settings))

    provider = factory.for_org("default")
    path.write_text("env-token-ghijkl")

    assert provider.token() == "env-token-ghijkl"
    path.unlink()
    with pytest.raises(ConfigError, match=r"^CDR_PUBLISHER_WEBEX_TOKEN_FILE .*cannot read it"):
        Credentials.from_settings(settings, build_catalogue(settings)).for_org("default")


def test_no_token_or_secret_reaches_any_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """At DEBUG (urllib3 included), minting, refreshing, rotating, 401s and a restart log no
    token, refresh token or client secret."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="urllib3")
    t = FakeTime(T0)
    seen: list[str] = ["sim-app-secret", "sim-apps-token", "sim-secret", "sim-token-1"]
    with simulator(t) as sim:
        settings = load_settings(fleet_toml(sim, tmp_path))
        catalogue = build_catalogue(settings)
        factory = Credentials.from_settings(settings, catalogue)
        for org_id in sim.org_ids:
            provider = factory.for_org(org_id)
            seen.append(provider.token())
            org_ids_read(sim, t, provider)
        seen += [info["refresh_token"] for info in sim.orgs_info()]
        sim.expire_tokens()
        t.sleep(LIFETIME)
        for org_id in sim.org_ids:
            org_ids_read(sim, t, factory.for_org(org_id))
            seen.append(factory.for_org(org_id).token())
        restarted = Credentials.from_settings(settings, catalogue)
        seen.append(restarted.for_org(sim.org_ids[2]).token())
        store = orjson.loads(next((tmp_path / "store").iterdir()).read_bytes())
        seen.append(store["refresh_token"])

    assert any(r.name.startswith("urllib3") for r in caplog.records)
    assert any("Service App token" in r.getMessage() for r in caplog.records)
    for record in caplog.records:
        text = record.getMessage() + repr(vars(record))
        for secret in seen:
            assert secret not in text, f"a secret logged by {record.name}: {record.msg!r}"


def test_single_org_oauth_without_a_refresh_token_names_the_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """CDR_PUBLISHER_WEBEX_CLIENT_ID and its secret but no refresh token: the error names the
    environment variables, as before catalogues."""
    monkeypatch.setenv("CDR_PUBLISHER_WEBEX_CLIENT_ID", "client")
    monkeypatch.setenv("CDR_PUBLISHER_WEBEX_CLIENT_SECRET", "secret-123456")
    settings = load_settings()

    with pytest.raises(ConfigError) as info:
        Credentials.from_settings(settings, build_catalogue(settings)).for_org("default")

    assert str(info.value) == (
        "CDR_PUBLISHER_WEBEX_REFRESH_TOKEN is required with CDR_PUBLISHER_WEBEX_CLIENT_ID"
    )


def test_a_refresh_token_another_replica_rotated_in_the_store_is_used(tmp_path: Path) -> None:
    """Replicas share the store: when an org's slot comes back after another replica rotated
    its refresh token, this one refreshes with the stored token instead of its stale copy, so
    the org neither fails nor mints again."""
    t = FakeTime(T0)
    with simulator(t) as sim:
        org_id = sim.org_ids[0]
        here = service_app(sim, t, tmp_path / "store").tokens_for(org_id)
        here.token()
        there = service_app(sim, t, tmp_path / "store").tokens_for(org_id)
        there.refresh()  # the other replica owned the slot meanwhile and rotated the token
        here.refresh()
        read = org_ids_read(sim, t, here)
        stats = sim.stats()

    assert read == {org_id}
    assert stats["service_app_mints"] == 1
