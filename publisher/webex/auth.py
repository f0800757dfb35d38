"""Access tokens for the Webex API: a static token, or an OAuth integration refreshed in time.

Secrets (access token, client secret, refresh token) never reach a log line, an exception message
or a ``repr``: they are kept in private attributes of classes whose ``repr`` names only the kind
of provider, and errors from the token endpoint quote only its ``error`` code.

A provider's :attr:`~TokenProvider.identity` names the token for the rate limiter registry
without revealing it: a hash for a static token, the client id for an OAuth integration (whose
access tokens rotate but whose limits follow the integration's grant).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

import orjson
import requests

from publisher import logs, metrics
from publisher.errors import ConfigError, WebexAuthError, WebexUnavailableError
from publisher.settings import Settings
from publisher.webex import urls

log = logging.getLogger("publisher.webex")

# A token endpoint reply is a few hundred bytes; anything near this is not one.
_MAX_TOKEN_REPLY_BYTES = 64 * 1024


def send_checked(
    session: requests.Session, prepared: requests.PreparedRequest, *, timeout: float
) -> tuple[int, Mapping[str, str], bytes]:
    """Send a request whose prepared URL was checked (``urls.check_prepared``) as it is: no
    redirect (it would carry the secrets to another host), the environment's proxies and CA,
    and a reply read up to :data:`_MAX_TOKEN_REPLY_BYTES` (a token reply is a few hundred
    bytes). Returns (status, headers, body)."""
    env = session.merge_environment_settings(prepared.url, {}, None, None, None)
    with session.send(
        prepared,
        timeout=timeout,
        stream=True,
        allow_redirects=False,
        proxies=env["proxies"],
        verify=env["verify"],
        cert=env["cert"],
    ) as response:
        body = b""
        for chunk in response.iter_content(16 * 1024):
            body += chunk
            if len(body) > _MAX_TOKEN_REPLY_BYTES:
                break
        return response.status_code, response.headers, body


class TokenProvider(Protocol):
    """What the client needs from a source of access tokens."""

    @property
    def identity(self) -> str:
        """A stable, non-secret name of the token's rate-limit scope."""
        ...

    def token(self) -> str:
        """A current access token (refreshed first if it is about to expire)."""
        ...

    def refresh(self) -> bool:
        """Get a new access token after a 401; False when this provider cannot."""
        ...


class StaticToken:
    """A fixed access token (``webex_token`` or ``webex_token_file``); a 401 is final."""

    def __init__(self, token: str) -> None:
        token = token.strip()
        if not token:
            raise ConfigError("the Webex access token is empty")
        logs.register_secret(token)  # also when read from a file the settings do not hold
        self._token = token
        self._identity = "static:" + hashlib.sha256(token.encode("utf-8")).hexdigest()

    @classmethod
    def from_file(cls, path: Path) -> StaticToken:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"webex_token_file {path}: cannot read it ({exc.strerror})") from None
        if not text.strip():
            raise ConfigError(f"webex_token_file {path}: the file is empty")
        return cls(text)

    @property
    def identity(self) -> str:
        return self._identity

    def token(self) -> str:
        return self._token

    def refresh(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "StaticToken(<redacted>)"


class OAuthTokens:
    """An OAuth integration's tokens, refreshed at ``token_url`` before they expire and on a 401.

    The refresh token Webex hands back (it may rotate) is written atomically, mode 0600, to
    ``refresh_token_file`` when one is given, and read from there first at start, so a restart
    uses the newest one. Thread-safe: one refresh at a time.
    """

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        refresh_token: str | None,
        token_url: str,
        refresh_token_file: Path | None = None,
        session: requests.Session | None = None,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not client_id or not client_secret:
            raise ConfigError("webex_client_id and webex_client_secret are both required")
        try:
            self._token_origin, self._token_url = urls.check_base(token_url)
        except urls.UrlRefusedError as exc:
            metrics.REFUSED_URLS.labels(source="token_endpoint", reason=exc.reason).inc()
            raise ConfigError(f"webex_token_url refused: {exc.message}") from None
        logs.register_secret(client_secret)
        self._client_id = client_id
        self._client_secret = client_secret
        self._file = refresh_token_file
        self._session = session
        self._timeout = timeout
        self._clock = clock
        stored = _read_refresh_token(refresh_token_file) if refresh_token_file else None
        current = stored or refresh_token
        if not current:
            raise ConfigError(
                "webex_refresh_token is required with webex_client_id "
                "(or a webex_refresh_token_file holding one)"
            )
        logs.register_secret(current)  # the stored one is not in the settings
        self._refresh_token: str = current
        self._access_token: str | None = None
        self._expires_at = float("-inf")
        self._refresh_due = float("-inf")
        self._lock = threading.Lock()

    @property
    def identity(self) -> str:
        return f"oauth:{self._token_url}:{self._client_id}"

    @property
    def expires_at(self) -> float:
        """Clock time at which the current access token expires (-inf: none yet)."""
        return self._expires_at

    def token(self) -> str:
        with self._lock:
            if self._access_token is None or self._clock() >= self._refresh_due:
                return self._refresh_locked()
            return self._access_token

    def refresh(self) -> bool:
        with self._lock:
            self._refresh_locked()
        return True

    def _refresh_locked(self) -> str:
        self._adopt_stored()
        try:
            return self._refresh_once()
        except WebexAuthError:
            # Refused: another replica may have rotated the token a moment ago (a shared
            # integration refreshes in every replica). Once more with the file's, if it changed.
            if not self._adopt_stored():
                raise
            return self._refresh_once()

    def _refresh_once(self) -> str:
        form = {
            "grant_type": "refresh_token",
            "client_id": self._client_id,
            "client_secret": self._client_secret,
            "refresh_token": self._refresh_token,
        }
        try:
            if self._session is not None:
                reply = self._post(self._session, form)
            else:
                # Refreshes are days apart: a session per refresh leaves no idle socket behind.
                with requests.Session() as session:
                    reply = self._post(session, form)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise WebexUnavailableError(
                f"the OAuth token endpoint cannot be reached ({type(exc).__name__})"
            ) from None
        status, body = reply
        data = _json_object(body)
        if status != 200:
            # Only the error code is quoted: descriptions may echo what we sent.
            code = data.get("error") if isinstance(data.get("error"), str) else None
            message = f"the OAuth token endpoint refused the refresh (error {code or 'unknown'})"
            if status >= 500 or status == 429:
                raise WebexUnavailableError(message, status=status)
            raise WebexAuthError(message, status=status)
        access = data.get("access_token")
        if not isinstance(access, str) or not access:
            raise WebexAuthError("the OAuth token endpoint answered without an access_token")
        lifetime = _seconds(data.get("expires_in"), default=14 * 24 * 3600.0)
        # Scrubbed from every log line from the moment it exists, before it is used or stored.
        logs.register_secret(access)
        now = self._clock()
        self._access_token = access
        self._expires_at = now + lifetime
        # Refresh well before expiry (a tenth of the lifetime, at most an hour) so that a long
        # pagination never meets an expired token.
        self._refresh_due = now + lifetime - min(lifetime / 10.0, 3600.0)
        rotated = data.get("refresh_token")
        if isinstance(rotated, str) and rotated:
            logs.register_secret(rotated)
        if isinstance(rotated, str) and rotated and rotated != self._refresh_token:
            self._refresh_token = rotated
            if self._file is not None:
                try:
                    write_secret_file(self._file, rotated)
                except OSError as exc:
                    # The new token works in memory; stopping would not bring the file back.
                    log.error(  # noqa: TRY400 - the reason is the message; no traceback needed
                        "cannot save the rotated refresh token: a restart will use the old one",
                        extra={"path": str(self._file), "reason": exc.strerror},
                    )
                else:
                    log.info("rotated refresh token saved", extra={"path": str(self._file)})
        log.info("access token refreshed", extra={"expires_in_s": round(lifetime)})
        return access

    def _adopt_stored(self) -> bool:
        """Take the file's refresh token when it is not ours: replicas of a deployment share
        the file, and the one that owned this org's slot meanwhile may have rotated the token,
        which makes our copy worthless. An unreadable file keeps the copy in memory."""
        if self._file is None:
            return False
        try:
            stored = _read_refresh_token(self._file)
        except ConfigError:
            return False
        if not stored or stored == self._refresh_token:
            return False
        logs.register_secret(stored)
        self._refresh_token = stored
        log.info("using the refresh token another process rotated into its file")
        return True

    def _post(self, session: requests.Session, form: dict[str, str]) -> tuple[int, bytes]:
        # As in the CDR client: prepare, check the prepared URL (what the adapter connects to),
        # send that very request. The URL was checked at start; this proves requests agrees.
        prepared = session.prepare_request(
            requests.Request(
                "POST", self._token_url, data=form, headers={"Accept": "application/json"}
            )
        )
        try:
            urls.check_prepared(prepared.url, self._token_origin)
        except urls.UrlRefusedError as exc:
            metrics.REFUSED_URLS.labels(source="token_endpoint", reason=exc.reason).inc()
            raise ConfigError(f"webex_token_url refused: {exc.message}") from None
        status, _headers, body = send_checked(session, prepared, timeout=self._timeout)
        return status, body

    def __repr__(self) -> str:
        return f"OAuthTokens(client_id={self._client_id!r}, <secrets redacted>)"


def write_secret_file(path: Path, value: str) -> None:
    """Replace ``path`` with ``value`` atomically, mode 0600: a crash leaves the old or the new."""
    directory = path.parent
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)  # created 0600
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(value)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.chmod(0o600)  # mkstemp's mode already; stated so that no umask or copy can widen it
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    # The rename is durable only once the directory entry is.
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _read_refresh_token(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(
            f"webex_refresh_token_file {path}: cannot read it ({exc.strerror})"
        ) from None
    return text or None


def _json_object(body: bytes) -> dict[str, object]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def _seconds(value: object, *, default: float) -> float:
    if isinstance(value, bool):
        return default
    if isinstance(value, int | float) and value > 0:
        return float(value)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            number = float(value)
            if number > 0:
                return number
    return default


_shared_oauth: dict[str, OAuthTokens] = {}
_shared_lock = threading.Lock()


def provider_from_settings(settings: Settings) -> TokenProvider:
    """The token source the settings name: OAuth when a client id is set, else a static token.

    OAuth providers are shared within the process (by a hash of client, token URL and file), so
    two callers never rotate the same refresh token behind each other's back.
    """
    if settings.webex_client_id:
        secret = settings.webex_client_secret
        refresh = settings.webex_refresh_token
        key = hashlib.sha256(
            "\0".join(
                [
                    settings.webex_client_id,
                    settings.webex_token_url,
                    str(settings.webex_refresh_token_file or ""),
                    hashlib.sha256(
                        (refresh.get_secret_value() if refresh else "").encode()
                    ).hexdigest(),
                ]
            ).encode("utf-8")
        ).hexdigest()
        with _shared_lock:
            provider = _shared_oauth.get(key)
            if provider is None:
                provider = OAuthTokens(
                    client_id=settings.webex_client_id,
                    client_secret=secret.get_secret_value() if secret else "",
                    refresh_token=refresh.get_secret_value() if refresh else None,
                    token_url=settings.webex_token_url,
                    refresh_token_file=settings.webex_refresh_token_file,
                    timeout=settings.webex_timeout_seconds,
                )
                _shared_oauth[key] = provider
            return provider
    if settings.webex_token is not None:
        return StaticToken(settings.webex_token.get_secret_value())
    if settings.webex_token_file is not None:
        return StaticToken.from_file(settings.webex_token_file)
    raise ConfigError(
        "no Webex credentials: set webex_token, webex_token_file, or webex_client_id with "
        "webex_client_secret and webex_refresh_token"
    )
