"""Telnyx (API v2 Messaging) through httpx: `POST /v2/messages`, Bearer key, JSON.

Refusals are classified by `errors[0].code` (a string), not by the HTTP status: third parties
saw 40300 with four different statuses. Telnyx honours `Idempotency-Key` (24 h), so the job's key
is passed and Telnyx itself drops a duplicate of a retried request.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar, Self

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from producers.contract import ErrorCode, reason
from worker.config.models import Connection
from worker.errors import SendError
from worker.inbound import InboundMessage
from worker.provider_specs import SPECS, ProviderSpec
from worker.providers import callbacks
from worker.providers.base import (
    CARRIER_SENDER_RATES,
    MessageLimits,
    NumberType,
    OutboundSms,
    ProviderResources,
    Receipt,
    SmsProvider,
    map_transport_errors,
    receipt_error,
    response_json,
    retry_after_seconds,
    status_error,
)
from worker.providers.numbers import (
    MAX_NUMBERS,
    MAX_PAGES,
    AccountNumber,
    NumberListing,
    SenderCheck,
    check_in_listing,
)
from worker.receipts import DeliveryStatus, ReceiptUpdate

DEFAULT_BASE_URL = "https://api.telnyx.com"

#: seconds a webhook's `telnyx-timestamp` may be away from our clock (the SDKs' tolerance)
SIGNATURE_TOLERANCE = 300

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


_OFFER = "offer to read it out or share it another way"
#: Delivery `errors[].code`s of `message.finalized` webhooks and fetched messages, with what the
#: agent can say. Codes not here fall back to `ERROR_TABLE`, then to `undelivered`.
RECEIPT_ERRORS: dict[str, tuple[ErrorCode, str]] = {
    "40001": (
        ErrorCode.NOT_MOBILE,
        "that number can't receive texts, maybe a landline; ask for a mobile number",
    ),
    "40002": (
        ErrorCode.UNDELIVERED,
        "the carrier held it back as possible spam; offer to send it again later",
    ),
    "40003": (ErrorCode.UNDELIVERED, f"the carrier filtered it as spam; {_OFFER}"),
    "40004": (ErrorCode.UNDELIVERED, f"the caller's carrier rejected it; {_OFFER}"),
    "40005": (ErrorCode.EXPIRED, "it expired before it could be delivered; offer to send it again"),
    "40006": (
        ErrorCode.UNDELIVERED,
        "the phone was unreachable; ask the caller to check their phone, and offer to send it again later",
    ),
    "40008": (ErrorCode.UNDELIVERED, f"the carrier couldn't deliver it; {_OFFER}"),
    "40009": (ErrorCode.UNDELIVERED, f"the carrier refused the message text; {_OFFER}"),
    "40011": (ErrorCode.RATE_LIMITED, "too many texts went out at once; offer to send it again in a moment"),
    "40012": (ErrorCode.INVALID_NUMBER, "that number isn't valid; confirm the number with the caller"),
    "40013": (ErrorCode.SENDER_INVALID, f"the carrier refused the sending number; {_OFFER}"),
    "40014": (ErrorCode.EXPIRED, "it expired in the provider's queue; offer to send it again"),
    "40015": (ErrorCode.UNDELIVERED, f"the provider's spam filter stopped it; {_OFFER}"),
    "40300": (ErrorCode.RECIPIENT_OPTED_OUT, reason(ErrorCode.RECIPIENT_OPTED_OUT)),
}

#: `to[].status` in ours. `delivery_unconfirmed` usually landed: `unconfirmed`, never a reason to resend.
STATUS_TABLE: dict[str, DeliveryStatus] = {
    "queued": "queued",
    "sending": "sending",
    "sent": "sent",
    "delivered": "delivered",
    "delivery_unconfirmed": "unconfirmed",
    "delivery_failed": "undelivered",
    "sending_failed": "undelivered",
    "expired": "undelivered",
}
#: Webhook event types that are receipts (`message.received` is an inbound message).
RECEIPT_EVENTS = frozenset({"message.sent", "message.finalized"})


def _from_payload(payload: Any, raw: Mapping[str, Any], source: str, occurred_at: Any) -> ReceiptUpdate:
    """An `OutboundMessagePayload` (a webhook's `data.payload`, or a fetched message's `data`)."""
    if not isinstance(payload, Mapping) or not payload.get("id"):
        raise ValueError("not a Telnyx message: payload.id is required")
    recipients = payload.get("to")
    first = recipients[0] if isinstance(recipients, list) and recipients else {}
    raw_status = first.get("status") if isinstance(first, Mapping) else None
    if not raw_status:
        raise ValueError("not a Telnyx message: to[].status is required")
    status = STATUS_TABLE.get(str(raw_status), "queued")
    error = None
    if status == "undelivered":
        errors = payload.get("errors")
        head = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], Mapping) else {}
        code = str(head["code"]) if head.get("code") not in (None, "") else None
        expired = ErrorCode.EXPIRED if raw_status == "expired" else None
        error = receipt_error(
            code,
            RECEIPT_ERRORS.get(code) if code else None,
            fallback=(ERROR_TABLE.get(code) if code else None) or expired,
        )
    when = None
    if isinstance(occurred_at, str):
        try:
            when = datetime.fromisoformat(occurred_at.replace("Z", "+00:00"))
        except ValueError:
            when = None
    return ReceiptUpdate(
        provider="telnyx",
        message_id=str(payload["id"]),
        status=status,
        error=error,
        raw=dict(raw),
        source="poll" if source == "poll" else "callback",
        occurred_at=when,
    )


def telnyx_idempotency_key(key: str) -> str:
    """Our key in Telnyx's alphabet (1-255 letters, digits, `-`, `_`): its SHA-256, which also keeps
    call ids out of the provider ("do not include sensitive data in the key")."""
    return hashlib.sha256(key.encode()).hexdigest()


#: Numbers read per request (`page[size]`: Telnyx's default is 20, its most 250).
NUMBERS_PAGE_SIZE = 100


def _profile_id(connection: Connection) -> str | None:
    profile = connection.credentials.get("messaging_profile_id")
    return profile.get_secret_value() if profile else None


def _get(
    connection: Connection, http: httpx.Client, path: str, params: dict[str, int], timeout: float
) -> httpx.Response:
    base = (connection.api_base_url or DEFAULT_BASE_URL).rstrip("/")
    headers = {"Authorization": f"Bearer {connection.secret('api_key')}"}
    with map_transport_errors():
        return http.get(base + path, params=params, headers=headers, timeout=timeout)


def _pages(
    connection: Connection, http: httpx.Client, path: str, timeout: float
) -> tuple[list[dict[str, Any]], bool]:
    """Every item of a paged list (bounded) and whether some were left unread."""
    items: list[dict[str, Any]] = []
    for page in range(1, MAX_PAGES + 1):
        params = {"page[number]": page, "page[size]": NUMBERS_PAGE_SIZE}
        response = _get(connection, http, path, params, timeout)
        data = response_json(response)
        if response.status_code != 200 or not isinstance(data, dict):
            raise _account_error(response)
        items += [item for item in data.get("data") or [] if isinstance(item, dict)]
        meta = data.get("meta")
        meta = meta if isinstance(meta, dict) else {}
        total_pages = meta.get("total_pages")
        if not isinstance(total_pages, int) or page >= total_pages:
            return items[:MAX_NUMBERS], len(items) > MAX_NUMBERS
        if len(items) >= MAX_NUMBERS:
            return items[:MAX_NUMBERS], True
    return items[:MAX_NUMBERS], True


def _account_error(response: httpx.Response) -> SendError:
    data = response_json(response)
    errors = data.get("errors") if isinstance(data, dict) else None
    first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
    code = str(first["code"]) if first.get("code") is not None else None
    return status_error(
        "telnyx",
        response.status_code,
        code=ERROR_TABLE.get(code) if code else None,
        provider_code=code,
    )


class TelnyxProvider(SmsProvider):
    spec: ClassVar[ProviderSpec] = SPECS["telnyx"]
    name: ClassVar[str] = spec.name
    callbacks: ClassVar[bool] = True
    polls: ClassVar[bool] = True
    limits: ClassVar[MessageLimits] = MessageLimits(max_parts=10, parts_source="Telnyx's limit")
    sender_rates: ClassVar[Mapping[NumberType, float] | None] = CARRIER_SENDER_RATES

    @classmethod
    def check_credentials(cls, connection: Connection, *, http: httpx.Client, timeout: float) -> str:
        """`GET /v2/messaging_profiles/{id}` when the connection names a profile, else `GET /v2/balance`."""
        profile = _profile_id(connection)
        path = f"/v2/messaging_profiles/{profile}" if profile else "/v2/balance"
        response = _get(connection, http, path, {}, timeout)
        if response.status_code == 200:
            return "messaging profile found" if profile else "api key accepted"
        if response.status_code == 404 and profile:
            raise SendError(ErrorCode.SENDER_INVALID, "telnyx answered 404: no such messaging_profile_id")
        raise _account_error(response)

    @classmethod
    def list_numbers(cls, connection: Connection, *, http: httpx.Client, timeout: float) -> NumberListing:
        """`GET /v2/phone_numbers` (status, voice connection, messaging profile, customer reference)
        joined with `GET /v2/phone_numbers/messaging` (the SMS and MMS features), both paged with
        `page[number]`/`page[size]` to `meta.total_pages` or `MAX_NUMBERS`.

        SMS-capable means Telnyx reports SMS features and the number is on a messaging profile (it
        cannot send otherwise); voice means it is assigned to a voice connection."""
        numbers, truncated = _pages(connection, http, "/v2/phone_numbers", timeout)
        messaging, more = _pages(connection, http, "/v2/phone_numbers/messaging", timeout)
        features = {str(item.get("phone_number")): item.get("features") for item in messaging}
        listed: list[AccountNumber] = []
        for item in numbers:
            number = str(item.get("phone_number") or "")
            if not number:
                continue
            found = features.get(number)
            feature_set = found if isinstance(found, dict) else {}
            profile = item.get("messaging_profile_id") or None
            reference = item.get("customer_reference")
            listed.append(
                AccountNumber(
                    number=number,
                    sms=bool(feature_set.get("sms")) and profile is not None,
                    mms=bool(feature_set.get("mms")) and profile is not None,
                    voice=item.get("connection_id") is not None,
                    name=reference if isinstance(reference, str) and reference else None,
                    status=str(item["status"]) if item.get("status") else None,
                    messaging_profile_id=str(profile) if profile else None,
                    messaging_profile_name=item.get("messaging_profile_name") or None,
                )
            )
        return NumberListing(tuple(listed), truncated=truncated or more)

    @classmethod
    def requires_sender(cls, connection: Connection) -> bool:
        """With a messaging profile, Telnyx picks the sender from the profile's number pool."""
        return _profile_id(connection) is None

    @classmethod
    def check_sender(cls, connection: Connection, listing: NumberListing, number: str) -> SenderCheck:
        """As usual, and a connection that names a messaging profile sends only from its numbers
        (Telnyx refuses others with 40305)."""
        check = check_in_listing(listing, number)
        profile = _profile_id(connection)
        found = listing.find(number)
        if check.ok and profile and found is not None and found.messaging_profile_id != profile:
            return SenderCheck(number, False, "on the account but on another messaging profile")
        return check

    @classmethod
    def build(cls, connection: Connection, resources: ProviderResources) -> Self:
        return cls(connection, http=resources.http())

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
        if sms.status_callback:
            payload["webhook_url"] = sms.status_callback
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

    @classmethod
    def receipt(cls, fields: Mapping[str, Any], *, source: str = "callback") -> ReceiptUpdate:
        """A delivery webhook's parsed JSON body (`OutboundMessageEvent`: `data.event_type`
        `message.sent`/`message.finalized`, `data.payload.to[].status`, `data.payload.errors[]`)."""
        data = fields.get("data")
        if not isinstance(data, Mapping) or data.get("event_type") not in RECEIPT_EVENTS:
            raise ValueError(
                "not a Telnyx delivery webhook: data.event_type must be message.sent or message.finalized"
            )
        return _from_payload(data.get("payload"), fields, source, data.get("occurred_at"))

    @classmethod
    def receipt_belongs_to(cls, connection: Connection, fields: Mapping[str, Any]) -> bool:
        """A delivery webhook names the message's `messaging_profile_id`: when both it and the
        connection have one, they must be the same profile."""
        data = fields.get("data")
        payload = data.get("payload") if isinstance(data, Mapping) else None
        sent_by = payload.get("messaging_profile_id") if isinstance(payload, Mapping) else None
        ours = _profile_id(connection)
        return not (sent_by and ours) or str(sent_by) == ours

    def fetch_status(self, message_id: str) -> ReceiptUpdate:
        """`GET /v2/messages/{id}`: `{"data": OutboundMessagePayload}`."""
        with map_transport_errors():
            response = self._http.get(f"{self._url}/{message_id}", headers=self._headers)
        data = response_json(response)
        if response.status_code != 200 or not isinstance(data, dict):
            raise self._error(response, data)
        payload = data.get("data")
        completed = payload.get("completed_at") if isinstance(payload, Mapping) else None
        return _from_payload(payload, data, "poll", completed)

    # -- callbacks ---------------------------------------------------------------------------------

    signs_callbacks: ClassVar[bool] = True
    signs_url: ClassVar[bool] = False

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
        """`telnyx-signature-ed25519` (base64 of 64 bytes) over `f"{telnyx-timestamp}|{raw body}"`,
        verified with the connection's `webhook_public_key`; a timestamp more than 300 s away from
        our clock is refused (a replay). The URL is not signed."""
        if connection.webhook_public_key is None:
            return False
        signature_b64 = callbacks.header(headers, "telnyx-signature-ed25519")
        timestamp = callbacks.header(headers, "telnyx-timestamp")
        if not signature_b64 or not timestamp or not timestamp.strip().isdigit():
            return False
        current = time.time() if now is None else now
        if abs(current - int(timestamp)) > SIGNATURE_TOLERANCE:
            return False
        try:
            signature = base64.b64decode(signature_b64.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        if len(signature) != 64:
            return False
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(connection.webhook_public_key))
        try:
            key.verify(signature, timestamp.strip().encode() + b"|" + body)
        except InvalidSignature:
            return False
        return True

    @classmethod
    def callback_fields(cls, body: bytes) -> dict[str, Any]:
        """The event: `{"data": {"event_type", "id", "occurred_at", "payload"}, "meta"}`."""
        event = callbacks.json_object(body)
        data = event.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("payload"), dict):
            raise callbacks.MalformedCallback("data.payload: missing")
        return event

    @classmethod
    def is_receipt(cls, fields: Mapping[str, Any]) -> bool:
        """Only `message.sent` and `message.finalized` are receipts; a profile-wide webhook URL
        also gets other events (`message.received`…)."""
        return fields["data"].get("event_type") in RECEIPT_EVENTS

    @classmethod
    def inbound_message(cls, connection: Connection, fields: Mapping[str, Any]) -> InboundMessage | None:
        """A `message.received` event: `payload.from.phone_number`, `payload.to[0].phone_number`,
        `payload.text`, `payload.id`. Other event types are not received texts (None)."""
        data = fields["data"]
        if data.get("event_type") != "message.received":
            return None
        payload = data["payload"]
        sender = payload.get("from")
        recipients = payload.get("to")
        first = recipients[0] if isinstance(recipients, list) and recipients else None
        text = payload.get("text")
        if not isinstance(text, str):
            raise callbacks.MalformedCallback("data.payload.text: missing")
        return InboundMessage(
            provider=cls.name,
            connection_id=connection.connection_id,
            from_number=callbacks.e164(
                sender.get("phone_number") if isinstance(sender, dict) else None, field="payload.from"
            ),
            to_number=callbacks.e164(
                first.get("phone_number") if isinstance(first, dict) else None, field="payload.to"
            ),
            text=text,
            message_id=str(payload["id"]) if payload.get("id") else None,
        )
