"""The one settings object, built once at the entry point and passed down.

Sources, highest first: environment variables ``CDR_PUBLISHER_<NAME>``, then keyword arguments
and an optional TOML file (``--config``; keys are the setting names in lower case), then defaults.
An unknown ``CDR_PUBLISHER_*`` variable or TOML key, or an invalid value, stops start-up with a
:class:`ConfigError` that names the setting. Secrets are ``SecretStr`` and print as ``**********``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from publisher.errors import ConfigError
from publisher.orgs import OrgEntry, ServiceAppEntry, catalogue_problem
from publisher.orgs import secret_values as catalogue_secret_values
from publisher.webex import urls

ENV_PREFIX = "CDR_PUBLISHER_"
DEFAULT_WEBEX_BASE_URL = "https://analytics-calling.webexapis.com"
DEFAULT_TOKEN_URL = "https://webexapis.com/v1/access_token"  # noqa: S105 - a URL, not a secret
REDACTED = "**********"
# librdkafka properties passed through KAFKA_EXTRA whose values are credentials (OIDC client
# secret, JAAS or unsecured-JWT config, keystore passwords, key passphrases, inline PEM keys): any
# name holding password, passphrase, secret or private.key (librdkafka CONFIGURATION.md names e.g.
# sasl.oauthbearer.assertion.private.key.passphrase and ssl.keystore.password).
_SECRET_PROPERTY = re.compile(
    r"password|passphrase|secret|private\.key|jaas|oauthbearer\.config|key\.pem"
    r"|token(?!\.endpoint)",
    re.IGNORECASE,
)
STREAM_RETENTION_HOURS = 12.0
# Admin tokens shorter than this are guessable: refused at start.
MIN_ADMIN_TOKEN_LENGTH = 16


def is_secret_property(name: str) -> bool:
    """True for a librdkafka property name whose value must never be shown."""
    return bool(_SECRET_PROPERTY.search(name))


def redact_url(url: str) -> str:
    """``url`` with any password in its user info replaced by ``**********``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:{REDACTED}@{parts.hostname or ''}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    """Every setting of cdr-publisher. Environment: ``CDR_PUBLISHER_`` + the name in upper case."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        frozen=True,
        case_sensitive=False,
        env_nested_delimiter=None,
    )

    # --- Webex --------------------------------------------------------------------------------
    webex_base_url: str = Field(
        DEFAULT_WEBEX_BASE_URL,
        description="Webex analytics host; http only for loopback (the simulator)",
    )
    webex_token: SecretStr | None = Field(None, description="static access token")
    webex_token_file: Path | None = Field(None, description="file holding a static access token")
    webex_client_id: str | None = Field(None, description="OAuth integration client id")
    webex_client_secret: SecretStr | None = Field(None, description="OAuth client secret")
    webex_refresh_token: SecretStr | None = Field(None, description="OAuth refresh token")
    webex_refresh_token_file: Path | None = Field(
        None,
        description="where the rotated refresh token is kept (mode 0600); read first if present",
    )
    webex_token_url: str = Field(DEFAULT_TOKEN_URL, description="OAuth token endpoint")
    webex_initial_requests_per_minute: float = Field(
        1.0, gt=0, description="initial requests per minute per token (Webex: 1)"
    )
    webex_page_requests_per_minute: float = Field(
        10.0, gt=0, description="pagination requests per minute per token (Webex: 10)"
    )
    webex_page_size: int = Field(5000, ge=500, le=5000, description="`max` records per page")
    webex_locations: list[str] = Field(
        default_factory=list, max_length=10, description="location names to filter on (max 10)"
    )
    webex_timeout_seconds: float = Field(30.0, gt=0, description="HTTP timeout per request")
    webex_max_reply_bytes: int = Field(
        64 * 1024 * 1024, gt=0, description="a larger reply is refused (untrusted input)"
    )
    webex_clock_skew_seconds: float = Field(
        30.0, ge=0, description="margin kept from every window boundary"
    )

    # --- Kafka --------------------------------------------------------------------------------
    kafka_bootstrap_servers: str = Field("127.0.0.1:9092", description="bootstrap servers")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="security.protocol"
    )
    kafka_sasl_mechanism: (
        Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None
    ) = Field(None, description="sasl.mechanism")
    kafka_sasl_username: str | None = Field(None, description="sasl.username")
    kafka_sasl_password: SecretStr | None = Field(None, description="sasl.password")
    kafka_ssl_ca_location: Path | None = Field(None, description="ssl.ca.location")
    kafka_ssl_certificate_location: Path | None = Field(
        None, description="ssl.certificate.location"
    )
    kafka_ssl_key_location: Path | None = Field(None, description="ssl.key.location")
    kafka_ssl_key_password: SecretStr | None = Field(None, description="ssl.key.password")
    kafka_extra: dict[str, str] = Field(
        default_factory=dict, description="any other librdkafka property (JSON object in env)"
    )

    # --- Schema Registry ----------------------------------------------------------------------
    schema_registry_url: str = Field(
        "http://127.0.0.1:8081", description="Confluent-compatible URL"
    )
    schema_registry_basic_auth: SecretStr | None = Field(
        None, description="user:password for the registry"
    )
    schema_registry_ca_location: Path | None = Field(None, description="CA bundle for the registry")
    schema_auto_register: bool = Field(
        default=True, description="register the event schema at start; off: require it registered"
    )
    schema_compatibility: Literal[
        "BACKWARD",
        "BACKWARD_TRANSITIVE",
        "FORWARD",
        "FORWARD_TRANSITIVE",
        "FULL",
        "FULL_TRANSITIVE",
        "NONE",
        "UNMANAGED",
    ] = Field(
        "BACKWARD_TRANSITIVE",
        description="compatibility set on the subject at registration; UNMANAGED: the operator's",
    )

    # --- Topics -------------------------------------------------------------------------------
    events_topic: str = Field("webex.calling.cdr", min_length=1, description="events topic")
    state_topic: str = Field(
        "webex.calling.cdr.state", min_length=1, description="compacted state topic"
    )
    dlq_topic: str = Field("webex.calling.cdr.dlq", min_length=1, description="dead letter topic")
    create_topics: bool = Field(default=True, description="create missing topics at start")
    topic_partitions: int = Field(6, ge=1, description="partitions of created topics")
    state_partitions: int = Field(
        12,
        ge=1,
        le=1024,
        description="partitions (slots) of a state topic the publisher creates; fixed then: "
        "an existing topic keeps its count",
    )
    topic_replication_factor: int = Field(
        -1, description="replication of created topics (-1: the broker's default)"
    )

    # --- The daemon ---------------------------------------------------------------------------
    org_id: str = Field("default", min_length=1, description="Webex org id this instance serves")
    deployment_id: str = Field(
        "default", min_length=1, description="names this deployment in transactional.id"
    )
    poll_interval_seconds: float = Field(60.0, gt=0, description="seconds between stream polls")
    coordination: Literal["group", "none"] = Field(
        "group",
        description="group: replicas share the slots through the consumer group "
        "cdr-publisher.<deployment>; none: this process owns every slot (a second one fences it)",
    )
    group_instance_id: str | None = Field(
        None,
        description="static group membership (e.g. the pod name): a restart within the session "
        "timeout keeps this replica's slots",
    )
    group_session_timeout_seconds: float = Field(
        15.0, ge=1, le=1800, description="a replica silent this long loses its slots (classic)"
    )
    group_protocol: Literal["classic", "consumer"] = Field(
        "classic", description="classic (cooperative-sticky) or KIP-848's consumer protocol"
    )
    org_backoff_max_seconds: float = Field(
        300.0,
        gt=0,
        description="an org whose API calls fail (token revoked, role missing) retries at "
        "doubling intervals up to this",
    )
    overlap_seconds: float = Field(
        300.0, ge=0, description="each poll re-reads this much before the cursor"
    )
    dedup_horizon_hours: float = Field(
        13.0, gt=0, description="how long a Report ID is remembered (covers the 12 h stream)"
    )
    batch_max_records: int = Field(
        5000, ge=1, description="records per Kafka transaction (a larger page is cut into several)"
    )
    http_host: str = Field("127.0.0.1", description="health/metrics/admin HTTP host")
    http_port: int = Field(9400, ge=0, le=65535, description="health/metrics/admin HTTP port")
    admin_token: SecretStr | None = Field(
        None,
        description="bearer token the /replays admin routes require (16+ characters); "
        "unset with no ADMIN_TOKEN_FILE: admin routes disabled",
    )
    admin_token_file: Path | None = Field(
        None, description="file holding the admin token (instead of ADMIN_TOKEN)"
    )
    replay_topic_pattern: str | None = Field(
        None,
        description="regex a replay --topic must match in full; unset: the events topic or "
        "<events topic>.replay.<name>",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="log level")
    log_format: Literal["json", "console"] = Field("json", description="log line format")

    # --- Fault injection (tests only) -------------------------------------------------------
    fault_transaction_pause_seconds: float = Field(
        0.0, ge=0, description="tests only: hold a transaction open this long before committing"
    )
    fault_transaction_pause_every: int = Field(
        0, ge=0, description="tests only: ...on every Nth transaction of the process (0: never)"
    )

    # --- Many orgs (docs/orgs.md) -------------------------------------------------------------
    orgs: list[OrgEntry] = Field(
        default_factory=list,
        description="the org catalogue: [[orgs]] tables (docs/orgs.md); "
        "empty: one org from ORG_ID and the WEBEX_* credentials",
    )
    service_app: ServiceAppEntry | None = Field(
        None, description="[service_app] table: the Service App that mints orgs' tokens"
    )

    @field_validator("webex_base_url", "webex_token_url")
    @classmethod
    def _webex_url(cls, url: str) -> str:
        # The token and the client secret go there: the strict check the client applies to every
        # URL it follows (no user info, backslash, odd host or port), never echoing the value.
        try:
            _, canonical = urls.check_base(url)
        except urls.UrlRefusedError as exc:
            raise ValueError(f"refused: {exc.message}") from None
        return canonical

    @field_validator("schema_registry_url")
    @classmethod
    def _https_unless_loopback(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http(s) URL, got {redact_url(url)!r}")
        if parts.scheme == "http" and not is_loopback_url(url):
            raise ValueError("plain http is only allowed for loopback hosts; use https")
        return url.rstrip("/")

    @field_validator("admin_token", mode="before")
    @classmethod
    def _empty_admin_token_is_none(cls, token: object) -> object:
        # CDR_PUBLISHER_ADMIN_TOKEN= (an env file or compose passing an unset variable) means
        # "no token", not a short one.
        return None if isinstance(token, str) and not token.strip() else token

    @field_validator("admin_token")
    @classmethod
    def _admin_token_long_enough(cls, token: SecretStr | None) -> SecretStr | None:
        if token is not None and len(token.get_secret_value().strip()) < MIN_ADMIN_TOKEN_LENGTH:
            raise ValueError(f"must be at least {MIN_ADMIN_TOKEN_LENGTH} characters")
        return token

    @field_validator("replay_topic_pattern")
    @classmethod
    def _pattern_compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"not a regular expression ({exc})") from None
        return pattern

    @field_validator("schema_compatibility", mode="before")
    @classmethod
    def _upper_case_level(cls, level: object) -> object:
        return level.upper() if isinstance(level, str) else level

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> Settings:
        if self.kafka_security_protocol.startswith("SASL") and self.kafka_sasl_mechanism is None:
            raise ValueError("kafka_sasl_mechanism is required with a SASL security protocol")
        return self

    @model_validator(mode="after")
    def _horizon_covers_the_stream(self) -> Settings:
        # A mark must outlive every window that can hand its record over again: the stream serves
        # 12 h back, and each poll re-reads OVERLAP_SECONDS before the cursor.
        needed = STREAM_RETENTION_HOURS + self.overlap_seconds / 3600.0
        if self.dedup_horizon_hours < needed:
            raise ValueError(
                f"{ENV_PREFIX}DEDUP_HORIZON_HOURS ({self.dedup_horizon_hours:g}) must be at least "
                f"the stream's {STREAM_RETENTION_HOURS:g} h retention plus "
                f"{ENV_PREFIX}OVERLAP_SECONDS ({self.overlap_seconds:g} s): {needed:.3f} h; "
                "a shorter horizon forgets Report IDs the stream can still hand over again"
            )
        return self

    @model_validator(mode="after")
    def _one_admin_token_source(self) -> Settings:
        if self.admin_token is not None and self.admin_token_file is not None:
            raise ValueError(
                f"set one of {ENV_PREFIX}ADMIN_TOKEN and {ENV_PREFIX}ADMIN_TOKEN_FILE, not both"
            )
        return self

    @field_serializer("kafka_extra")
    def _dump_extra(self, extra: dict[str, str]) -> dict[str, str]:
        # model_dump() and model_dump_json() show no credential either.
        return {k: REDACTED if is_secret_property(k) else v for k, v in extra.items()}

    @field_serializer("schema_registry_url")
    def _dump_url(self, url: str) -> str:
        return redact_url(url)

    def __repr_args__(self) -> list[tuple[str | None, Any]]:
        # repr(), str() and rich print these: the redacted values, never a secret.
        return list(self.redacted_dump().items())

    def replay_topic_regex(self) -> re.Pattern[str]:
        """What a replay's target topic must match in full (see ``replay_topic_pattern``)."""
        if self.replay_topic_pattern is not None:
            return re.compile(self.replay_topic_pattern)
        return re.compile(re.escape(self.events_topic) + r"(?:\.replay\.[A-Za-z0-9._-]{1,100})?")

    @model_validator(mode="after")
    def _catalogue_rules(self) -> Settings:
        fields = type(self).model_fields
        # Set to its default (as `config` output fed back does) is not set for this rule.
        changed = {
            name
            for name in self.model_fields_set
            if getattr(self, name) != fields[name].get_default(call_default_factory=True)
        }
        problem = catalogue_problem(self.orgs, self.service_app, changed)
        if problem:
            raise ValueError(problem)
        return self

    @property
    def dedup_horizon_seconds(self) -> float:
        return self.dedup_horizon_hours * 3600.0

    def secret_values(self) -> list[str]:
        """Every credential these settings hold, in clear: for the log scrubber, never to show."""
        found = [
            secret.get_secret_value()
            for secret in (
                self.webex_token,
                self.webex_client_secret,
                self.webex_refresh_token,
                self.kafka_sasl_password,
                self.kafka_ssl_key_password,
                self.schema_registry_basic_auth,
                self.admin_token,
            )
            if secret is not None
        ]
        if self.schema_registry_basic_auth is not None:
            # A client may show the password part alone.
            found.append(self.schema_registry_basic_auth.get_secret_value().partition(":")[2])
        found += [v for k, v in self.kafka_extra.items() if is_secret_property(k)]
        found += catalogue_secret_values(self.orgs, self.service_app)
        for url in (self.webex_base_url, self.webex_token_url, self.schema_registry_url):
            password = urlsplit(url).password
            if password:
                found.append(password)
        return [value for value in found if value]

    def redacted_dump(self) -> dict[str, Any]:
        """Every setting by name as JSON-compatible values (None when unset), with secrets, secret
        KAFKA_EXTRA properties and URL passwords shown as ``**********``."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = REDACTED
            elif isinstance(value, Path):
                value = str(value)
            elif name == "orgs":
                value = [org.redacted() for org in value]
            elif name == "service_app" and value is not None:
                value = value.redacted()
            elif isinstance(value, list):
                value = list(value)
            elif name == "kafka_extra":
                value = {k: REDACTED if is_secret_property(k) else v for k, v in value.items()}
            elif name.endswith("_url"):
                value = redact_url(value)
            out[name] = value
        return out

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],  # noqa: ARG003 - the signature pydantic-settings calls
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,  # noqa: ARG003 - no .env files on purpose
        file_secret_settings: PydanticBaseSettingsSource,  # noqa: ARG003
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file comes in through init kwargs (see load_settings) below env vars.
        return (env_settings, init_settings)


def read_admin_token(settings: Settings) -> str | None:
    """The admin token from ``admin_token`` or ``admin_token_file`` (None: admin routes off).
    ConfigError naming the setting when the file cannot be read or holds a short token."""
    if settings.admin_token is not None:
        return settings.admin_token.get_secret_value().strip()
    path = settings.admin_token_file
    if path is None:
        return None
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(
            f"invalid setting {ENV_PREFIX}ADMIN_TOKEN_FILE: cannot read {path} ({exc.strerror})"
        ) from None
    if len(token) < MIN_ADMIN_TOKEN_LENGTH:
        raise ConfigError(
            f"invalid setting {ENV_PREFIX}ADMIN_TOKEN_FILE: {path} must hold a token of at least "
            f"{MIN_ADMIN_TOKEN_LENGTH} characters"
        )
    return token


def _env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def _unknown_env() -> list[str]:
    known = {_env_name(name) for name in Settings.model_fields}
    return sorted(
        k for k in os.environ if k.upper().startswith(ENV_PREFIX) and k.upper() not in known
    )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"--config {path}: cannot read it ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config {path}: not valid TOML ({exc})") from None
    unknown = sorted(set(data) - set(Settings.model_fields))
    if unknown:
        raise ConfigError(f"--config {path}: unknown setting {unknown[0]!r}")
    return data


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings, or raise ConfigError naming the first bad setting."""
    unknown = _unknown_env()
    if unknown:
        raise ConfigError(f"unknown setting {unknown[0]} (see `cdr-publisher config --help`)")
    values: dict[str, Any] = _read_toml(config_file) if config_file else {}
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings(**values)
    except SettingsError as exc:
        # A CDR_PUBLISHER_ variable that should hold JSON (a list or an object) does not.
        found = re.search(r'field "(\w+)"', str(exc))
        where = _env_name(found.group(1)) if found else "settings"
        raise ConfigError(f"invalid setting {where}: not valid JSON") from None
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = [str(part) for part in error["loc"]]
        message = error["msg"].removeprefix("Value error, ")
        if not loc:
            # A rule across settings (its message names them): there is no one variable to blame.
            raise ConfigError(f"invalid settings: {message}") from None
        if loc[0] in ("orgs", "service_app"):
            # A TOML table: name the place in it (orgs[3].token_file), as the file is written.
            place = loc[0] + "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in loc[1:])
            raise ConfigError(f"invalid setting {place}: {message}") from None
        # Never echo the input: it may be a secret.
        raise ConfigError(f"invalid setting {_env_name(loc[0])}: {message}") from None
