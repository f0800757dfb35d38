"""Which URLs a Webex credential may be sent to, read exactly as requests will send them. Pure.

requests reads a URL twice: ``PreparedRequest.prepare_url`` parses it with urllib3's
``parse_url`` and rebuilds it, then ``HTTPAdapter`` connects to the host and port that
``urllib.parse.urlparse`` reads from that *prepared* URL (requests 2.34 ``models.py`` and
``adapters.py: _urllib3_request_context``). A check made with ``urlsplit`` on the raw link can read
another host than the one the request goes to: urllib3 ends the authority at a backslash,
``urlsplit`` at the ``/`` after the last ``@``, so ``https://evil.example\\@webex-host/`` is
``webex-host`` to urlsplit and ``evil.example`` to requests (psf/requests#7141; urllib3#5143
proposes changing urllib3's reading, so neither reading can be relied on). Hence three rules:

1. :func:`parse` refuses, before any library parses it, every URL on which parsers are known to
   disagree: control characters and spaces, backslashes, user info, percent signs or non-ASCII in
   the authority, a host that is not plain DNS labels or an IP literal, an odd port.
2. :func:`check_follow` says whether the token may go to a parsed URL: the same origin as the base,
   an https Webex host on the default port, or (for the simulator) loopback on the base's port.
3. :func:`check_prepared` reads the URL requests prepared with both parsers and requires both to
   name the origin that was checked; the caller then sends that very prepared request.

Each refusal is a :class:`UrlRefusedError` whose ``reason`` is a short fixed word, fit for a metric
label; its message never quotes the URL (it may be long or hostile): :func:`display` does, safely.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import urljoin, urlsplit

from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

MAX_URL_LENGTH: Final = 8192
DEFAULT_PORTS: Final = {"http": 80, "https": 443}
WEBEX_DOMAINS: Final = (".webexapis.com", ".webex.com")

# Every reason a URL can be refused for (the metric's label values).
REASONS: Final = (
    "too_long",
    "control_or_space",
    "backslash",
    "scheme",
    "userinfo",
    "percent_encoded",
    "non_ascii",
    "host",
    "port",
    "query",
    "plain_http",
    "foreign_host",
    "parser_mismatch",
)

_SCHEME: Final = re.compile(r"(?i)(https?)://")
_AUTHORITY_END: Final = re.compile(r"[/?#]")
_LABEL: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_HOST_PORT: Final = re.compile(r"(?P<host>\[[0-9a-f:.]+\]|[^:\[\]]+)(?::(?P<port>[0-9]*))?")


class UrlRefusedError(ValueError):
    """``reason`` is one of :data:`REASONS`; the message says why without quoting the URL."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True, order=True)
class Origin:
    """Scheme, host (lower case; IPv6 without brackets) and effective port."""

    scheme: str
    host: str
    port: int

    @property
    def is_loopback(self) -> bool:
        return is_loopback_host(self.host)

    def url(self) -> str:
        """``scheme://host[:port]``, the port only when not the scheme's default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if DEFAULT_PORTS[self.scheme] == self.port else f":{self.port}"
        return f"{self.scheme}://{host}{port}"


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def display(url: str, limit: int = 200) -> str:
    """``url`` for a log line: printable ASCII only (others as ``\\xNN``/``\\uNNNN``), cut."""
    shown = url.encode("ascii", "backslashreplace").decode("ascii")
    shown = "".join(c if 0x20 < ord(c) < 0x7F else f"\\x{ord(c):02x}" for c in shown)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def parse(url: str) -> Origin:
    """The origin of an absolute http(s) URL, or UrlRefusedError when anything in it is odd."""
    _check_characters(url)
    scheme_match = _SCHEME.match(url)
    if scheme_match is None:
        raise UrlRefusedError("scheme", "only absolute http and https URLs are followed")
    scheme = scheme_match.group(1).lower()
    rest = url[scheme_match.end() :]
    end = _AUTHORITY_END.search(rest)
    authority = rest[: end.start()] if end else rest
    if "@" in authority:
        raise UrlRefusedError("userinfo", "the URL carries user info ('@' in its authority)")
    if "%" in authority:
        raise UrlRefusedError("percent_encoded", "the URL's host is percent-encoded")
    if not authority.isascii():
        raise UrlRefusedError("non_ascii", "the URL's host is not plain ASCII")
    match = _HOST_PORT.fullmatch(authority.lower())
    if match is None:
        raise UrlRefusedError("host", "the URL's authority is not host[:port]")
    host = match.group("host")
    origin = Origin(scheme, _check_host(host), _check_port(match.group("port"), scheme))
    _same_for_both_parsers(url, origin)
    return origin


def join(page_url: str, link: str) -> str:
    """``link`` (absolute or relative) resolved against the page it came on. The raw link is
    checked first: ``urljoin`` itself drops tabs and newlines, which would hide them."""
    _check_characters(link)
    return urljoin(page_url, link)


def _check_characters(url: str) -> None:
    if len(url) > MAX_URL_LENGTH:
        raise UrlRefusedError("too_long", f"the URL is longer than {MAX_URL_LENGTH} characters")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise UrlRefusedError("control_or_space", "the URL holds a space or control character")
    if "\\" in url:
        # Parsers disagree on whether a backslash ends the authority (WHATWG and urllib3: yes).
        raise UrlRefusedError("backslash", "the URL holds a backslash")


def _check_host(host: str) -> str:
    if host.startswith("["):
        try:
            return str(ipaddress.IPv6Address(host[1:-1]))
        except ValueError:
            raise UrlRefusedError("host", "the URL's IPv6 literal is not valid") from None
    labels = host.split(".")
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        # Also refuses a trailing dot, empty labels and underscores: nothing Webex uses.
        raise UrlRefusedError("host", "the URL's host is not made of plain DNS labels")
    if labels[-1].isdigit():
        # All-numeric: only a dotted quad (inet_aton would also read 127.1 or 2130706433).
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise UrlRefusedError("host", "the URL's host is a malformed IPv4 address") from None
    return host


def _check_port(text: str | None, scheme: str) -> int:
    if text is None:
        return DEFAULT_PORTS[scheme]
    if not text or len(text) > 5 or text.startswith("0") or not 1 <= int(text) <= 65535:
        raise UrlRefusedError("port", "the URL's port is empty, zero-padded or out of range")
    return int(text)


def _same_for_both_parsers(url: str, origin: Origin) -> None:
    """urllib3 (how requests prepares) and urllib.parse (how its adapter connects) must both read
    ``origin`` with no user info; after the checks above they do, and this proves it."""
    try:
        ours = parse_url(url)
        theirs = urlsplit(url)
        their_port = theirs.port
    except (LocationParseError, ValueError):
        raise UrlRefusedError("parser_mismatch", "the URL cannot be parsed") from None
    ours_host = (ours.host or "").lower().strip("[]")
    readings = {
        (ours.scheme, ours_host, ours.port or DEFAULT_PORTS.get(ours.scheme or "", 0)),
        (theirs.scheme.lower(), theirs.hostname, their_port or DEFAULT_PORTS[origin.scheme]),
        (origin.scheme, origin.host, origin.port),
    }
    if len(readings) != 1 or ours.auth is not None or theirs.username is not None:
        raise UrlRefusedError("parser_mismatch", "URL parsers read different hosts in the URL")


def check_follow(url: str, base: Origin) -> Origin:
    """The origin of ``url`` if a credential meant for ``base`` may be sent there.

    Allowed: the base's own origin; any https Webex host on port 443 (next links and 451 regions
    name them); for a loopback base (the simulator), a loopback host on the base's port.
    """
    origin = parse(url)
    if origin == base:
        return origin
    if base.is_loopback:
        if origin.is_loopback and origin.port == base.port:
            return origin
        raise UrlRefusedError("foreign_host", "the URL leaves the loopback host the base names")
    if not origin.host.endswith(WEBEX_DOMAINS) or origin.is_loopback:
        raise UrlRefusedError("foreign_host", "the URL's host is not a Webex host")
    if origin.scheme != "https":
        raise UrlRefusedError("plain_http", "a Webex host is only followed over https")
    if origin.port != DEFAULT_PORTS["https"]:
        raise UrlRefusedError("port", "a Webex host other than the base is only followed on 443")
    return origin


def check_base(url: str) -> tuple[Origin, str]:
    """A configured base URL (``webex_base_url``, ``webex_token_url``): its origin and its
    canonical form (origin + path without a trailing slash). Plain http only for loopback; no
    query or fragment."""
    origin = parse(url)
    if origin.scheme == "http" and not origin.is_loopback:
        raise UrlRefusedError("plain_http", "plain http is only allowed for loopback hosts")
    parts = urlsplit(url)
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise UrlRefusedError("query", "a base URL takes no query or fragment")
    return origin, origin.url() + parts.path.rstrip("/")


def check_prepared(url: str | None, expected: Origin) -> None:
    """The URL requests prepared names ``expected``, read by urllib3 and by urllib.parse (which
    the adapter connects with). Called on the prepared request that is then sent as it is."""
    if url is None:
        raise UrlRefusedError("parser_mismatch", "requests prepared no URL")
    if parse(url) != expected:
        raise UrlRefusedError("parser_mismatch", "the prepared URL names another host")


__all__ = [
    "REASONS",
    "Origin",
    "UrlRefusedError",
    "check_base",
    "check_follow",
    "check_prepared",
    "display",
    "is_loopback_host",
    "join",
    "parse",
]
