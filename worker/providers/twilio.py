"""Twilio Programmable Messaging through the official SDK.

The SDK is given its credentials and an explicit timeout (its default is none), never reads
`TWILIO_*` from the environment, and talks to `api_base_url` when one is configured (a regional
endpoint, or a fake in tests) — `edge`/`region` would mangle such a URL.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import Any, ClassVar

import requests
from requests.adapters import HTTPAdapter
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from producers.contract import ErrorCode
from worker.config.models import Connection
from worker.errors import SendError
from worker.providers.base import (
    CARRIER_SENDER_RATES,
    MessageLimits,
    NumberType,
    OutboundSms,
    Receipt,
    SmsProvider,
    retry_after_seconds,
    status_error,
)

try:  # twilio >= 9.10: RFC 9457 problem details; not a subclass of TwilioRestException
    from twilio.base.exceptions import TwilioServiceException
except ImportError:  # pragma: no cover - older SDKs never raise it
    TwilioServiceException = TwilioRestException

#: Twilio error codes (REST and status callbacks) in the taxonomy. Unknown 4xx codes are
#: `provider_error` with the raw code kept; see `status_error` for the HTTP-status fallback.
ERROR_TABLE: dict[int, ErrorCode] = {
    20003: ErrorCode.AUTH_FAILED,  # authentication error
    20404: ErrorCode.AUTH_FAILED,  # resource not found: the account SID in the URL is wrong
    20429: ErrorCode.RATE_LIMITED,  # account REST concurrency limit; never processed, safe to retry
    20500: ErrorCode.PROVIDER_UNAVAILABLE,
    20503: ErrorCode.PROVIDER_UNAVAILABLE,
    21211: ErrorCode.INVALID_NUMBER,  # invalid 'To'
    21212: ErrorCode.SENDER_INVALID,  # invalid 'From'
    21408: ErrorCode.RECIPIENT_NOT_ALLOWED,  # geo permission not enabled for the destination
    21602: ErrorCode.INVALID_REQUEST,  # body required
    21603: ErrorCode.INVALID_REQUEST,  # 'From' required
    21604: ErrorCode.INVALID_REQUEST,  # 'To' required
    21606: ErrorCode.SENDER_INVALID,  # 'From' is not an SMS-capable number of this account
    21608: ErrorCode.RECIPIENT_NOT_ALLOWED,  # trial account: 'To' not verified
    21610: ErrorCode.RECIPIENT_OPTED_OUT,  # the recipient replied STOP
    21611: ErrorCode.RATE_LIMITED,  # the sender's queue is full; later
    21612: ErrorCode.NOT_MOBILE,  # cannot route to this number by SMS
    21614: ErrorCode.NOT_MOBILE,  # 'To' is not a mobile number
    21617: ErrorCode.MESSAGE_TOO_LONG,  # over 1,600 characters
    30003: ErrorCode.UNDELIVERED,  # unreachable handset
    30005: ErrorCode.UNDELIVERED,  # unknown destination
    30006: ErrorCode.UNDELIVERED,  # landline or unreachable carrier
    30007: ErrorCode.UNDELIVERED,  # carrier filtering
    30008: ErrorCode.UNDELIVERED,  # unknown error
    30034: ErrorCode.UNDELIVERED,  # unregistered A2P 10DLC sender
    30036: ErrorCode.EXPIRED,  # validity period expired in Twilio's queue
}


class _PerThreadResponseClient(TwilioHttpClient):  # type: ignore[misc]
    """TwilioHttpClient that remembers each thread's last response, for its headers: the SDK's
    exceptions drop them, and Retry-After lives there."""

    def __init__(self, *, timeout: float, pool_size: int) -> None:
        super().__init__(timeout=timeout)
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self._local = threading.local()

    def request(self, *args: Any, **kwargs: Any) -> Response:
        self._local.response = None
        response: Response = super().request(*args, **kwargs)
        self._local.response = response
        return response

    def last_headers(self) -> dict[str, str]:
        response = getattr(self._local, "response", None)
        return dict(response.headers) if response is not None and response.headers else {}


class TwilioProvider(SmsProvider):
    name: ClassVar[str] = "twilio"
    limits: ClassVar[MessageLimits] = MessageLimits(
        max_parts=10, max_chars={"gsm7": 1600, "ucs2": 1600}, parts_source="Twilio's advice: 10 segments"
    )
    sender_rates: ClassVar[Mapping[NumberType, float] | None] = CARRIER_SENDER_RATES

    def __init__(self, connection: Connection, *, timeout: float, pool_size: int = 64) -> None:
        self._http = _PerThreadResponseClient(timeout=timeout, pool_size=pool_size)
        # `environment` must be a non-empty mapping or the SDK falls back to os.environ.
        self._client = Client(
            connection.secret("account_sid"),
            connection.secret("auth_token"),
            http_client=self._http,
            environment={"TWILIO_IGNORE_ENVIRONMENT": "1"},
        )
        if connection.api_base_url:
            self._client.api.base_url = connection.api_base_url.rstrip("/")

    def _send(self, sms: OutboundSms) -> Receipt:
        options: dict[str, Any] = {"to": sms.to, "body": sms.body}
        if sms.from_:
            options["from_"] = sms.from_
        if sms.validity_seconds:
            options["validity_period"] = sms.validity_seconds
        message = self._client.messages.create(**options)
        return Receipt(message_id=message.sid, status=message.status)

    def translate(self, exc: Exception) -> SendError:
        if isinstance(exc, TwilioRestException | TwilioServiceException):
            return self._from_twilio_error(exc)
        if isinstance(exc, requests.exceptions.RequestException):
            return translate_requests_error(exc)
        if isinstance(exc, TwilioException):
            return SendError(ErrorCode.PROVIDER_ERROR, f"twilio: {type(exc).__name__}")
        return super().translate(exc)

    def _from_twilio_error(self, exc: TwilioRestException | TwilioServiceException) -> SendError:
        status = int(getattr(exc, "status", 0) or 0)
        raw_code = getattr(exc, "code", None)
        twilio_code = int(raw_code) if isinstance(raw_code, int | str) and str(raw_code).isdigit() else None
        headers = {k.lower(): v for k, v in self._http.last_headers().items()}
        detail = str(getattr(exc, "msg", None) or getattr(exc, "title", None) or "")
        detail = detail.removeprefix("Unable to create record: ")
        return status_error(
            "twilio",
            status,
            code=ERROR_TABLE.get(twilio_code) if twilio_code is not None else None,
            provider_code=twilio_code if twilio_code is not None else status,
            detail=_scrub(detail),
            retry_after=retry_after_seconds(headers.get("retry-after")),
        )

    def close(self) -> None:
        self._http.session.close()


def translate_requests_error(exc: requests.exceptions.RequestException) -> SendError:
    """requests' transport errors (the SDK's transport) in the taxonomy."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return SendError(ErrorCode.PROVIDER_UNAVAILABLE, "cannot connect to twilio (connect timeout)")
    if isinstance(exc, requests.exceptions.Timeout):
        return SendError(ErrorCode.PROVIDER_UNAVAILABLE, "twilio did not answer in time", ambiguous=True)
    if isinstance(exc, requests.exceptions.ConnectionError):
        refused = "NewConnectionError" in repr(exc.args) or "Connection refused" in str(exc)
        return SendError(
            ErrorCode.PROVIDER_UNAVAILABLE,
            "cannot connect to twilio" if refused else "the connection to twilio failed",
            ambiguous=not refused,
        )
    return SendError(
        ErrorCode.PROVIDER_UNAVAILABLE, f"twilio request failed ({type(exc).__name__})", ambiguous=True
    )


def _scrub(detail: str) -> str:
    """Twilio's messages quote the numbers ("The 'To' number +1415… is not valid"): mask digit runs."""
    return re.sub(r"\+?\d[\d\s-]{6,}\d", lambda m: m.group(0)[:5] + "****", detail)[:300]
