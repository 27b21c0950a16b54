"""Telnyx (API v2 Messaging) through httpx: `POST /v2/messages`, Bearer key, JSON.

Refusals are classified by `errors[0].code` (a string), not by the HTTP status: third parties
saw 40300 with four different statuses. Telnyx honours `Idempotency-Key` (24 h), so the job's key
is passed and Telnyx itself drops a duplicate of a retried request.
"""

from __future__ import annotations

import hashlib
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

DEFAULT_BASE_URL = "https://api.telnyx.com"

#: Telnyx error codes (send API and delivery webhooks) in the taxonomy.
ERROR_TABLE: dict[str, ErrorCode] = {
    "10004": ErrorCode.INVALID_REQUEST,  # missing required parameter
    "10007": ErrorCode.PROVIDER_UNAVAILABLE,  # unexpected error
    "10009": ErrorCode.AUTH_FAILED,  # authentication failed
    "10010": ErrorCode.AUTH_FAILED,  # authorization failed
    "10011": ErrorCode.RATE_LIMITED,  # too many requests
    "10015": ErrorCode.INVALID_REQUEST,  # bad request
    "10016": ErrorCode.INVALID_NUMBER,  # must be +E.164
    "40001": ErrorCode.NOT_MOBILE,  # not routable (landline)
    "40002": ErrorCode.UNDELIVERED,  # spam (temporary)
    "40003": ErrorCode.UNDELIVERED,  # spam (permanent)
    "40004": ErrorCode.UNDELIVERED,  # rejected by destination
    "40006": ErrorCode.UNDELIVERED,  # recipient unavailable
    "40008": ErrorCode.UNDELIVERED,  # undeliverable
    "40011": ErrorCode.UNDELIVERED,  # upstream rate limit
    "40012": ErrorCode.INVALID_NUMBER,  # invalid destination
    "40013": ErrorCode.SENDER_INVALID,  # invalid source
    "40014": ErrorCode.EXPIRED,  # expired in queue
    "40015": ErrorCode.UNDELIVERED,  # internal spam filter
    "40300": ErrorCode.RECIPIENT_OPTED_OUT,  # blocked due to STOP
    "40305": ErrorCode.SENDER_INVALID,  # invalid 'from' address
    "40310": ErrorCode.INVALID_NUMBER,  # invalid 'to' address
}


def telnyx_idempotency_key(key: str) -> str:
    """Our key in Telnyx's alphabet (1-255 letters, digits, `-`, `_`): its SHA-256, which also keeps
    call ids out of the provider ("do not include sensitive data in the key")."""
    return hashlib.sha256(key.encode()).hexdigest()


class TelnyxProvider(SmsProvider):
    name: ClassVar[str] = "telnyx"
    limits: ClassVar[MessageLimits] = MessageLimits(max_parts=10, parts_source="Telnyx's limit")
    sender_rates: ClassVar[Mapping[NumberType, float] | None] = CARRIER_SENDER_RATES

    def __init__(self, connection: Connection, *, http: httpx.Client) -> None:
        base = (connection.api_base_url or DEFAULT_BASE_URL).rstrip("/")
        self._url = f"{base}/v2/messages"
        self._headers = {"Authorization": f"Bearer {connection.secret('api_key')}"}
        profile = connection.credentials.get("messaging_profile_id")
        self._profile_id = profile.get_secret_value() if profile else None
        self._http = http

    def _send(self, sms: OutboundSms) -> Receipt:
        payload: dict[str, Any] = {"to": sms.to, "text": sms.body}
        if sms.from_:
            payload["from"] = sms.from_
        if self._profile_id:
            payload["messaging_profile_id"] = self._profile_id
        headers = {**self._headers, "Idempotency-Key": telnyx_idempotency_key(sms.idempotency_key)}
        with map_transport_errors():
            response = self._http.post(self._url, json=payload, headers=headers)
        data = response_json(response)
        if 200 <= response.status_code < 300:
            message = data.get("data") if isinstance(data, dict) else None
            message_id = message.get("id") if isinstance(message, dict) else None
            return Receipt(message_id=str(message_id) if message_id else None, status="queued")
        raise self._error(response, data)

    def _error(self, response: httpx.Response, data: Any) -> SendError:
        errors = data.get("errors") if isinstance(data, dict) else None
        first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
        code = str(first.get("code")) if first.get("code") is not None else None
        detail = str(first.get("title") or "")
        reset = response.headers.get("retry-after") or response.headers.get("x-ratelimit-reset")
        return status_error(
            "telnyx",
            response.status_code,
            code=ERROR_TABLE.get(code) if code else None,
            provider_code=code,
            detail=detail[:200],
            retry_after=retry_after_seconds(reset),
        )
