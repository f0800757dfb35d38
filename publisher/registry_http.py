"""The few Confluent Schema Registry calls the publisher makes, over ``requests``.

confluent-kafka's ``SchemaRegistryClient`` brings httpx, authlib and their dependencies: about
20 MB of resident memory in every publisher process, for six requests made at start-up. The
publisher already depends on ``requests`` for Webex; the same calls over it cost nothing more.
The paths, bodies and headers are the Confluent REST API's (as confluent-kafka sends them), so
any compatible registry (Confluent, Apicurio's ccompat API, Karapace, Redpanda) answers alike.
The consumer kit keeps confluent-kafka's client: it is the one its users configure.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import requests

_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
_ACCEPT = (
    "application/vnd.schemaregistry.v1+json, application/vnd.schemaregistry+json, application/json"
)
# Answers worth asking another listed URL (and, at start-up, retrying later).
_RETRIABLE = frozenset({408, 429, 500, 502, 503, 504})


class RegistryRefusedError(Exception):
    """The registry answered, and said no."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(status, code, message)
        self.status, self.code, self.message = status, code, message

    def __str__(self) -> str:
        return f"{self.message} (HTTP {self.status}, code {self.code})"


class RegistryUnreachableError(Exception):
    """No listed URL answered, or each answered with an error worth retrying later."""


class RegistryHttp:
    """A session on the registry at ``config["url"]`` (comma-separated URLs are tried in turn),
    with ``basic.auth.user.info``, ``ssl.ca.location`` and ``timeout`` (seconds) read as
    confluent-kafka reads them. Use as a context manager."""

    def __init__(self, config: dict[str, Any]) -> None:
        self._urls = [u.strip().rstrip("/") for u in str(config["url"]).split(",") if u.strip()]
        if not self._urls:
            raise ValueError("schema registry url is empty")
        self._timeout = float(config.get("timeout", 30))
        self._session = requests.Session()
        self._session.headers.update({"Accept": _ACCEPT})
        user_info = config.get("basic.auth.user.info")
        if user_info:
            user, _, password = str(user_info).partition(":")
            self._session.auth = (user, password)
        if config.get("ssl.ca.location"):
            self._session.verify = str(config["ssl.ca.location"])

    def __enter__(self) -> RegistryHttp:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._session.close()

    # --- the calls --------------------------------------------------------------------------

    def get_compatibility(self, subject: str) -> str | None:
        """The subject's own level; None when it has none (404)."""
        try:
            return str(self._call("GET", f"config/{_name(subject)}")["compatibilityLevel"])
        except RegistryRefusedError as exc:
            if exc.status == 404:
                return None
            raise

    def set_compatibility(self, subject: str, level: str) -> None:
        self._call("PUT", f"config/{_name(subject)}", {"compatibility": level})

    def lookup_schema(self, subject: str, text: str) -> int | None:
        """The id of exactly this schema under the subject; None when it is not registered."""
        try:
            found = self._call("POST", f"subjects/{_name(subject)}", _schema(text))
        except RegistryRefusedError as exc:
            if exc.status == 404:
                return None
            raise
        return int(found["id"]) if found.get("id") is not None else None

    def test_compatibility(self, subject: str, text: str) -> bool:
        """Whether the schema may be the subject's next version. A subject with no version yet
        (Confluent answers 404 there; Apicurio answers compatible) takes any schema."""
        try:
            answer = self._call(
                "POST", f"compatibility/subjects/{_name(subject)}/versions/latest", _schema(text)
            )
        except RegistryRefusedError as exc:
            if exc.status == 404:
                return True
            raise
        return bool(answer.get("is_compatible"))

    def register_schema(self, subject: str, text: str) -> int:
        return int(self._call("POST", f"subjects/{_name(subject)}/versions", _schema(text))["id"])

    def latest_schema_text(self, subject: str) -> str:
        return str(self._call("GET", f"subjects/{_name(subject)}/versions/latest")["schema"])

    def schema_text(self, schema_id: int) -> str:
        return str(self._call("GET", f"schemas/ids/{int(schema_id)}")["schema"])

    # --- transport --------------------------------------------------------------------------

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        last = "no url tried"
        for base in self._urls:
            try:
                reply = self._session.request(
                    method,
                    f"{base}/{path}",
                    json=body,
                    headers={"Content-Type": _CONTENT_TYPE} if body is not None else None,
                    timeout=self._timeout,
                )
            except requests.RequestException as exc:
                last = f"{base}: {type(exc).__name__}: {exc}"
                continue
            if reply.status_code in _RETRIABLE:
                last = f"{base}: HTTP {reply.status_code}: {_message(reply)}"
                continue
            if not reply.ok:
                raise RegistryRefusedError(reply.status_code, _error_code(reply), _message(reply))
            if not reply.content:
                return {}
            try:
                data = reply.json()
            except ValueError:
                last = f"{base}: HTTP {reply.status_code}: the answer is not JSON"
                continue
            return data if isinstance(data, dict) else {"value": data}
        raise RegistryUnreachableError(last)


def _name(subject: str) -> str:
    return quote(subject, safe="")


def _schema(text: str) -> dict[str, Any]:
    return {"schemaType": "JSON", "schema": text}


def _json(reply: requests.Response) -> dict[str, Any]:
    try:
        data = reply.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _message(reply: requests.Response) -> str:
    message = _json(reply).get("message")
    if isinstance(message, str) and message:
        return message
    return (reply.text or reply.reason or "").strip()[:200]


def _error_code(reply: requests.Response) -> int:
    code = _json(reply).get("error_code")
    return code if isinstance(code, int) else reply.status_code
