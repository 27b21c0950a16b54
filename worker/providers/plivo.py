"""Plivo (Messaging API v1) through httpx: `POST /v1/Account/{auth_id}/Message/`, Basic auth, JSON.

Plivo answers refusals with an HTTP status and a free-text `error`; delivery receipts carry
numeric `ErrorCode`s. Both are in `ERROR_TABLE` / `HTTP_TABLE` below. Plivo has no idempotency key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import httpx

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
    map_transport_errors,
    response_json,
    retry_after_seconds,
    status_error,
)

DEFAULT_BASE_URL = "https://api.plivo.com"

#: Delivery-receipt `ErrorCode`s (status callbacks) in the taxonomy.
ERROR_TABLE: dict[int, ErrorCode] = {
    10: ErrorCode.UNDELIVERED,  # invalid message
    20: ErrorCode.UNDELIVERED,  # network error (temporary)
    30: ErrorCode.UNDELIVERED,  # spam detected
    40: ErrorCode.SENDER_INVALID,  # invalid source number
    50: ErrorCode.INVALID_NUMBER,  # invalid destination number
    60: ErrorCode.UNDELIVERED,  # loop detected
    70: ErrorCode.NOT_MOBILE,  # destination permanently unavailable
    80: ErrorCode.UNDELIVERED,  # destination temporarily unavailable
    90: ErrorCode.UNDELIVERED,  # no route available
    100: ErrorCode.UNDELIVERED,  # prohibited by carrier
    110: ErrorCode.MESSAGE_TOO_LONG,  # message too long
    200: ErrorCode.RECIPIENT_OPTED_OUT,  # source number blocked by STOP from the destination
    201: ErrorCode.RECIPIENT_NOT_ALLOWED,  # US toll-free to Canada blocked
    300: ErrorCode.UNDELIVERED,  # failed to dispatch message
    420: ErrorCode.EXPIRED,  # message expired
    900: ErrorCode.PROVIDER_ERROR,  # insufficient credit
    910: ErrorCode.AUTH_FAILED,  # account disabled
    1000: ErrorCode.UNDELIVERED,  # unknown error
}

#: The send API's HTTP statuses in the taxonomy (the `error` text refines 400, see `_classify_400`).
HTTP_TABLE: dict[int, ErrorCode] = {
    400: ErrorCode.PROVIDER_ERROR,  # missing or invalid parameter
    401: ErrorCode.AUTH_FAILED,
    403: ErrorCode.RECIPIENT_NOT_ALLOWED,  # forbidden; on /Message/ the SDK reads it as a geo permission
    404: ErrorCode.AUTH_FAILED,  # the auth id in the URL does not exist
    405: ErrorCode.PROVIDER_ERROR,
    409: ErrorCode.PROVIDER_ERROR,
    422: ErrorCode.PROVIDER_ERROR,
    429: ErrorCode.RATE_LIMITED,
    500: ErrorCode.PROVIDER_UNAVAILABLE,
}


def _classify_400(error: str) -> ErrorCode:
    text = error.lower()
    if "dst" in text or "destination" in text:
        return ErrorCode.INVALID_NUMBER
    if "src" in text or "source" in text or "powerpack" in text:
        return ErrorCode.SENDER_INVALID
    if "insufficient credit" in text:
        return ErrorCode.PROVIDER_ERROR
    return HTTP_TABLE[400]


class PlivoProvider(SmsProvider):
    name: ClassVar[str] = "plivo"
    limits: ClassVar[MessageLimits] = MessageLimits(max_chars={"gsm7": 1600, "ucs2": 737})
    sender_rates: ClassVar[Mapping[NumberType, float] | None] = CARRIER_SENDER_RATES

    def __init__(self, connection: Connection, *, http: httpx.Client) -> None:
        auth_id = connection.secret("auth_id")
        base = (connection.api_base_url or DEFAULT_BASE_URL).rstrip("/")
        self._url = f"{base}/v1/Account/{auth_id}/Message/"
        self._auth = httpx.BasicAuth(auth_id, connection.secret("auth_token"))
        self._http = http

    def _send(self, sms: OutboundSms) -> Receipt:
        payload: dict[str, Any] = {"src": sms.from_, "dst": sms.to, "text": sms.body}
        if sms.validity_seconds:
            payload["message_expiry"] = sms.validity_seconds
        with map_transport_errors():
            response = self._http.post(self._url, json=payload, auth=self._auth)
        data = response_json(response)
        if response.status_code in (200, 201, 202):
            uuids = data.get("message_uuid") if isinstance(data, dict) else None
            message_id = uuids[0] if isinstance(uuids, list) and uuids else None
            return Receipt(message_id=str(message_id) if message_id else None, status="queued")
        raise self._error(response, data)

    def _error(self, response: httpx.Response, data: Any) -> SendError:
        error = data.get("error") if isinstance(data, dict) else None
        detail = error if isinstance(error, str) else ""
        status = response.status_code
        code = _classify_400(detail) if status == 400 else HTTP_TABLE.get(status)
        return status_error(
            "plivo",
            status,
            code=code,
            detail=detail[:200],
            retry_after=retry_after_seconds(response.headers.get("retry-after")),
        )
