"""The registry client's error paths, against a small HTTP server that answers as a registry
does when it is overloaded, refuses, or is one of several listed URLs (the happy paths run
against the real Apicurio in tests/integration/test_registry_compatibility.py)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from publisher.errors import SchemaError, SchemaRegistryUnavailableError
from publisher.registry import ensure_event_schema, fetch_schema
from publisher.registry_http import RegistryHttp, RegistryRefusedError, RegistryUnreachableError


class Registry(ThreadingHTTPServer):
    """Answers every request with ``status`` and ``body``; records what it was sent."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.status, self.body = status, body
        self.seen: list[tuple[str, str, dict[str, str], bytes]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: Registry

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.seen.append((self.command, self.path, dict(self.headers), body))
        data = json.dumps(self.server.body).encode()
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def do_PUT(self) -> None:
        self._answer()

    def log_message(self, *_args: object) -> None:
        pass


def _serve(status: int, body: dict[str, Any]) -> Iterator[Registry]:
    server = Registry(status, body)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def overloaded() -> Iterator[Registry]:
    yield from _serve(503, {"error_code": 50003, "message": "Service Unavailable"})


@pytest.fixture
def healthy() -> Iterator[Registry]:
    yield from _serve(200, {"id": 7, "schema": '{"type": "object"}'})


@pytest.fixture
def refusing() -> Iterator[Registry]:
    yield from _serve(422, {"error_code": 42201, "message": "Invalid schema"})


def test_an_overloaded_registry_is_retriable_not_a_refusal(overloaded: Registry) -> None:
    """503 and 429 are the registry being busy: start-up retries (the Unavailable error is the
    retriable one), it does not stop as if the schema were refused."""
    with pytest.raises(SchemaRegistryUnavailableError, match="HTTP 503: Service Unavailable"):
        ensure_event_schema({"url": overloaded.url, "timeout": 5}, "t", auto_register=True)


def test_a_refusal_names_the_registrys_message_and_is_not_retriable(refusing: Registry) -> None:
    with pytest.raises(SchemaError, match="Invalid schema") as caught:
        ensure_event_schema({"url": refusing.url, "timeout": 5}, "t", auto_register=True)
    assert not isinstance(caught.value, SchemaRegistryUnavailableError)
    assert caught.value.retriable is False


def test_the_next_listed_url_is_asked_when_one_is_busy(
    overloaded: Registry, healthy: Registry
) -> None:
    with RegistryHttp({"url": f"{overloaded.url}, {healthy.url}", "timeout": 5}) as client:
        assert client.schema_text(7) == '{"type": "object"}'
    assert [path for _m, path, _h, _b in overloaded.seen] == ["/schemas/ids/7"]
    assert [path for _m, path, _h, _b in healthy.seen] == ["/schemas/ids/7"]


def test_requests_are_the_confluent_apis(healthy: Registry) -> None:
    """Paths, subject quoting, bodies and headers as confluent-kafka sends them, with the basic
    auth of basic.auth.user.info."""
    config = {"url": healthy.url + "/", "timeout": 5, "basic.auth.user.info": "me:s3cret"}
    with RegistryHttp(config) as client:
        assert client.register_schema("a/b-value", '{"type": "object"}') == 7
        client.set_compatibility("a/b-value", "BACKWARD_TRANSITIVE")
    (post, path, headers, body), (put, put_path, _h, put_body) = healthy.seen
    assert (post, path) == ("POST", "/subjects/a%2Fb-value/versions")
    assert json.loads(body) == {"schemaType": "JSON", "schema": '{"type": "object"}'}
    assert headers["Content-Type"] == "application/vnd.schemaregistry.v1+json"
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"me:s3cret").decode()
    assert (put, put_path, json.loads(put_body)) == (
        "PUT",
        "/config/a%2Fb-value",
        {"compatibility": "BACKWARD_TRANSITIVE"},
    )


def test_nothing_listening_is_unreachable_with_the_url() -> None:
    with pytest.raises(RegistryUnreachableError, match=r"127\.0\.0\.1:9"):  # noqa: SIM117
        with RegistryHttp({"url": "http://127.0.0.1:9", "timeout": 2}) as client:
            client.schema_text(1)
    with pytest.raises(SchemaRegistryUnavailableError, match="unreachable"):
        fetch_schema({"url": "http://127.0.0.1:9", "timeout": 2}, 1)


def test_an_unknown_schema_id_is_a_refusal(refusing: Registry) -> None:
    refusing.status, refusing.body = 404, {"error_code": 40403, "message": "Schema not found"}
    with pytest.raises(RegistryRefusedError) as caught:  # noqa: SIM117
        with RegistryHttp({"url": refusing.url}) as client:
            client.schema_text(99)
    assert (caught.value.status, caught.value.code) == (404, 40403)


def test_the_daemon_does_not_load_confluent_kafkas_registry_client() -> None:
    """The point of this module: httpx and authlib (about 20 MB resident) stay out of the
    publishing process; so does jsonschema-rs until a record needs the reference path."""
    code = (
        "import sys, publisher.runtime, publisher.daemon, publisher.registry\n"
        "print(sorted(m for m in sys.modules if m.startswith(('httpx', 'authlib',"
        " 'confluent_kafka.schema_registry', 'jsonschema_rs'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
