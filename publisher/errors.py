"""The one exception tree of cdr-publisher.

Every error the package raises on purpose derives from :class:`PublisherError` and says whether
trying again may help (``retriable``) and, where the other side told us, after how long
(``retry_after``). Library errors (requests, confluent-kafka) are translated at the I/O boundary
with ``raise ... from`` so that callers only ever handle this tree::

    PublisherError
    ├── ConfigError                 a setting is missing or invalid (names the setting)
    ├── UsageError                  a command-line argument is invalid (exit 2)
    ├── StackError                  the local Kafka + registry stack cannot start or stop
    ├── WebexError                  the Webex API refused or failed (carries the tracking id)
    │   ├── WebexRequestError       400/403/...: our request is wrong, never retried
    │   ├── WebexAuthError          401 after a refresh, or the token endpoint refused
    │   ├── WebexRegionError        451 whose message names no host we can read
    │   ├── WebexRateLimitedError        429 (retriable after Retry-After)
    │   ├── WebexUnavailableError        5xx, time-outs, connection errors (retriable)
    │   └── WebexBadPageError            a reply too large or not JSON (retriable, page kept)
    │       └── WebexRefusedUrlError     a next link the token may not go to (reason, window)
    ├── WindowError                 a time window breaks the endpoint's rules
    ├── SchemaError                 the registry refused the schema, or it does not match
    │   └── SchemaRegistryUnavailableError   the registry cannot be reached (retriable)
    ├── DecodeError                 a consumed value is not an event of ours (not retriable)
    ├── KafkaError                  broker unavailable or a transaction failed (retriable flag)
    │   └── ProducerLostError       fatal producer error, not fencing: make a new producer
    └── FencedError                 our transactional.id was fenced: by another instance (exit 3),
                                    or by a timed-out transaction (a new producer recovers)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from publisher.webex.windows import Window


class PublisherError(Exception):
    """Base of every error cdr-publisher raises on purpose."""

    retriable: bool = False

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class ConfigError(PublisherError):
    """A setting is missing or invalid; the message names the setting."""


class UsageError(PublisherError):
    """A command-line argument is invalid; the CLI prints usage and exits 2."""


class StackError(PublisherError):
    """The local Kafka + Schema Registry stack could not be started, checked or stopped."""


class WebexError(PublisherError):
    """The Webex API answered with an error or could not be reached."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        tracking_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.status = status
        self.tracking_id = tracking_id

    def __str__(self) -> str:
        parts = [self.message]
        if self.status is not None:
            parts.append(f"(HTTP {self.status})")
        if self.tracking_id:
            parts.append(f"[trackingId {self.tracking_id}]")
        return " ".join(parts)


class WebexRequestError(WebexError):
    """Our request was refused (400, 403, ...): sending it again would not help."""


class WebexAuthError(WebexError):
    """The token is invalid even after a refresh, or the token endpoint refused us."""


class WebexRegionError(WebexError):
    """A 451 reply whose message names no regional host we can read."""


class WebexRateLimitedError(WebexError):
    """429: wait ``retry_after`` seconds, then try again."""

    retriable = True


class WebexUnavailableError(WebexError):
    """5xx, a time-out or a connection error: back off and try again."""

    retriable = True


class WebexBadPageError(WebexError):
    """A reply that is too large or not the JSON page we expect; the bytes are kept."""

    retriable = True

    def __init__(self, message: str, *, body: bytes, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.body = body


class WebexRefusedUrlError(WebexBadPageError):
    """A URL a reply names (a next link) fails the check of :mod:`publisher.webex.urls`, so it is
    not followed and the token stays home. ``reason`` is the check's fixed word (``backslash``,
    ``userinfo``, ``foreign_host``...), ``url`` the link made printable, ``window`` the window
    whose remaining pages it would have fetched. Not retriable: the same reply names the same
    link again; the caller records the window as cut short and moves on."""

    retriable = False

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        url: str,
        window: Window | None,
        tracking_id: str | None = None,
    ) -> None:
        super().__init__(message, body=b"", tracking_id=tracking_id)
        self.reason = reason
        self.url = url
        self.window = window


class WindowError(PublisherError):
    """A requested time window breaks the endpoint's rules (too old, too long, too recent)."""


class SchemaError(PublisherError):
    """The Schema Registry refused our schema, or the registered one differs from ours."""


class SchemaRegistryUnavailableError(SchemaError):
    """The registry could not be reached: back off and try again."""

    retriable = True


class DecodeError(PublisherError):
    """A consumed value is not a framed event its writer's registered schema accepts; the
    message says which topic, partition and offset, and why."""


class KafkaError(PublisherError):
    """The broker could not be reached or a transaction failed."""

    def __init__(self, message: str, *, retriable: bool = False) -> None:
        super().__init__(message)
        self.retriable = retriable


class ProducerLostError(KafkaError):
    """The producer hit a fatal error that is not another instance taking over (for example its
    transaction timed out while the broker was away): create a new producer and carry on."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retriable=True)


class FencedError(PublisherError):
    """The epoch of our transactional.id moved on: another instance took over (stop, exit 3), or
    the coordinator aborted a transaction of ours that outlived its timeout (recoverable with a
    new producer; :mod:`publisher.kafka.owner` tells which)."""

    def __init__(self, message: str, *, transaction_age_s: float | None = None) -> None:
        super().__init__(message)
        self.transaction_age_s = transaction_age_s
