"""How the client reads a reply body: a page of known length in one read into one buffer (no
chunk list joined into a second copy), the size limits on every path, and a reply that ends
short taken for what it is (no reply: retried), over a fake stream and over a real socket."""

from __future__ import annotations

import gc
import gzip
import threading
import types
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
import requests

from publisher.errors import WebexBadPageError, WebexUnavailableError
from publisher.webex.auth import StaticToken
from publisher.webex.client import CdrClient
from publisher.webex.ratelimit import RateLimiter
from publisher.webex.windows import Endpoint
from tests.unit.test_client import T0, WINDOW, FakeTime, Harness, harness, page, scripted

__all__ = ["harness"]  # the fixture, imported for this module's tests


class CountingStream:
    """A reply's raw stream that records the reads asked of it and returns each read's bytes
    object as it made it, so a test can tell the body it gets back is that very object."""

    def __init__(self, body: bytes) -> None:
        self._body = body
        self._offset = 0
        self.reads: list[int | None] = []
        self.returned: list[bytes] = []

    def read(self, amt: int | None = None) -> bytes:
        self.reads.append(amt)
        end = len(self._body) if amt is None else self._offset + amt
        chunk = self._body[self._offset : end]
        self._offset += len(chunk)
        self.returned.append(chunk)
        return chunk

    def close(self) -> None:
        pass


def with_counting_stream(h: Harness) -> list[CountingStream]:
    """Swap the raw stream of every reply the harness's transport makes for a CountingStream."""
    streams: list[CountingStream] = []
    send = h.transport.send

    def send_counting(request: requests.PreparedRequest, **kwargs: object) -> requests.Response:
        response = send(request, **kwargs)
        stream = CountingStream(response.raw.read())
        streams.append(stream)
        response.raw = stream
        return response

    h.transport.send = send_counting  # type: ignore[method-assign]
    return streams


BIG = page(*(f"r{i:06d}" for i in range(20_000)))  # about 0.4 MB


def test_a_page_of_known_length_is_one_read_into_the_body_returned(
    harness: Callable[..., Harness],
) -> None:
    h = harness(scripted((200, {"Content-Length": str(len(BIG))}, BIG)))
    streams = with_counting_stream(h)
    [got] = list(h.client.pages(Endpoint.STREAM, WINDOW))
    assert got.body == BIG
    (stream,) = streams
    assert stream.reads == [len(BIG)]
    # The very bytes object the stream filled: not a copy, not a join of chunks.
    assert got.body is stream.returned[0]


def test_a_page_without_a_length_is_read_in_chunks_and_comes_out_whole(
    harness: Callable[..., Harness],
) -> None:
    h = harness(scripted((200, {}, BIG)))
    streams = with_counting_stream(h)
    assert h.pages() == [BIG]
    assert len(streams[0].reads) > 1  # iter_content's chunks: the length was not known


def test_a_declared_length_over_the_limit_is_refused_unread(
    harness: Callable[..., Harness],
) -> None:
    h = harness(
        scripted((200, {"Content-Length": str(len(BIG))}, BIG)), max_reply_bytes=len(BIG) - 1
    )
    streams = with_counting_stream(h)
    with pytest.raises(WebexBadPageError, match="larger than webex_max_reply_bytes"):
        h.pages()
    assert streams[0].reads == []


def test_an_error_body_of_known_length_is_read_only_up_to_its_bound(
    harness: Callable[..., Harness],
) -> None:
    """A long 5xx body is cut at 64 KiB in one bounded read; the retry then gets the page."""
    noise = b"x" * 200_000
    ok = page("a")
    h = harness(
        scripted(
            (503, {"Content-Length": str(len(noise))}, noise),
            (200, {"Content-Length": str(len(ok))}, ok),
        )
    )
    streams = with_counting_stream(h)
    assert h.pages() == [ok]
    assert streams[0].reads == [64 * 1024]


def test_a_reply_shorter_than_its_length_is_no_reply_and_retried(
    harness: Callable[..., Harness],
) -> None:
    ok = page("a", "b")
    h = harness(
        scripted(
            (200, {"Content-Length": str(len(ok) + 10)}, ok),
            (200, {"Content-Length": str(len(ok))}, ok),
        )
    )
    assert h.pages() == [ok]
    assert len(h.transport.requests) == 2


# --- over a real socket (urllib3's stream, http.client's read) ------------------------------------


class _Server(BaseHTTPRequestHandler):
    replies: ClassVar[list[tuple[bytes, int | None, dict[str, str]]]] = []
    """(body, declared length or None for a chunked reply, more headers), one per request."""

    def do_GET(self) -> None:
        body, declared, headers = self.replies.pop(0)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        for name, value in headers.items():
            self.send_header(name, value)
        if declared is None:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for start in range(0, len(body), 65536):
                part = body[start : start + 65536]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
            return
        self.send_header("Content-Length", str(declared))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - signature
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, type[_Server]]]:
    handler = type("Handler", (_Server,), {"replies": []})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    finally:
        httpd.shutdown()
        httpd.server_close()


def _client(base_url: str, **kwargs: object) -> CdrClient:
    time = FakeTime(T0)
    limiter = RateLimiter(
        initial_per_minute=1.0, page_per_minute=10.0, clock=time.mono, sleep=time.sleep
    )
    options: dict[str, object] = {
        "base_url": base_url,
        "tokens": StaticToken("static-access-token-1234567890"),
        "limiter": limiter,
        "clock": time.utc,
        "sleep": time.sleep,
        "retries": 2,
    }
    options.update(kwargs)
    return CdrClient(**options)  # type: ignore[arg-type]


def test_pages_over_a_real_socket_with_and_without_a_length(
    server: tuple[str, type[_Server]],
) -> None:
    base_url, handler = server
    handler.replies += [(BIG, len(BIG), {}), (BIG, None, {})]
    with _client(base_url) as client:
        assert [p.body for p in client.pages(Endpoint.STREAM, WINDOW)] == [BIG]  # one read
        assert [p.body for p in client.pages(Endpoint.STREAM, WINDOW)] == [BIG]  # chunked


def test_a_compressed_page_is_decoded_and_bounded_by_its_decoded_size(
    server: tuple[str, type[_Server]],
) -> None:
    """With a content coding the declared length is the coded size: the decoded bytes count."""
    base_url, handler = server
    packed = gzip.compress(BIG)
    assert len(packed) < 100_000 < len(BIG)
    gzipped = {"Content-Encoding": "gzip"}
    handler.replies += [(packed, len(packed), gzipped), (packed, len(packed), gzipped)]
    with _client(base_url) as client:
        assert [p.body for p in client.pages(Endpoint.STREAM, WINDOW)] == [BIG]
    refused = pytest.raises(WebexBadPageError, match="larger than webex_max_reply_bytes")
    with _client(base_url, max_reply_bytes=100_000) as client, refused:
        list(client.pages(Endpoint.STREAM, WINDOW))


def test_a_real_reply_cut_short_is_retried_then_given_up(
    server: tuple[str, type[_Server]],
) -> None:
    """A server that declares more than it sends and closes: urllib3 reports it, the client
    takes it as no reply and retries, and gives up after its retries."""
    base_url, handler = server
    handler.replies += [(BIG, len(BIG) + 1000, {})] * 3
    with _client(base_url) as client, pytest.raises(WebexUnavailableError):
        list(client.pages(Endpoint.STREAM, WINDOW))
    assert handler.replies == []


def _held_by(obj: object) -> list[object]:
    """What refers to ``obj`` apart from the caller's own variables (frames, cells)."""
    gc.collect()
    return [r for r in gc.get_referrers(obj) if not isinstance(r, types.FrameType | types.CellType)]


def test_the_client_keeps_no_reference_to_the_page_it_handed_out(
    harness: Callable[..., Harness],
) -> None:
    """While the caller publishes a page, the page generator holds neither it nor its reply: the
    caller can free the bytes once parsed, before the next page is read."""
    nxt = '<https://analytics-calling.webexapis.com/v1/cdr_stream?page=2>; rel="next"'
    body = page(*(f"a{i}" for i in range(1000)))  # only this test's own
    h = harness(
        scripted((200, {"Content-Length": str(len(body)), "Link": nxt}, body), (200, {}, page("b")))
    )
    pages = h.client.pages(Endpoint.STREAM, WINDOW)
    first = next(pages)
    assert _held_by(first) == []  # not the generator (nor its frame's variables)
    assert _held_by(first.body) == [first]
    del first
    assert [p.body for p in pages] == [page("b")]
