"""The provider boundary: one small base class, and the translation of HTTP transport errors.

A provider's `send()` returns a `Receipt` or raises `SendError`; every lower-level exception is
translated in its module's one error table, so nothing from an SDK or httpx crosses this line.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx

from producers.contract import ErrorCode
from worker.errors import SendError


@dataclass(frozen=True, slots=True)
class OutboundSms:
    """One message as a provider sends it: numbers normalized, body rendered."""

    to: str
    from_: str | None
    body: str
    job_id: str
    idempotency_key: str
    validity_seconds: int | None = None


@dataclass(frozen=True, slots=True)
class Receipt:
    """The provider took the message."""

    message_id: str | None
    status: str | None = None


class SmsProvider:
    """Sends one SMS through one vendor account. Subclasses implement `_send` only."""

    name: ClassVar[str]

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
