"""The org catalogue: [[orgs]] tables and [service_app], the single-org settings as a catalogue of
one, errors that name the place, and secrets that never show."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

import pytest

from publisher.cli import main
from publisher.errors import ConfigError
from publisher.orgs import build_catalogue, region_base_url
from publisher.settings import load_settings

TOKEN = "org-b-static-token-0123456789"
SECRET = "org-c-client-secret-abcdef"
REFRESH = "org-c-first-refresh-token-xyz"
APP_SECRET = "service-app-secret-987654"
APPS_TOKEN = "applications-token-55555555"

FLEET = f"""
webex_base_url = "https://analytics-calling.webexapis.com"

[[orgs]]
id = "a1b2c3d4-0000-4000-8000-00000000000a"
name = "Acme"
token_file = "/run/secrets/acme-token"
locations = ["Site A", "Site B"]
region_host = "analytics-calling-eu.webexapis.com"

[[orgs]]
id = "org-b"
token = "{TOKEN}"

[[orgs]]
id = "org-c"
client_id = "integration-c"
client_secret = "{SECRET}"
refresh_token = "{REFRESH}"
refresh_token_file = "/var/lib/cdr/org-c.refresh"

[[orgs]]
id = "org-d"
service_app = true

[service_app]
application_id = "app-123"
client_id = "sa-client"
client_secret = "{APP_SECRET}"
token_store_dir = "/var/lib/cdr/service-app"
applications_token = "{APPS_TOKEN}"
"""
APP = 'application_id = "a"\nclient_id = "c"\nclient_secret = "x"\n'
ALL_SECRETS = (TOKEN, SECRET, REFRESH, APP_SECRET, APPS_TOKEN)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("CDR_PUBLISHER_"):
            monkeypatch.delenv(key)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fleet.toml"
    path.write_text(text)
    return path


def org_table(body: str, org_id: str = "org-x") -> str:
    return f'[[orgs]]\nid = "{org_id}"\n{body}\n'


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text))
    return str(info.value)


def test_every_credential_kind_becomes_an_org_of_the_catalogue(tmp_path: Path) -> None:
    """Four [[orgs]] tables give four orgs in file order, each with its kind, locations, region
    base URL and the places messages use for its settings."""
    catalogue = build_catalogue(load_settings(write(tmp_path, FLEET)))

    assert catalogue.ids == ("a1b2c3d4-0000-4000-8000-00000000000a", "org-b", "org-c", "org-d")
    assert [org.kind for org in catalogue.orgs] == ["token_file", "token", "oauth", "service_app"]
    acme = catalogue.orgs[0]
    assert acme.name == "Acme"
    assert acme.locations == ("Site A", "Site B")
    assert acme.region_base_url == "https://analytics-calling-eu.webexapis.com"
    assert acme.token_file == Path("/run/secrets/acme-token")
    assert acme.place("token_file") == "orgs[0].token_file"
    assert catalogue.get("org-c").refresh_token_file == Path("/var/lib/cdr/org-c.refresh")
    assert catalogue.service_app is not None
    assert catalogue.service_app.mint_url() == "https://webexapis.com/v1/applications/app-123/token"
    assert catalogue.service_app.token_url == "https://webexapis.com/v1/access_token"
    assert not catalogue.from_environment
    with pytest.raises(KeyError):
        catalogue.get("org-z")


def test_a_token_in_the_config_file_is_accepted_with_a_warning(tmp_path: Path) -> None:
    """`token` (and `applications_token`) work but are discouraged: the catalogue says where."""
    catalogue = build_catalogue(load_settings(write(tmp_path, FLEET)))

    assert catalogue.warnings[0].startswith("orgs[1].token: a token written in the config file")
    assert catalogue.warnings[1].startswith("service_app.applications_token:")
    assert not any(secret in " ".join(catalogue.warnings) for secret in ALL_SECRETS)


@pytest.mark.parametrize(
    ("body", "place", "words"),
    [
        ('token_file = "/t"\ntoken = "abcdefgh"', "orgs[0]", "found token_file and token"),
        ('name = "no credentials"', "orgs[0]", "give one of token_file, token"),
        ('client_id = "c"\nrefresh_token_file = "/r"', "orgs[0]", "client_secret or"),
        (
            (
                'client_id = "c"\nclient_secret = "abcdefgh"\nclient_secret_file = "/s"\n'
                'refresh_token_file = "/r"'
            ),
            "orgs[0]",
            "found client_secret and client_secret_file",
        ),
        ('client_id = "c"\nclient_secret = "abcdefgh"', "orgs[0]", "needs refresh_token_file"),
        ('client_secret = "abcdefgh"\nrefresh_token_file = "/r"', "orgs[0]", "needs client_id"),
        (
            (
                'client_id = "c"\nclient_secret_file = "/s"\nrefresh_token_file = "/r"\n'
                'refresh_token = "abcdefgh"\nfirst_refresh_token_file = "/f"'
            ),
            "orgs[0]",
            "give the first refresh token once",
        ),
        ('first_refresh_token_file = "/f"', "orgs[0]", "needs client_id"),
        ('token_file = "/t"\nservice_app = true', "orgs[0]", "found token_file and service_app"),
        ('token_file = "/t"\ntokn_file = "/t"', "orgs[0].tokn_file", "Extra inputs"),
        ('token_file = "/t"\nregion_host = "evil.example.com"', "orgs[0].region_host", "Webex"),
        (
            'token_file = "/t"\nregion_host = "http://analytics-calling.webexapis.com"',
            "orgs[0].region_host",
            "https",
        ),
        ('token_file = "/t"\nregion_host = "bad host!"', "orgs[0].region_host", "host name"),
        (
            'token_file = "/t"\nlocations = ["1","2","3","4","5","6","7","8","9","10","11"]',
            "orgs[0].locations",
            "at most 10",
        ),
        ('token_file = "/t"\nlocations = ["a,b"]', "orgs[0].locations", "comma"),
    ],
)
def test_a_bad_org_table_is_refused_naming_its_place(
    tmp_path: Path, body: str, place: str, words: str
) -> None:
    """Each broken rule of one table stops start-up with `orgs[i].field: why`."""
    message = error_of(tmp_path, org_table(body))

    assert message.startswith(f"invalid setting {place}: ")
    assert words in message
    assert "abcdefgh" not in message


def test_an_org_id_with_a_slash_is_refused(tmp_path: Path) -> None:
    """Org ids end up in state keys split on '/': one holding it is refused, naming the id."""
    message = error_of(tmp_path, org_table('token_file = "/t"', org_id="a/b"))

    assert message.startswith("invalid setting orgs[0].id: ")


def test_duplicate_org_ids_are_refused_naming_both_places(tmp_path: Path) -> None:
    """Two tables with one id: the second is named, and the first it repeats."""
    text = org_table('token_file = "/t1"', "same") + org_table('token_file = "/t2"', "same")

    message = error_of(tmp_path, text)

    assert "orgs[1].id: 'same' is also orgs[0].id" in message


@pytest.mark.parametrize(
    ("first", "second", "words"),
    [
        ('token_file = "/x/t"', 'token_file = "/x/../x/t"', "orgs[1].token_file: the same file"),
        ('token = "tok-123456"', 'token = "tok-123456"', "orgs[1].token: the same token"),
        (
            'client_id = "c"\nclient_secret = "s"\nrefresh_token_file = "/r"',
            'client_id = "c"\nclient_secret = "s"\nrefresh_token_file = "/r"',
            "orgs[1].refresh_token_file: the same file as orgs[0].refresh_token_file",
        ),
    ],
)
def test_two_orgs_cannot_share_one_token(
    tmp_path: Path, first: str, second: str, words: str
) -> None:
    """A token reads the org it belongs to: two orgs with one token file, token or refresh file
    would publish one org under two ids (or rotate one refresh token behind the other)."""
    message = error_of(tmp_path, org_table(first, "o1") + org_table(second, "o2"))

    assert words in message
    assert "tok-123456" not in message


def test_a_service_app_org_needs_the_service_app_table(tmp_path: Path) -> None:
    """`service_app = true` without [service_app] names the org's place."""
    message = error_of(tmp_path, org_table("service_app = true"))

    assert "orgs[0].service_app: needs a [service_app] table" in message


@pytest.mark.parametrize(
    ("table", "place", "words"),
    [
        (
            (
                'application_id = "a"\nclient_id = "c"\ntoken_store_dir = "/s"\n'
                'client_secret = "x"\n'
            ),
            "service_app",
            "applications_token_file, applications_token or",
        ),
        (
            (
                'application_id = "a"\nclient_id = "c"\nclient_secret = "x"\n'
                'applications_token_file = "/t"\n'
            ),
            "service_app.token_store_dir",
            "Field required",
        ),
        (
            (
                APP + 'token_store_dir = "/s"\n'
                'applications_token_file = "/t"\napi_url = "http://webexapis.com"\n'
            ),
            "service_app.api_url",
            "https",
        ),
        (
            (
                APP + 'token_store_dir = "/s"\n'
                '[service_app.integration]\nclient_id = "i"\nrefresh_token_file = "/r"\n'
            ),
            "service_app.integration",
            "client_secret or client_secret_file",
        ),
    ],
)
def test_a_bad_service_app_table_is_refused_naming_its_place(
    tmp_path: Path, table: str, place: str, words: str
) -> None:
    """The [service_app] rules: one client secret, one source of the applications token, a token
    store, an https API URL."""
    message = error_of(tmp_path, org_table("service_app = true") + "[service_app]\n" + table)

    assert message.startswith(f"invalid setting {place}: ")
    assert words in message


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CDR_PUBLISHER_WEBEX_TOKEN", "env-token-123456"),
        ("CDR_PUBLISHER_WEBEX_TOKEN_FILE", "/run/token"),
        ("CDR_PUBLISHER_WEBEX_CLIENT_ID", "client"),
        ("CDR_PUBLISHER_ORG_ID", "org-a"),
        ("CDR_PUBLISHER_WEBEX_LOCATIONS", '["Site A"]'),
    ],
)
def test_orgs_and_single_org_settings_together_are_refused_naming_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    """[[orgs]] and any single-org setting at once is ambiguous: the error names both."""
    monkeypatch.setenv(variable, value)

    message = error_of(tmp_path, org_table('token_file = "/t"'))

    assert "orgs ([[orgs]] tables) and " + variable + " are both set" in message
    assert "env-token-123456" not in message


def test_single_org_settings_are_a_catalogue_of_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without [[orgs]], ORG_ID and the WEBEX_* settings are one org, named by its variables."""
    monkeypatch.setenv("CDR_PUBLISHER_ORG_ID", "org-a")
    monkeypatch.setenv("CDR_PUBLISHER_WEBEX_TOKEN_FILE", "/run/token")
    monkeypatch.setenv("CDR_PUBLISHER_WEBEX_LOCATIONS", '["Site A"]')

    catalogue = build_catalogue(load_settings())

    assert catalogue.from_environment
    (org,) = catalogue.orgs
    assert (org.id, org.kind, org.token_file, org.locations) == (
        "org-a",
        "token_file",
        Path("/run/token"),
        ("Site A",),
    )
    assert org.place("token_file") == "CDR_PUBLISHER_WEBEX_TOKEN_FILE"
    assert org.region_base_url is None


def test_single_org_credentials_keep_their_old_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    """As before catalogues: a client id means OAuth even when a token is set too, and a token
    wins over a token file; nothing that worked before is refused now."""
    monkeypatch.setenv("CDR_PUBLISHER_WEBEX_TOKEN", "env-token-123456")
    monkeypatch.setenv("CDR_PUBLISHER_WEBEX_TOKEN_FILE", "/run/token")
    assert build_catalogue(load_settings()).orgs[0].kind == "token"

    monkeypatch.setenv("CDR_PUBLISHER_WEBEX_CLIENT_ID", "client")
    monkeypatch.setenv("CDR_PUBLISHER_WEBEX_CLIENT_SECRET", "secret-123456")
    monkeypatch.setenv("CDR_PUBLISHER_WEBEX_REFRESH_TOKEN", "refresh-123456")
    org = build_catalogue(load_settings()).orgs[0]
    assert (org.kind, org.id, org.client_id) == ("oauth", "default", "client")


def test_no_credentials_at_all_is_a_config_error_naming_the_settings() -> None:
    """Settings without credentials load (for `config`, `state`); the catalogue refuses them."""
    settings = load_settings()

    with pytest.raises(ConfigError, match="no Webex credentials: set webex_token"):
        build_catalogue(settings)


def test_secrets_never_show_in_repr_str_or_dump_and_all_reach_the_scrubber(
    tmp_path: Path,
) -> None:
    """Tokens and client secrets of the tables are SecretStr: not in repr, str or the redacted
    dump, and every one of them is in secret_values() for the log scrubber."""
    settings = load_settings(write(tmp_path, FLEET))
    catalogue = build_catalogue(settings)

    shown = " ".join(
        [repr(settings), str(settings), repr(catalogue), str(catalogue)]
        + [repr(org) for org in catalogue.orgs]
        + [json.dumps(settings.redacted_dump())]
    )
    for secret in ALL_SECRETS:
        assert secret not in shown
        assert secret in settings.secret_values()
    dump = settings.redacted_dump()
    assert dump["orgs"][1] == {"id": "org-b", "token": "**********"}
    assert dump["service_app"]["client_secret"] == "**********"


def test_config_command_shows_the_catalogue_redacted_and_it_reads_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`cdr-publisher config` prints [[orgs]] and [service_app] tables with secrets as
    ********** and the token warning on stderr; fed back, it gives the same catalogue."""
    config = write(tmp_path, FLEET)

    assert main(["config", "--config", str(config)]) == 0
    captured = capsys.readouterr()

    for secret in ALL_SECRETS:
        assert secret not in captured.out
        assert secret not in captured.err
    assert "[[orgs]]" in captured.out
    assert "[service_app]" in captured.out
    assert "orgs[1].token: a token written in the config file" in captured.err
    again = tmp_path / "again.toml"
    again.write_text(captured.out)
    parsed = tomllib.loads(captured.out)
    assert parsed["orgs"][0]["region_host"] == "https://analytics-calling-eu.webexapis.com"
    reread = build_catalogue(load_settings(again))
    original = build_catalogue(load_settings(config))
    assert [(o.id, o.kind, o.locations, o.region_base_url) for o in reread.orgs] == [
        (o.id, o.kind, o.locations, o.region_base_url) for o in original.orgs
    ]


def test_config_command_json_lists_the_orgs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The JSON form carries the catalogue under `orgs`, redacted."""
    assert main(["config", "--config", str(write(tmp_path, FLEET)), "--format", "json"]) == 0
    parsed = json.loads(capsys.readouterr().out)

    assert [org["id"] for org in parsed["orgs"]][1:] == ["org-b", "org-c", "org-d"]
    assert parsed["orgs"][2]["client_secret"] == "**********"
    assert parsed["service_app"]["applications_token"] == "**********"


def test_config_command_names_the_single_org_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without [[orgs]], the TOML output ends with a comment saying which one org it serves."""
    monkeypatch.setenv("CDR_PUBLISHER_ORG_ID", "org-a")
    monkeypatch.setenv("CDR_PUBLISHER_WEBEX_TOKEN", "env-token-123456")

    assert main(["config"]) == 0
    out = capsys.readouterr().out

    assert "# orgs: one, from the environment: org 'org-a' credentials token" in out
    assert "env-token-123456" not in out


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("analytics-calling-eu.webexapis.com", "https://analytics-calling-eu.webexapis.com"),
        (
            "https://Analytics-Calling-AU.webexapis.com/",
            "https://analytics-calling-au.webexapis.com",
        ),
        ("localhost:8443", "https://localhost:8443"),
        ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
    ],
)
def test_region_hosts_are_normalised_to_base_urls(given: str, expected: str) -> None:
    """A region host may be written with or without https:// and a port."""
    assert region_base_url(given) == expected


@pytest.mark.parametrize(
    "given",
    [
        "http://analytics-calling.webexapis.com",
        "https://webexapis.com.evil.example",
        "https://user:pw@analytics-calling.webexapis.com",
        "https://analytics-calling.webexapis.com/v1",
        "ftp://analytics-calling.webexapis.com",
        "https://analytics-calling.webexapis.com:99999",
    ],
)
def test_region_hosts_that_could_leak_a_token_are_refused(given: str) -> None:
    """Plain http off loopback, non-Webex hosts, user info, paths and bad ports are refused."""
    with pytest.raises(ValueError, match=r"must|valid|https"):
        region_base_url(given)


def test_the_readme_catalogue_example_is_a_valid_catalogue(tmp_path: Path) -> None:
    """The [[orgs]] example the README shows loads as it stands: a token file, an OAuth
    integration and a Service App org, in that order."""
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Many orgs in one deployment", 1)[1]
    example = section.split("```toml", 1)[1].split("```", 1)[0]
    catalogue = build_catalogue(load_settings(write(tmp_path, example)))
    assert [org.kind for org in catalogue.orgs] == ["token_file", "oauth", "service_app"]
    assert catalogue.service_app is not None
