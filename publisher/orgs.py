"""The org catalogue: which Webex orgs one deployment serves, and how each is reached.

Pure: models and rules only, no file or network I/O (reading token files is the credential
providers' job, :mod:`publisher.webex.credentials`).

Two sources, never both:

- ``[[orgs]]`` tables in the ``--config`` TOML file (or ``CDR_PUBLISHER_ORGS`` as JSON), each with
  an ``id`` and exactly one kind of credentials: ``token_file``, ``token`` (discouraged),
  OAuth refresh (``client_id``, ``client_secret`` or ``client_secret_file``, ``refresh_token_file``,
  optional first ``refresh_token``) or ``service_app = true`` (the ``[service_app]`` table mints the
  org's tokens);
- otherwise today's single-org settings (``ORG_ID`` and the ``WEBEX_*`` credentials): a catalogue
  of one, read exactly as before.

Places in messages: ``orgs[0]`` is the first ``[[orgs]]`` table (JSON path style, from 0); the
single org's settings are named by their environment variables. Secrets are ``SecretStr``: their
``repr``, ``str`` and :meth:`OrgEntry.redacted` never show them.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from publisher.errors import ConfigError
from publisher.webex import urls

if TYPE_CHECKING:
    from publisher.settings import Settings

REDACTED = "**********"
MAX_LOCATIONS = 10
DEFAULT_API_URL = "https://webexapis.com"
# An org id ends up in state keys (``cursor/<org>/<job>``, split on "/"), metric labels and file
# names: Webex org ids (UUIDs, base64 ids) fit; "/" and white space do not.
_ORG_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:=+-]{0,255}")
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_WEBEX_DOMAINS = (".webexapis.com", ".webex.com")
_ENV = "CDR_PUBLISHER_"

CredentialKind = Literal["token", "token_file", "oauth", "service_app"]
KINDS_TEXT = (
    "token_file, token, client_id with client_secret (or client_secret_file) and "
    "refresh_token_file, or service_app = true"
)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _valid_host(host: str) -> bool:
    if _is_loopback(host):
        return True
    if len(host) > 253 or "." not in host:
        return False
    return all(_LABEL.fullmatch(label) for label in host.split("."))


def region_base_url(value: str) -> str:
    """``host``, ``host:port`` or ``https://host[:port]`` as a base URL; ValueError if it is not
    a Webex host over https (or a loopback host, http allowed, for the simulator)."""
    text = value.strip()
    if "://" not in text:
        text = "https://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError("must be a host name, optionally with a port") from None
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host or parts.username is not None:
        raise ValueError("must be a host name, optionally with https:// and a port")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("must be a host name without a path or query")
    if not _valid_host(host):
        raise ValueError("is not a valid host name")
    loopback = _is_loopback(host)
    if parts.scheme == "http" and not loopback:
        raise ValueError("plain http is only allowed for loopback hosts; use https")
    if not loopback and not host.endswith(_WEBEX_DOMAINS):
        # The org's bearer token goes to this host: only Webex's own (or the local simulator).
        raise ValueError("must be a Webex host (*.webexapis.com or *.webex.com) or loopback")
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    # The reading the client applies to every URL the token goes to (both parsers agree).
    return urls.check_base(f"{parts.scheme}://{netloc}")[1]


def api_base_url(value: str) -> str:
    """The Webex API base (``https://webexapis.com``) as given, checked: https unless loopback,
    no user info, path, query or fragment (tokens and secrets are sent there)."""
    try:
        parts = urlsplit(value.strip())
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError("must be an https URL such as https://webexapis.com") from None
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host or parts.username is not None:
        raise ValueError("must be an https URL such as https://webexapis.com")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("must be a URL without a path or query (https://webexapis.com)")
    if parts.scheme == "http" and not _is_loopback(host):
        raise ValueError("plain http is only allowed for loopback hosts; use https")
    return urls.check_base(f"{parts.scheme}://{parts.netloc}")[1]


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def redacted(self) -> dict[str, Any]:
        """Set keys only, as JSON-compatible values, every secret as ``**********``."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None or (name == "service_app" and value is False):
                continue
            if isinstance(value, SecretStr):
                value = REDACTED
            elif isinstance(value, Path):
                value = str(value)
            elif isinstance(value, _Table):
                value = value.redacted()
            elif isinstance(value, list):
                if not value:
                    continue
                value = list(value)
            out[name] = value
        return out

    def secrets(self) -> list[str]:
        found: list[str] = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr) and value.get_secret_value():
                found.append(value.get_secret_value())
            elif isinstance(value, _Table):
                found += value.secrets()
        return found


def _one_of(place: str, given: Sequence[str], choices: str) -> str | None:
    if len(given) == 1:
        return None
    if not given:
        return f"{place}: give one of {choices}"
    return f"{place}: give only one of {choices}; found {' and '.join(given)}"


class OrgEntry(_Table):
    """One ``[[orgs]]`` table."""

    id: str = Field(description="the Webex org id (the Service App's targetOrgId)")
    name: str | None = Field(None, description="a readable name for logs and metrics")
    locations: list[str] = Field(default_factory=list, max_length=MAX_LOCATIONS)
    region_host: str | None = Field(
        None, description="the org's analytics host if known (else learned from 451)"
    )
    token: SecretStr | None = None
    token_file: Path | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    client_secret_file: Path | None = None
    refresh_token: SecretStr | None = None
    refresh_token_file: Path | None = None
    first_refresh_token_file: Path | None = None
    """The first refresh token, read-only (a mounted Secret), used while refresh_token_file
    holds none: how a deployment that keeps no secret in its config file seeds OAuth."""
    service_app: bool = False

    @field_validator("id")
    @classmethod
    def _id_shape(cls, value: str) -> str:
        if not _ORG_ID.fullmatch(value):
            raise ValueError(
                "must be 1-256 letters, digits or . _ : = + - (no '/' or spaces), starting with "
                "a letter or digit; use the org's UUID"
            )
        return value

    @field_validator("locations")
    @classmethod
    def _location_names(cls, value: list[str]) -> list[str]:
        if any(not name.strip() or "," in name for name in value):
            raise ValueError("location names must be non-empty and hold no comma")
        return value

    @field_validator("region_host")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        return None if value is None else region_base_url(value)

    @model_validator(mode="after")
    def _one_kind(self) -> OrgEntry:
        oauth_fields = [
            name
            for name in (
                "client_id",
                "client_secret",
                "client_secret_file",
                "refresh_token",
                "refresh_token_file",
                "first_refresh_token_file",
            )
            if getattr(self, name) is not None
        ]
        kinds = [name for name in ("token_file", "token") if getattr(self, name) is not None]
        if oauth_fields:
            kinds.append(oauth_fields[0])
        if self.service_app:
            kinds.append("service_app")
        problem = _one_of("credentials", kinds, KINDS_TEXT)
        if problem:
            raise ValueError(problem)
        if oauth_fields:
            if self.client_id is None:
                raise ValueError(f"{oauth_fields[0]} needs client_id (OAuth refresh)")
            secrets = [n for n in ("client_secret", "client_secret_file") if n in oauth_fields]
            problem = _one_of("OAuth", secrets, "client_secret or client_secret_file")
            if problem:
                raise ValueError(problem)
            if self.refresh_token_file is None:
                raise ValueError(
                    "OAuth needs refresh_token_file (where the rotated refresh token is kept)"
                )
            if self.refresh_token is not None and self.first_refresh_token_file is not None:
                raise ValueError(
                    "give the first refresh token once: refresh_token or first_refresh_token_file"
                )
        return self

    @property
    def kind(self) -> CredentialKind:
        if self.token_file is not None:
            return "token_file"
        if self.token is not None:
            return "token"
        if self.service_app:
            return "service_app"
        return "oauth"


class IntegrationEntry(_Table):
    """``[service_app.integration]``: an OAuth integration whose token has the scope
    ``spark:applications_token``, refreshed like any integration's."""

    client_id: str = Field(min_length=1)
    client_secret: SecretStr | None = None
    client_secret_file: Path | None = None
    refresh_token: SecretStr | None = None
    refresh_token_file: Path
    first_refresh_token_file: Path | None = None

    @model_validator(mode="after")
    def _one_secret(self) -> IntegrationEntry:
        given = [n for n in ("client_secret", "client_secret_file") if getattr(self, n)]
        problem = _one_of("integration", given, "client_secret or client_secret_file")
        if problem:
            raise ValueError(problem)
        return self


class ServiceAppEntry(_Table):
    """The ``[service_app]`` table: the Service App that mints each org's tokens."""

    application_id: str = Field(min_length=1, description="the Service App's application id")
    client_id: str = Field(min_length=1, description="the Service App's client id")
    client_secret: SecretStr | None = None
    client_secret_file: Path | None = None
    token_store_dir: Path = Field(
        description="directory of each org's rotated refresh token (mode 0600 files)"
    )
    applications_token_file: Path | None = None
    applications_token: SecretStr | None = None
    integration: IntegrationEntry | None = None
    api_url: str = Field(DEFAULT_API_URL, description="Webex API base for minting and refresh")

    @field_validator("api_url")
    @classmethod
    def _api(cls, value: str) -> str:
        return api_base_url(value)

    @model_validator(mode="after")
    def _one_each(self) -> ServiceAppEntry:
        given = [n for n in ("client_secret", "client_secret_file") if getattr(self, n)]
        problem = _one_of("service_app", given, "client_secret or client_secret_file")
        if problem:
            raise ValueError(problem)
        given = [
            n
            for n in ("applications_token_file", "applications_token", "integration")
            if getattr(self, n) is not None
        ]
        problem = _one_of(
            "service_app (the spark:applications_token token)",
            given,
            "applications_token_file, applications_token or an [service_app.integration] table",
        )
        if problem:
            raise ValueError(problem)
        return self

    @property
    def token_url(self) -> str:
        return f"{self.api_url}/v1/access_token"

    def mint_url(self) -> str:
        return f"{self.api_url}/v1/applications/{quote(self.application_id, safe='')}/token"


# --- rules across the catalogue (called by the Settings validator) -----------------------------

# The single-org settings that [[orgs]] replaces, and the name each gets in messages.
SINGLE_ORG_SETTINGS = (
    "org_id",
    "webex_token",
    "webex_token_file",
    "webex_client_id",
    "webex_client_secret",
    "webex_refresh_token",
    "webex_refresh_token_file",
    "webex_locations",
)


def _norm(path: Path) -> str:
    # No filesystem access (pure): the same file written two ways is not caught, a typo is.
    return os.path.normpath(os.path.abspath(path))  # noqa: PTH100 - no resolve(): pure


def catalogue_problem(
    orgs: Sequence[OrgEntry],
    service_app: ServiceAppEntry | None,
    single_org_set: Iterable[str],
) -> str | None:
    """The first rule the catalogue breaks, as a message naming the places; None if none."""
    if not orgs:
        return None
    single = [name for name in SINGLE_ORG_SETTINGS if name in set(single_org_set)]
    if single:
        return (
            f"orgs ([[orgs]] tables) and {_ENV}{single[0].upper()} are both set: with [[orgs]], "
            "each org's id and credentials go in its table; unset the single-org settings"
        )
    seen: dict[str, int] = {}
    files: dict[str, str] = {}
    tokens: dict[str, int] = {}
    for i, org in enumerate(orgs):
        if org.id in seen:
            return f"orgs[{i}].id: {org.id!r} is also orgs[{seen[org.id]}].id (ids must be unique)"
        seen[org.id] = i
        for name in ("token_file", "refresh_token_file"):
            path: Path | None = getattr(org, name)
            if path is None:
                continue
            key = _norm(path)
            if key in files:
                # A token reads the org it belongs to: one file for two orgs would publish one
                # org's records under two ids (or rotate one refresh token behind the other).
                return f"orgs[{i}].{name}: the same file as {files[key]}"
            files[key] = f"orgs[{i}].{name}"
        if org.token is not None:
            value = org.token.get_secret_value()
            if value in tokens:
                return f"orgs[{i}].token: the same token as orgs[{tokens[value]}].token"
            tokens[value] = i
        if org.service_app and service_app is None:
            return f"orgs[{i}].service_app: needs a [service_app] table"
    return None


def secret_values(orgs: Sequence[OrgEntry], service_app: ServiceAppEntry | None) -> list[str]:
    """Every secret written in the [[orgs]] and [service_app] tables, in clear (for scrubbing)."""
    found = [secret for org in orgs for secret in org.secrets()]
    if service_app is not None:
        found += service_app.secrets()
    return found


# --- the catalogue the daemon uses -------------------------------------------------------------

_ENV_PLACES = {
    "id": "CDR_PUBLISHER_ORG_ID",
    "token": "CDR_PUBLISHER_WEBEX_TOKEN",
    "token_file": "CDR_PUBLISHER_WEBEX_TOKEN_FILE",
    "client_id": "CDR_PUBLISHER_WEBEX_CLIENT_ID",
    "client_secret": "CDR_PUBLISHER_WEBEX_CLIENT_SECRET",
    "refresh_token": "CDR_PUBLISHER_WEBEX_REFRESH_TOKEN",
    "refresh_token_file": "CDR_PUBLISHER_WEBEX_REFRESH_TOKEN_FILE",
    "locations": "CDR_PUBLISHER_WEBEX_LOCATIONS",
}


@dataclass(frozen=True)
class Org:
    """One org of the catalogue, whichever source it came from."""

    id: str
    kind: CredentialKind
    where: str
    """``orgs[3]``, or ``environment`` for the single org of the WEBEX_* settings."""
    name: str | None = None
    locations: tuple[str, ...] = ()
    region_base_url: str | None = None
    token: SecretStr | None = field(default=None, repr=False)
    token_file: Path | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = field(default=None, repr=False)
    client_secret_file: Path | None = None
    refresh_token: SecretStr | None = field(default=None, repr=False)
    refresh_token_file: Path | None = None
    first_refresh_token_file: Path | None = None

    def place(self, name: str) -> str:
        """How messages name this org's setting ``name``: ``orgs[3].token_file`` or
        ``CDR_PUBLISHER_WEBEX_TOKEN_FILE``."""
        if self.where == "environment":
            return _ENV_PLACES.get(name, name)
        return f"{self.where}.{name}"

    @property
    def label(self) -> str:
        """What logs and errors call the org (its id; never a secret)."""
        return self.id

    def describe(self) -> str:
        parts = [f"org {self.id!r}"]
        if self.name:
            parts.append(f"({self.name})")
        parts.append(f"credentials {self.kind}")
        return " ".join(parts)


@dataclass(frozen=True)
class Catalogue:
    """The orgs this deployment serves, in configuration order."""

    orgs: tuple[Org, ...]
    service_app: ServiceAppEntry | None = None
    from_environment: bool = False
    warnings: tuple[str, ...] = ()
    """Things worth a log line at start (a token written in the config file)."""

    def get(self, org_id: str) -> Org:
        for org in self.orgs:
            if org.id == org_id:
                return org
        raise KeyError(org_id)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(org.id for org in self.orgs)

    def __len__(self) -> int:
        return len(self.orgs)


def _from_entry(i: int, entry: OrgEntry) -> Org:
    return Org(
        id=entry.id,
        kind=entry.kind,
        where=f"orgs[{i}]",
        name=entry.name,
        locations=tuple(entry.locations),
        region_base_url=entry.region_host,
        token=entry.token,
        token_file=entry.token_file,
        client_id=entry.client_id,
        client_secret=entry.client_secret,
        client_secret_file=entry.client_secret_file,
        refresh_token=entry.refresh_token,
        refresh_token_file=entry.refresh_token_file,
        first_refresh_token_file=entry.first_refresh_token_file,
    )


def _from_single_org(settings: Settings) -> Org:
    """Today's settings as they were read before catalogues: OAuth when a client id is set,
    else the token, else the token file (the same precedence as ``provider_from_settings``)."""
    common: dict[str, Any] = {
        "id": settings.org_id,
        "where": "environment",
        "locations": tuple(settings.webex_locations),
    }
    if settings.webex_client_id:
        return Org(
            kind="oauth",
            client_id=settings.webex_client_id,
            client_secret=settings.webex_client_secret,
            refresh_token=settings.webex_refresh_token,
            refresh_token_file=settings.webex_refresh_token_file,
            **common,
        )
    if settings.webex_token is not None:
        return Org(kind="token", token=settings.webex_token, **common)
    if settings.webex_token_file is not None:
        return Org(kind="token_file", token_file=settings.webex_token_file, **common)
    raise ConfigError(
        "no Webex credentials: set webex_token, webex_token_file, or webex_client_id with "
        "webex_client_secret and webex_refresh_token (or give [[orgs]] tables, docs/orgs.md)"
    )


def build_catalogue(settings: Settings) -> Catalogue:
    """The catalogue the settings describe. The rules were checked when the settings were built;
    this raises ConfigError only when there are no credentials at all."""
    if not settings.orgs:
        return Catalogue((_from_single_org(settings),), from_environment=True)
    orgs = tuple(_from_entry(i, entry) for i, entry in enumerate(settings.orgs))
    warnings = [
        f"{org.place('token')}: a token written in the config file (org {org.id!r}); prefer "
        "token_file, which can be replaced without a restart and kept out of the config"
        for org in orgs
        if org.kind == "token"
    ]
    if settings.service_app is not None and settings.service_app.applications_token is not None:
        warnings.append(
            "service_app.applications_token: a token written in the config file; prefer "
            "applications_token_file"
        )
    return Catalogue(orgs, settings.service_app, warnings=tuple(warnings))
