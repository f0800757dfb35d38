"""Per-org access tokens: one provider per org, made by a factory, never kept in module globals.

- :class:`TokenFile`: a token in a file, re-read when the file changes (a ``stat`` per request:
  device, inode, size, mtime and ctime), so an operator who replaces a revoked token's file
  recovers the org without a restart; after a 401, :meth:`TokenFile.refresh` re-reads it and is
  True only if the token changed.
- :class:`OrgOAuthTokens`: an OAuth integration's refresh flow for one org (``OAuthTokens``
  with the org in its identity and its errors, and every token registered with the scrubber).
- :class:`ServiceApp` / :class:`ServiceAppTokens`: a Service App authorised in each customer
  org. Per org it mints a token pair with ``POST {api}/v1/applications/{id}/token``
  (``clientId``, ``clientSecret``, ``targetOrgId``; bearer: a token with the scope
  ``spark:applications_token``), refreshes it with the standard refresh grant before it expires
  and after a 401 (lifetimes come from each reply), and keeps the org's rotated refresh token in a
  0600 file of a store directory, so a restart refreshes instead of minting. A refresh token that
  Webex refuses (400/401) falls back to minting once. Facts: ../shared/webex/API.md, "Many orgs".
- :class:`Credentials`: the factory. ``Credentials(catalogue, ...).for_org(org)`` gives each
  org's provider (one per org and factory; the caller keeps the factory in its context).

Every token and secret is registered with :func:`publisher.logs.register_secret` the moment it is
read or obtained. Tokens and secrets are sent only to the configured token endpoint or Service
App API host (https, or loopback for the simulator), never following redirects. Errors name the
org and the setting, never a secret.

Each provider's ``identity`` names its rate-limit scope without a secret: one per org token, so N
orgs with N tokens get N limiters from a :class:`~publisher.webex.ratelimit.LimiterRegistry`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import requests

from publisher import logs
from publisher.errors import (
    ConfigError,
    WebexAuthError,
    WebexError,
    WebexRequestError,
    WebexUnavailableError,
)
from publisher.orgs import Catalogue, Org, ServiceAppEntry, api_base_url
from publisher.settings import Settings
from publisher.webex import urls
from publisher.webex.auth import (
    OAuthTokens,
    StaticToken,
    TokenProvider,
    send_checked,
    write_secret_file,
)

log = logging.getLogger("publisher.webex")

Wallclock = Callable[[], float]

# A bearer token is one header value: printable ASCII without spaces (RFC 6750 b64token and more).
_TOKEN_SHAPE = re.compile(r"[\x21-\x7e]+")
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:=+-]{0,200}")
# When a reply gives no lifetime, renew after this long rather than never (a reply without
# expires_in is not what Webex sends; the token is still used until then or a 401).
_UNKNOWN_LIFETIME_S = 3600.0


def read_secret_file(path: Path, place: str) -> str:
    """The secret in ``path`` (surrounding white space removed), registered with the scrubber;
    ConfigError naming ``place`` if it cannot be read, is empty or is not one token."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{place} {path}: cannot read it ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{place} {path}: not UTF-8 text") from None
    value = text.strip()
    if not value:
        raise ConfigError(f"{place} {path}: the file is empty")
    if not _TOKEN_SHAPE.fullmatch(value):
        logs.register_secret(value)
        raise ConfigError(f"{place} {path}: holds more than one word (white space inside)")
    logs.register_secret(value)
    return value


def _renew_due(now: float, lifetime: float) -> float:
    # As OAuthTokens: renew a tenth of the lifetime (at most an hour) before expiry, so a long
    # pagination never meets an expired token.
    return now + lifetime - min(lifetime / 10.0, 3600.0)


def _lifetime(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) and value > 0:
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if number > 0 else None
    return None


# --- a token in a file ---------------------------------------------------------------------------


class TokenFile:
    """A static access token kept in a file, re-read whenever the file changes.

    Cheap per request: one ``os.stat``; the file is read only when its stamp (device, inode,
    size, mtime_ns, ctime_ns) differs. A file that cannot be read, is empty or holds no single
    token when it changes keeps the last good token (with one warning per problem) and is tried
    again on the next request, so a file being rewritten is picked up once complete.
    """

    def __init__(self, path: Path, *, place: str = "token_file") -> None:
        self._path = path
        self._place = place
        self._lock = threading.Lock()
        self._problem: str | None = None
        stamp = self._stamp_or_raise()
        self._token = read_secret_file(path, place)
        self._stamp: tuple[int, ...] | None = stamp
        self._identity = "token_file:" + os.path.abspath(path)  # noqa: PTH100 - no resolve()

    def _stamp_or_raise(self) -> tuple[int, ...]:
        try:
            return _stamp(self._path)
        except OSError as exc:
            raise ConfigError(
                f"{self._place} {self._path}: cannot read it ({exc.strerror})"
            ) from None

    @property
    def identity(self) -> str:
        return self._identity

    @property
    def path(self) -> Path:
        return self._path

    def token(self) -> str:
        with self._lock:
            self._reload_locked()
            return self._token

    def refresh(self) -> bool:
        """After a 401: re-read the file; True only if it now holds another token."""
        with self._lock:
            before = self._token
            self._reload_locked()
            return self._token != before

    def _reload_locked(self) -> None:
        try:
            stamp = _stamp(self._path)
        except OSError as exc:
            self._warn(f"cannot read it ({exc.strerror}); keeping the last token")
            return
        if stamp == self._stamp:
            return
        try:
            token = read_secret_file(self._path, self._place)
        except ConfigError as exc:
            # Not stamped: tried again on the next request (an operator may be mid-write).
            self._warn(str(exc).split(": ", 1)[-1] + "; keeping the last token")
            return
        self._stamp = stamp
        self._problem = None
        if token != self._token:
            self._token = token
            log.info(
                "token file changed; using the new token",
                extra={"setting": self._place, "path": str(self._path)},
            )

    def _warn(self, problem: str) -> None:
        if problem != self._problem:
            self._problem = problem
            log.warning(
                "token file: %s",
                problem,
                extra={"setting": self._place, "path": str(self._path)},
            )

    def __repr__(self) -> str:
        return f"TokenFile({str(self._path)!r}, <token redacted>)"


def _stamp(path: Path) -> tuple[int, ...]:
    st = path.stat()  # follows symlinks: a Kubernetes secret update swaps the link's target
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


# --- OAuth refresh per org -----------------------------------------------------------------------


def _named(org_id: str, exc: WebexError) -> WebexError:
    """``exc`` again, its message naming the org (the class, status and retry hint kept)."""
    named = type(exc)(
        f"org {org_id}: {exc.message}",
        status=exc.status,
        tracking_id=exc.tracking_id,
        retry_after=exc.retry_after,
    )
    named.retriable = exc.retriable
    return named


class OrgOAuthTokens(OAuthTokens):
    """An OAuth integration's tokens for one org: rotated refresh token in ``refresh_token_file``,
    identity per org (one integration authorised in many orgs holds one token per org), errors
    naming the org, every token registered with the scrubber as it arrives."""

    def __init__(self, *, org_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._org_id = org_id
        logs.register_secret(self._refresh_token)

    @property
    def identity(self) -> str:
        return f"oauth:{self._token_url}:{self._client_id}:{self._org_id}"

    def _refresh_locked(self) -> str:
        try:
            access = super()._refresh_locked()
        except WebexError as exc:
            raise _named(self._org_id, exc) from None
        logs.register_secret(access)
        logs.register_secret(self._refresh_token)
        return access

    def __repr__(self) -> str:
        return f"OrgOAuthTokens(org={self._org_id!r}, client_id={self._client_id!r}, <redacted>)"


# --- the Service App -----------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredRefresh:
    """An org's refresh token as the store keeps it."""

    token: str = field(repr=False)
    expires_at: float | None
    """Wall-clock seconds, from the reply's ``refresh_token_expires_in`` (None: not said)."""


class RefreshTokenStore:
    """One 0600 file per org id in a directory (0700 when created), replaced atomically."""

    def __init__(self, directory: Path, *, place: str = "service_app.token_store_dir") -> None:
        self._dir = directory
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"{place} {directory}: cannot create it ({exc.strerror})") from None
        if not directory.is_dir():
            raise ConfigError(f"{place} {directory}: not a directory")
        if not os.access(directory, os.W_OK | os.X_OK):
            raise ConfigError(f"{place} {directory}: cannot write to it")

    @property
    def directory(self) -> Path:
        return self._dir

    def path_for(self, org_id: str) -> Path:
        """The org's file: its id when that is a safe file name, else a hash of it."""
        name = (
            org_id if _SAFE_NAME.fullmatch(org_id) else hashlib.sha256(org_id.encode()).hexdigest()
        )
        return self._dir / f"{name}.refresh.json"

    def load(self, org_id: str) -> StoredRefresh | None:
        """The stored refresh token (registered with the scrubber), or None if there is none or
        it cannot be read (the org then mints a new pair)."""
        path = self.path_for(org_id)
        try:
            data = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, orjson.JSONDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not JSON"
            log.warning(
                "cannot read a stored Service App refresh token; minting a new pair",
                extra={"org": org_id, "path": str(path), "reason": reason},
            )
            return None
        token = data.get("refresh_token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token or data.get("org_id") != org_id:
            log.warning(
                "stored Service App refresh token is not for this org or empty; minting",
                extra={"org": org_id, "path": str(path)},
            )
            return None
        logs.register_secret(token)
        expires = data.get("refresh_token_expires_at")
        return StoredRefresh(token, float(expires) if isinstance(expires, int | float) else None)

    def save(self, org_id: str, token: str, expires_at: float | None) -> None:
        """Write the org's refresh token at once (atomic, 0600); OSError if it cannot."""
        body = {"org_id": org_id, "refresh_token": token, "refresh_token_expires_at": expires_at}
        write_secret_file(self.path_for(org_id), orjson.dumps(body).decode())

    def __repr__(self) -> str:
        return f"RefreshTokenStore({str(self._dir)!r})"


@dataclass(frozen=True)
class _Reply:
    status: int
    headers: Mapping[str, str]
    data: dict[str, Any]
    body: bytes = field(repr=False)

    def webex_message(self, secrets: tuple[str, ...]) -> str:
        """Webex's ``message`` (or first error description), one line, with anything we sent
        that it might echo removed."""
        message = self.data.get("message")
        errors = self.data.get("errors")
        if not isinstance(message, str) and isinstance(errors, list) and errors:
            first = errors[0]
            message = first.get("description") if isinstance(first, dict) else None
        if not isinstance(message, str):
            message = self.data.get("error") if isinstance(self.data.get("error"), str) else None
        text = " ".join(str(message or "no message").split())[:300]
        for secret in secrets:
            if secret:
                text = text.replace(secret, logs.REDACTED)
        return logs.scrub(text)

    @property
    def tracking_id(self) -> str | None:
        value = self.data.get("trackingId") or self.headers.get("TrackingID")
        return value if isinstance(value, str) else None

    @property
    def retry_after(self) -> float | None:
        value = self.headers.get("Retry-After", "")
        try:
            return max(0.0, float(value))
        except ValueError:
            return None


class ServiceApp:
    """A Service App shared by the orgs that use it: its credentials, the token that may mint
    (scope ``spark:applications_token``), the Webex API host and the refresh token store."""

    def __init__(
        self,
        *,
        application_id: str,
        client_id: str,
        client_secret: str,
        applications_tokens: TokenProvider,
        store: RefreshTokenStore,
        api_url: str = "https://webexapis.com",
        session: requests.Session | None = None,
        timeout: float = 30.0,
        clock: Wallclock = time.time,
    ) -> None:
        if not application_id or not client_id or not client_secret:
            raise ConfigError("service_app: application_id, client_id and client_secret are needed")
        try:
            self._origin, self._api = urls.check_base(api_base_url(api_url))
        except ValueError as exc:  # UrlRefusedError is one; neither quotes the URL
            raise ConfigError(f"service_app.api_url: {exc}") from None
        self.application_id = application_id
        self.client_id = client_id
        self._client_secret = client_secret
        logs.register_secret(client_secret)
        self.applications_tokens = applications_tokens
        self.store = store
        self._session = session
        self._timeout = timeout
        self.clock = clock

    @classmethod
    def from_entry(
        cls,
        entry: ServiceAppEntry,
        *,
        timeout: float = 30.0,
        session: requests.Session | None = None,
        clock: Wallclock = time.time,
    ) -> ServiceApp:
        """The Service App a ``[service_app]`` table describes; ConfigError naming the setting
        when a secret file cannot be read or the store cannot be created."""
        if entry.client_secret_file is not None:
            secret = read_secret_file(entry.client_secret_file, "service_app.client_secret_file")
        else:
            secret = entry.client_secret.get_secret_value() if entry.client_secret else ""
        apps: TokenProvider
        if entry.applications_token_file is not None:
            apps = TokenFile(
                entry.applications_token_file, place="service_app.applications_token_file"
            )
        elif entry.applications_token is not None:
            value = entry.applications_token.get_secret_value()
            logs.register_secret(value)
            apps = StaticToken(value)
        else:
            integration = entry.integration
            assert integration is not None  # noqa: S101 - the table's validator guarantees one
            apps = _oauth(
                org_id="service_app",
                place="service_app.integration",
                client_id=integration.client_id,
                client_secret=integration.client_secret.get_secret_value()
                if integration.client_secret
                else None,
                client_secret_file=integration.client_secret_file,
                refresh_token=integration.refresh_token.get_secret_value()
                if integration.refresh_token
                else None,
                refresh_token_file=integration.refresh_token_file,
                first_refresh_token_file=integration.first_refresh_token_file,
                token_url=entry.token_url,
                timeout=timeout,
                session=session,
                clock=clock,
            )
        return cls(
            application_id=entry.application_id,
            client_id=entry.client_id,
            client_secret=secret,
            applications_tokens=apps,
            store=RefreshTokenStore(entry.token_store_dir),
            api_url=entry.api_url,
            session=session,
            timeout=timeout,
            clock=clock,
        )

    @property
    def token_url(self) -> str:
        return f"{self._api}/v1/access_token"

    @property
    def mint_url(self) -> str:
        return f"{self._api}/v1/applications/{quote(self.application_id, safe='')}/token"

    def tokens_for(self, org_id: str) -> ServiceAppTokens:
        """A provider of ``org_id``'s tokens (make one per org: two would rotate one refresh
        token behind each other's back)."""
        return ServiceAppTokens(self, org_id)

    # --- HTTP (called by ServiceAppTokens) -----------------------------------------------------

    def mint(self, org_id: str) -> _Reply:
        body = {"clientId": self.client_id, "clientSecret": self._client_secret}
        body["targetOrgId"] = org_id
        return self._post(self.mint_url, json_body=body, bearer=self.applications_tokens.token())

    def refresh_grant(self, refresh_token: str) -> _Reply:
        form = {
            "grant_type": "refresh_token",
            "client_id": self.client_id,
            "client_secret": self._client_secret,
            "refresh_token": refresh_token,
        }
        return self._post(self.token_url, form=form)

    @property
    def sent_secrets(self) -> tuple[str, ...]:
        return (self._client_secret,)

    def _post(
        self,
        url: str,
        *,
        form: dict[str, str] | None = None,
        json_body: dict[str, str] | None = None,
        bearer: str | None = None,
    ) -> _Reply:
        headers = {"Accept": "application/json"}
        if bearer is not None:
            headers["Authorization"] = f"Bearer {bearer}"
        try:
            if self._session is not None:
                return self._send(self._session, url, form, json_body, headers)
            # Renewals are hours apart: a session per call leaves no idle socket behind.
            with requests.Session() as session:
                return self._send(session, url, form, json_body, headers)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise WebexUnavailableError(
                f"the Webex API at {self._api} cannot be reached ({type(exc).__name__})"
            ) from None

    def _send(
        self,
        session: requests.Session,
        url: str,
        form: dict[str, str] | None,
        json_body: dict[str, str] | None,
        headers: dict[str, str],
    ) -> _Reply:
        # As OAuthTokens does: prepare, check the prepared URL names the checked origin for both
        # parsers (publisher.webex.urls), then send that very request.
        prepared = session.prepare_request(
            requests.Request("POST", url, data=form, json=json_body, headers=headers)
        )
        try:
            urls.check_prepared(prepared.url, self._origin)
        except urls.UrlRefusedError as exc:
            raise ConfigError(f"service_app.api_url refused: {exc.message}") from None
        status, reply_headers, body = send_checked(session, prepared, timeout=self._timeout)
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = {}
        return _Reply(status, reply_headers, data if isinstance(data, dict) else {}, body)

    def __repr__(self) -> str:
        return f"ServiceApp(application_id={self.application_id!r}, <secrets redacted>)"


class _RefreshRefused(Exception):  # noqa: N818 - control flow between two methods
    pass


class ServiceAppTokens:
    """One org's Service App tokens: minted, refreshed before expiry and after a 401, the
    rotated refresh token stored at once. Thread-safe: one renewal at a time."""

    def __init__(self, app: ServiceApp, org_id: str) -> None:
        self._app = app
        self._org = org_id
        self._lock = threading.Lock()
        self._access: str | None = None
        self._expires_at = float("-inf")
        self._due = float("-inf")
        stored = app.store.load(org_id)
        self._refresh: str | None = stored.token if stored else None
        self._refresh_expires_at = stored.expires_at if stored else None

    @property
    def identity(self) -> str:
        return f"service_app:{self._app.application_id}:{self._org}"

    @property
    def org_id(self) -> str:
        return self._org

    @property
    def expires_at(self) -> float:
        """Wall-clock time at which the current access token expires (-inf: none yet)."""
        return self._expires_at

    def token(self) -> str:
        with self._lock:
            if self._access is None or self._app.clock() >= self._due:
                return self._renew_locked()
            return self._access

    def refresh(self) -> bool:
        with self._lock:
            self._renew_locked()
        return True

    def _renew_locked(self) -> str:
        # Replicas share the store: another one may have rotated the token while it owned this
        # org's slot, and then only the stored token works.
        stored = self._app.store.load(self._org)
        if stored is not None and stored.token != self._refresh:
            self._refresh, self._refresh_expires_at = stored.token, stored.expires_at
        now = self._app.clock()
        usable = self._refresh is not None and (
            self._refresh_expires_at is None or now < self._refresh_expires_at
        )
        if usable:
            try:
                return self._use_refresh_token()
            except _RefreshRefused:
                log.warning(
                    "the Service App refresh token was refused; minting a new token pair",
                    extra={"org": self._org},
                )
        return self._mint()

    def _use_refresh_token(self) -> str:
        assert self._refresh is not None  # noqa: S101 - checked by the caller
        reply = self._app.refresh_grant(self._refresh)
        if reply.status in (400, 401):
            raise _RefreshRefused
        if reply.status != 200:
            raise self._failure(reply, "refreshing its Service App token")
        return self._apply(reply, "refreshed")

    def _mint(self) -> str:
        reply = self._app.mint(self._org)
        if reply.status == 401 and self._app.applications_tokens.refresh():
            reply = self._app.mint(self._org)
        if reply.status != 200:
            raise self._failure(reply, "minting its Service App token")
        return self._apply(reply, "minted")

    def _apply(self, reply: _Reply, how: str) -> str:
        access = reply.data.get("access_token")
        refresh = reply.data.get("refresh_token")
        # Registered before anything else happens to them.
        if isinstance(access, str):
            logs.register_secret(access)
        if isinstance(refresh, str):
            logs.register_secret(refresh)
        if not isinstance(access, str) or not _TOKEN_SHAPE.fullmatch(access):
            raise WebexAuthError(
                f"org {self._org}: the Webex API answered without a usable access_token",
                status=reply.status,
                tracking_id=reply.tracking_id,
            )
        now = self._app.clock()
        lifetime = _lifetime(reply.data.get("expires_in"))
        if lifetime is None:
            log.warning(
                "token reply without expires_in; renewing in an hour", extra={"org": self._org}
            )
        self._access = access
        self._expires_at = now + (lifetime or _UNKNOWN_LIFETIME_S)
        self._due = _renew_due(now, lifetime or _UNKNOWN_LIFETIME_S)
        if isinstance(refresh, str) and refresh:
            refresh_lifetime = _lifetime(reply.data.get("refresh_token_expires_in"))
            self._refresh = refresh
            self._refresh_expires_at = now + refresh_lifetime if refresh_lifetime else None
            try:
                self._app.store.save(self._org, refresh, self._refresh_expires_at)
            except OSError as exc:
                # The new pair works in memory; a restart will mint again (one extra request).
                log.error(  # noqa: TRY400 - the reason is the message; no traceback needed
                    "cannot store the Service App refresh token: a restart will mint again",
                    extra={"org": self._org, "reason": exc.strerror},
                )
        log.info(
            "Service App token %s",
            how,
            extra={"org": self._org, "expires_in_s": round(lifetime or _UNKNOWN_LIFETIME_S)},
        )
        return access

    def _failure(self, reply: _Reply, doing: str) -> WebexError:
        app = self._app
        said = reply.webex_message(app.sent_secrets)
        where = f"org {self._org}: Webex refused {doing}"
        common: dict[str, Any] = {"status": reply.status, "tracking_id": reply.tracking_id}
        if reply.status == 404:
            return WebexRequestError(
                f"{where}: Service App not found: Webex knows no Service App "
                f"{app.application_id!r} (check service_app.application_id)",
                **common,
            )
        if reply.status == 403 and "scope" in said.lower():
            return WebexAuthError(
                f"{where}: the token that mints lacks the scope spark:applications_token "
                f"(Webex said: {said})",
                **common,
            )
        if reply.status == 403:
            return WebexAuthError(
                f"{where}: Service App not authorized by Full Admin in Control Hub: a full "
                f"administrator of org {self._org} must authorise the Service App "
                f"{app.application_id!r} in Control Hub (Webex said: {said})",
                **common,
            )
        if reply.status == 401:
            return WebexAuthError(
                f"{where}: the token with scope spark:applications_token was refused (replace "
                "service_app.applications_token_file, or check service_app.integration)",
                **common,
            )
        if reply.status == 429 or reply.status >= 500:
            return WebexUnavailableError(
                f"{where}: {said}", retry_after=reply.retry_after, **common
            )
        return WebexRequestError(f"{where}: {said}", **common)

    def __repr__(self) -> str:
        return f"ServiceAppTokens(org={self._org!r}, <tokens redacted>)"


# --- the factory ---------------------------------------------------------------------------------


def _oauth(
    *,
    org_id: str,
    place: str,
    client_id: str | None,
    client_secret: str | None,
    client_secret_file: Path | None,
    refresh_token: str | None,
    refresh_token_file: Path | None,
    first_refresh_token_file: Path | None = None,
    token_url: str,
    timeout: float,
    session: requests.Session | None,
    clock: Wallclock,
    places: Mapping[str, str] | None = None,
) -> OrgOAuthTokens:
    def name(field_name: str) -> str:
        return places[field_name] if places else f"{place}.{field_name}"

    if not client_id:
        raise ConfigError(f"{name('client_id')} is required for OAuth refresh")
    if client_secret_file is not None:
        client_secret = read_secret_file(client_secret_file, name("client_secret_file"))
    if not client_secret:
        raise ConfigError(f"{name('client_secret')} is required with {name('client_id')}")
    logs.register_secret(client_secret)
    stored = None
    if refresh_token_file is not None:
        try:
            stored = refresh_token_file.read_text(encoding="utf-8").strip() or None
        except FileNotFoundError:
            stored = None
        except OSError as exc:
            raise ConfigError(
                f"{name('refresh_token_file')} {refresh_token_file}: cannot read it "
                f"({exc.strerror})"
            ) from None
    if not stored and not refresh_token and first_refresh_token_file is not None:
        # Only while the store holds none: a rotated token there is newer than the first.
        refresh_token = read_secret_file(first_refresh_token_file, name("first_refresh_token_file"))
    if not stored and not refresh_token:
        if refresh_token_file is None:
            raise ConfigError(f"{name('refresh_token')} is required with {name('client_id')}")
        raise ConfigError(
            f"{name('refresh_token_file')} holds no refresh token and {name('refresh_token')} "
            "is not set: give the first refresh token"
        )
    logs.register_secret(refresh_token)
    return OrgOAuthTokens(
        org_id=org_id,
        client_id=client_id,
        client_secret=client_secret,
        refresh_token=refresh_token,
        token_url=token_url,
        refresh_token_file=refresh_token_file,
        session=session,
        timeout=timeout,
        clock=clock,
    )


class Credentials:
    """The token providers of one catalogue's orgs: one per org, made when first asked for.

    Holds no global state: the caller keeps this object (in the worker's context) and a new one
    starts afresh (a "restart": Service App orgs then refresh with their stored tokens).
    """

    def __init__(
        self,
        catalogue: Catalogue,
        *,
        token_url: str,
        timeout: float = 30.0,
        session: requests.Session | None = None,
        clock: Wallclock = time.time,
    ) -> None:
        self.catalogue = catalogue
        self._token_url = token_url
        self._timeout = timeout
        self._session = session
        self._clock = clock
        self._providers: dict[str, TokenProvider] = {}
        self._service_app: ServiceApp | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(
        cls, settings: Settings, catalogue: Catalogue, *, session: requests.Session | None = None
    ) -> Credentials:
        """The factory for ``catalogue`` with the settings' token URL and timeout."""
        return cls(
            catalogue,
            token_url=settings.webex_token_url,
            timeout=settings.webex_timeout_seconds,
            session=session,
        )

    def for_org(self, org: Org | str) -> TokenProvider:
        """The org's provider (the same object every time for one org).

        Raises KeyError for an id not in the catalogue, ConfigError naming the setting when its
        credentials cannot be read (a token file, a secret file, the token store).
        """
        if isinstance(org, str):
            org = self.catalogue.get(org)
        with self._lock:
            provider = self._providers.get(org.id)
            if provider is None:
                provider = self._providers[org.id] = self._make(org)
            return provider

    def service_app(self) -> ServiceApp:
        """The catalogue's Service App (ConfigError if it has none)."""
        with self._lock:
            return self._service_app_locked()

    def _service_app_locked(self) -> ServiceApp:
        if self._service_app is None:
            entry = self.catalogue.service_app
            if entry is None:
                raise ConfigError("service_app: no [service_app] table in the configuration")
            self._service_app = ServiceApp.from_entry(
                entry, timeout=self._timeout, session=self._session, clock=self._clock
            )
        return self._service_app

    def _make(self, org: Org) -> TokenProvider:
        if org.kind == "token_file":
            assert org.token_file is not None  # noqa: S101 - the kind says so
            return TokenFile(org.token_file, place=org.place("token_file"))
        if org.kind == "token":
            assert org.token is not None  # noqa: S101
            value = org.token.get_secret_value()
            logs.register_secret(value)
            try:
                return StaticToken(value)
            except ConfigError:
                raise ConfigError(f"{org.place('token')}: the token is empty") from None
        if org.kind == "service_app":
            return self._service_app_locked().tokens_for(org.id)
        places = None
        if org.where == "environment":
            places = {name: org.place(name) for name in _OAUTH_FIELDS}
        return _oauth(
            org_id=org.id,
            place=org.where,
            client_id=org.client_id,
            client_secret=org.client_secret.get_secret_value() if org.client_secret else None,
            client_secret_file=org.client_secret_file,
            refresh_token=org.refresh_token.get_secret_value() if org.refresh_token else None,
            refresh_token_file=org.refresh_token_file,
            first_refresh_token_file=org.first_refresh_token_file,
            token_url=self._token_url,
            timeout=self._timeout,
            session=self._session,
            clock=self._clock,
            places=places,
        )

    def __repr__(self) -> str:
        return f"Credentials(orgs={len(self.catalogue)})"


_OAUTH_FIELDS = (
    "client_id",
    "client_secret",
    "client_secret_file",
    "refresh_token",
    "refresh_token_file",
)
