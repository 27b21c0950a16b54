"""The provider boundary: one small base class, and the translation of HTTP transport errors.

A provider class is everything the worker knows of one vendor: its spec (name, credential fields:
`worker/provider_specs.py`), how it is built from a connection (`build`), sends (`_send`), checks an
account (`check_credentials`, `list_numbers`, `check_sender`), verifies and parses callbacks
(`verify_callback`, `callback_fields`, `receipt`, `inbound_message`), polls (`fetch_status`), and
its error and receipt tables (module level, beside the class). Everything else finds it by name
in `worker/providers/registry.py`.

A provider's `send()` returns a `Receipt` or raises `SendError`; every lower-level exception is
translated in its module's one error table, so nothing from an SDK or httpx crosses this line.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, Self

import httpx
import redis

from producers.contract import MAX_MESSAGE_CHARS, ErrorCode, ErrorInfo, reason
from worker.config.models import Connection
from worker.errors import SendError
from worker.inbound import InboundMessage
from worker.provider_specs import ProviderSpec
from worker.providers.callbacks import MalformedCallback
from worker.providers.numbers import NotSupported, NumberListing, SenderCheck, check_in_listing
from worker.receipts import ReceiptUpdate
from worker.segments import Encoding, Segments
from worker.settings import Settings

#: Kinds of sending number, for the default sender rates (`SmsProvider.sender_rates`).
NumberType = Literal["long_code", "toll_free", "short_code", "international"]
#: Default sender throughput (messages per second) by kind of number: Twilio's published US/CA
#: figures (long code 1, toll-free 3, short code 100, numbers of other countries 10). Telnyx and
#: Plivo use the same table until their accounts' figures are configured (`messages_per_second`).
CARRIER_SENDER_RATES: Mapping[NumberType, float] = {
    "long_code": 1.0,
    "toll_free": 3.0,
    "short_code": 100.0,
    "international": 10.0,
}
_ENCODING_NAMES: dict[Encoding, str] = {"gsm7": "GSM-7", "ucs2": "UCS-2"}


@dataclass(frozen=True, slots=True)
class MessageLimits:
    """What a provider accepts in one message: parts, and characters per encoding."""

    #: the most parts (segments) of one message; None: no limit of its own
    max_parts: int | None = None
    #: the most characters (code points) per encoding
    max_chars: Mapping[Encoding, int] = field(
        default_factory=lambda: {"gsm7": MAX_MESSAGE_CHARS, "ucs2": MAX_MESSAGE_CHARS}
    )
    #: how the parts limit is described ("Twilio's advice")
    parts_source: str = ""

    def refusal(self, provider: str, segments: Segments) -> str | None:
        """Why `segments` is too long for `provider` (names the parts and the limit), or None."""
        shown = f"{segments.parts} part{'s' if segments.parts != 1 else ''}"
        what = f"{shown}, {_ENCODING_NAMES[segments.encoding]}, {segments.chars:,} characters"
        chars_limit = self.max_chars.get(segments.encoding)
        if chars_limit is not None and segments.chars > chars_limit:
            return (
                f"the message is {what}; {provider} takes at most {chars_limit:,} "
                f"{_ENCODING_NAMES[segments.encoding]} characters"
            )
        if self.max_parts is not None and segments.parts > self.max_parts:
            source = f" ({self.parts_source})" if self.parts_source else ""
            return f"the message is {what}; {provider} takes at most {self.max_parts} parts{source}"
        return None


@dataclass(frozen=True, slots=True)
class OutboundSms:
    """One message as a provider sends it: numbers normalized, body rendered."""

    to: str
    from_: str | None
    body: str
    job_id: str
    idempotency_key: str
    validity_seconds: int | None = None
    #: where the provider posts status callbacks (`SMS_PUBLIC_URL` set), else None
    status_callback: str | None = None


@dataclass(frozen=True, slots=True)
class Receipt:
    """The provider took the message."""

    message_id: str | None
    status: str | None = None


class ProviderResources(Protocol):
    """What a worker process lends the providers it builds (`ProviderPool`): shared, long-lived."""

    @property
    def settings(self) -> Settings: ...

    @property
    def redis(self) -> redis.Redis: ...

    def http(self) -> httpx.Client:
        """The process's httpx client for providers' own APIs (keep-alive, `SMS_PROVIDER_TIMEOUT`)."""
        ...

    def pinned_http(self) -> httpx.Client:
        """The httpx client for endpoints of the user's: only checked, pinned addresses."""
        ...


class SmsProvider:
    """Sends one SMS through one vendor account. Subclasses set `spec` and `name`, implement
    `build` and `_send`, and the account requests the CLI makes (`check_credentials`,
    `list_numbers`) where the provider has them."""

    #: the provider's entry in `worker/provider_specs.py` (name, credential fields, options)
    spec: ClassVar[ProviderSpec]
    name: ClassVar[str]
    #: `check_credentials` takes `allow_private` and `resolver` too (an endpoint of the user's)
    checks_endpoint: ClassVar[bool] = False
    #: the provider posts status callbacks to a URL given with each send
    callbacks: ClassVar[bool] = False
    #: `fetch_status` can look a message up (the status poll)
    polls: ClassVar[bool] = False
    #: what one message may hold (checked before sending: `message_too_long`)
    limits: ClassVar[MessageLimits] = MessageLimits()
    #: default messages per second of one sending number, by kind of number (None: no default
    #: limit; a connection's `messages_per_second` sets one)
    sender_rates: ClassVar[Mapping[NumberType, float] | None] = None

    # -- account requests (the CLI's; none sends anything) -----------------------------------------

    @classmethod
    def check_credentials(cls, connection: Connection, *, http: httpx.Client, timeout: float) -> str:
        """One read-only request that proves the credentials work; returns what it found.

        Raises `SendError` (the send taxonomy) when they do not, `NotSupported` when there is no
        such request."""
        raise NotSupported(f"{cls.name}: no request checks the credentials")

    @classmethod
    def list_numbers(cls, connection: Connection, *, http: httpx.Client, timeout: float) -> NumberListing:
        """The account's numbers, every page read (up to `numbers.MAX_NUMBERS`).

        Raises `SendError` for a refused or failed request, `NotSupported` without a list."""
        raise NotSupported(f"{cls.name}: the provider has no list of numbers")

    @classmethod
    def requires_sender(cls, connection: Connection) -> bool:
        """Whether a send through `connection` needs a from-number."""
        return True

    @classmethod
    def check_sender(cls, connection: Connection, listing: NumberListing, number: str) -> SenderCheck:
        """Can `connection` send from `number`, given the account's `listing`?"""
        return check_in_listing(listing, number)

    # -- sending ---------------------------------------------------------------------------------

    @classmethod
    def build(cls, connection: Connection, resources: ProviderResources) -> Self:
        """The provider for `connection`, built once per connection and process (`ProviderPool`)
        from the process's shared `resources`."""
        raise NotImplementedError(f"{cls.__name__} does not implement build()")  # pragma: no cover

    def send(self, sms: OutboundSms) -> Receipt:
        try:
            return self._send(sms)
        except SendError:
            raise
        except Exception as exc:
            raise self.translate(exc) from exc

    def _send(self, sms: OutboundSms) -> Receipt:
        raise NotImplementedError(f"{type(self).__name__} does not implement _send()")  # pragma: no cover

    def translate(self, exc: Exception) -> SendError:
        """An exception `_send` let through, as a `SendError` (subclasses add their SDK's errors)."""
        mapped = translate_transport_error(exc)
        if mapped is not None:
            return mapped
        return SendError(ErrorCode.PROVIDER_ERROR, f"{self.name}: unexpected {type(exc).__name__}")

    def close(self) -> None:
        """Release connections (called when the worker process stops)."""

    @classmethod
    def receipt(cls, fields: Mapping[str, Any], *, source: str = "callback") -> ReceiptUpdate:
        """A status callback's fields (form fields, or the parsed JSON body) as a `ReceiptUpdate`;
        `ValueError` when they are not a receipt. Providers without receipts do not override it."""
        raise NotImplementedError(f"{cls.__name__} has no delivery receipts")

    def fetch_status(self, message_id: str) -> ReceiptUpdate:
        """Ask the provider's API where the message stands (the status poll); `SendError` when the
        provider cannot answer now."""
        raise NotImplementedError(f"{type(self).__name__} cannot be polled for status")

    # -- callbacks (the HTTP service): class-level, no provider object or HTTP client needed ------

    #: whether the provider signs callbacks the HTTP service can verify (status and inbound routes)
    signs_callbacks: ClassVar[bool] = False
    #: whether its signature covers the URL called (then the service needs `SMS_PUBLIC_URL`)
    signs_url: ClassVar[bool] = True
    #: the body and media type to answer an inbound message with (None: a JSON outcome)
    inbound_reply: ClassVar[tuple[bytes, str] | None] = None

    @classmethod
    def verify_callback(
        cls,
        connection: Connection,
        *,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        now: float | None = None,
    ) -> bool:
        """Whether a callback is signed by the provider for `connection`, checked on the raw body
        before anything is parsed. `url` is the public URL the provider called (query included);
        `now` (Unix seconds) is for providers whose signature has a timestamp."""
        return False

    @classmethod
    def callback_fields(cls, body: bytes) -> dict[str, Any]:
        """A verified callback's body as the provider's fields; raises `MalformedCallback`."""
        raise MalformedCallback(f"{cls.name} sends no callbacks")

    @classmethod
    def is_receipt(cls, fields: Mapping[str, Any]) -> bool:
        """Whether a verified callback on the status route is a delivery receipt; one that is not
        (another event type of the provider's) is answered 200 and ignored, not retried."""
        return True

    @classmethod
    def receipt_belongs_to(cls, connection: Connection, fields: Mapping[str, Any]) -> bool:
        """Whether a verified receipt's own fields name `connection` (the one its route and
        signature are for); a provider whose receipts carry an account or profile id checks it.
        The message-id mapping is checked as well, by `worker.receipts.apply_receipt`."""
        return True

    @classmethod
    def inbound_message(cls, connection: Connection, fields: Mapping[str, Any]) -> InboundMessage | None:
        """A verified inbound callback as an `InboundMessage`; None when the callback is not a
        received text (another event type); raises `MalformedCallback`."""
        raise MalformedCallback(f"{cls.name} sends no inbound messages")


def receipt_error(
    provider_code: str | int | None,
    entry: tuple[ErrorCode, str] | None,
    *,
    fallback: ErrorCode | None = None,
    default: ErrorCode = ErrorCode.UNDELIVERED,
) -> ErrorInfo:
    """The `error` of an `undelivered` receipt: the receipt table's entry (taxonomy code and the
    reason the agent can speak) when it has the code; else the send table's code (`fallback`)
    with that code's reason; else `default` (`undelivered`: "the carrier didn't deliver it")."""
    code_text = str(provider_code) if provider_code not in (None, "") else None
    if entry is not None:
        code, spoken = entry
    else:
        code = fallback or default
        spoken = reason(code)
    return ErrorInfo(code=code, provider_code=code_text, message=spoken, retryable=False)


def translate_transport_error(exc: BaseException) -> SendError | None:
    """httpx transport errors in the taxonomy; `ambiguous` marks those after which the provider
    may have accepted the message (the request was sent, the answer was lost)."""
    if isinstance(exc, httpx.ConnectTimeout | httpx.ConnectError | httpx.PoolTimeout):
        return SendError(
            ErrorCode.PROVIDER_UNAVAILABLE, f"cannot connect to the provider ({type(exc).__name__})"
        )
    if isinstance(exc, httpx.TimeoutException):
        return SendError(
            ErrorCode.PROVIDER_UNAVAILABLE,
            f"the provider did not answer in time ({type(exc).__name__})",
            ambiguous=True,
        )
    if isinstance(exc, httpx.TransportError):
        return SendError(
            ErrorCode.PROVIDER_UNAVAILABLE,
            f"the connection to the provider failed ({type(exc).__name__})",
            ambiguous=True,
        )
    return None


@contextlib.contextmanager
def map_transport_errors() -> Iterator[None]:
    try:
        yield
    except httpx.HTTPError as exc:
        mapped = translate_transport_error(exc)
        if mapped is None:
            raise
        raise mapped from exc


def response_json(response: httpx.Response) -> Any:
    """The answer's JSON, or None when it is not JSON (an HTML error page from a proxy)."""
    try:
        return response.json()
    except ValueError:
        return None


def retry_after_seconds(value: str | None) -> float | None:
    """A `Retry-After` or `x-ratelimit-reset` header in seconds (these providers send no HTTP dates)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return max(seconds, 0.0)


def status_error(
    provider: str,
    status: int,
    *,
    code: ErrorCode | None = None,
    provider_code: str | int | None = None,
    detail: str = "",
    retry_after: float | None = None,
) -> SendError:
    """A non-2xx answer in the taxonomy: the provider's own code wins when its table knows it;
    otherwise by HTTP status (401/403 auth, 429 rate limit, 5xx unavailable, other 4xx permanent)."""
    shown = f"{provider} answered {status}" + (f" ({provider_code})" if provider_code is not None else "")
    message = f"{shown}: {detail}" if detail else shown
    if code is None:
        if status in (401, 403):
            code = ErrorCode.AUTH_FAILED
        elif status == 429:
            code = ErrorCode.RATE_LIMITED
        elif status >= 500:
            code = ErrorCode.PROVIDER_UNAVAILABLE
        else:
            code = ErrorCode.PROVIDER_ERROR
    # 500/502/504 may come after the provider stored the message; 503 and 429 mean it was not processed.
    ambiguous = code == ErrorCode.PROVIDER_UNAVAILABLE and status in (500, 502, 504)
    return SendError(
        code,
        message,
        provider_code=provider_code if provider_code is not None else status,
        retry_after=retry_after,
        ambiguous=ambiguous,
    )
