"""`FakeTelnyx`: Telnyx's API v2 Messaging: send, retrieve, and its webhooks.

    POST /v2/messages        (JSON; Authorization: Bearer <API key>; optional Idempotency-Key)
    GET  /v2/messages/{id}   (the message as it is now: to[].status, errors)
    GET  /v2/balance, /v2/messaging_profiles/{id}       (what `connection test` fetches)
    GET  /v2/phone_numbers, /v2/phone_numbers/messaging (`numbers`: page[number]/page[size] and `meta`)

Answers like Telnyx (`tests/specs/telnyx/spec3.yml`): 200 `{"data": OutboundMessagePayload}` with the
`x-ratelimit-limit/-remaining/-reset` headers, or `{"errors": [{"code": "40310", "title", "detail",
"source", "meta"}]}` (the code is a string) with 401 10009, 403 10010, 429 10011, 409 40300,
400 40305/40310/10004/10015, 422 10027. Every request is checked against Telnyx's OpenAPI spec.

Idempotency (Telnyx "Idempotency" docs, the spec's `IdempotencyKey` parameter): the first successful
answer for a key is replayed for 24 h with `Idempotent-Replayed: true` and sends nothing; the same key
with a different body gets 422 10027; error answers are not stored, so a retry runs again; a malformed
key gets 400 10015. The fake answers a request only when it is done with it, so Telnyx's 409 10036
("still being processed") never happens here.

Webhooks (as `worker/providers/telnyx.py` reads them): to the send's `webhook_url`, JSON `message.sent`
(to[].status `sent`) then `message.finalized` (`delivered`, `delivery_failed` + errors[],
`delivery_unconfirmed`), or only `message.finalized` `sending_failed`; each event is checked against the
spec's `deliveryUpdate` webhook. Signed like Telnyx: `telnyx-timestamp` (Unix seconds) and
`telnyx-signature-ed25519`, the base64 Ed25519 signature of `f"{timestamp}|{raw body}"` with the fake's
own key pair, whose public half is `webhook_public_key` (base64 of the 32 raw bytes, as Mission Control
shows it). `send_inbound()` sends a `message.received` event (spec webhook `inboundMessage`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Self, Unpack

from worker.testing.accounts import OwnedNumber, cannot_send_from, owned, page_bounds
from worker.testing.actions import Error
from worker.testing.exchange import AcceptedMessage, RecordedRequest, Response
from worker.testing.numbers import E164, is_gsm7, sms_segments
from worker.testing.server import ServerOptions
from worker.testing.signing import Ed25519Signer
from worker.testing.spec import OpenApiContract, contract
from worker.testing.webhooks import Callback, MessageStore, Receipts, Target, Webhook, WebhookFake

API_HOST: Final = "https://api.telnyx.com"
SPEC_FILE: Final = "telnyx/spec3.yml"
DEFAULT_API_KEY: Final = "KEY0123456789ABCDEF_fake-telnyx-api-key"
DEFAULT_MESSAGING_PROFILE_ID: Final = "4000eba1-a0c0-4563-9925-b25e842a7cb6"
POOL_NUMBER: Final = "+18445550001"
"""The sender the fake reports when a message goes out through a messaging profile's number pool."""
DEFAULT_NUMBERS: Final = (POOL_NUMBER,)
"""The account's numbers unless `numbers=` says otherwise: the sender the tests use."""
DEFAULT_PAGE_SIZE: Final = 20
MAX_PAGE_SIZE: Final = 250
MAX_PARTS: Final = 10
"""Telnyx's response schema caps `parts` at 10; longer texts get 400 10015 here."""
IDEMPOTENCY_TTL: Final = 24 * 3600.0

# Telnyx has no magic numbers; these reuse the meaning of Twilio's test numbers (see twilio.MAGIC_TO).
INVALID_TO: Final = frozenset({"+15005550001", "+15005550009"})
"""`to` numbers answered with 400 40310 "Invalid 'to' address" (Twilio's invalid / not-mobile ones)."""
BLOCKED_TO: Final = frozenset({"+15005550004"})
"""`to` numbers answered with 409 40300 "Blocked due to STOP message" (Twilio's unsubscribed one)."""
INVALID_FROM: Final = frozenset({"+15005550001", "+15005550007"})
"""`from` numbers answered with 400 40305 "Invalid 'from' address" (Twilio's invalid / not-owned ones)."""

_TITLES: Final[Mapping[int, str]] = {
    10004: "Missing required parameter",
    10005: "Resource not found",
    10007: "Unexpected error",
    10009: "Authentication failed",
    10010: "Authorization failed",
    10011: "Too many requests",
    10015: "Bad Request",
    10027: "Idempotency key reused",
    40300: "Blocked due to STOP message",
    40305: "Invalid 'from' address",
    40310: "Invalid 'to' address",
}
_DETAILS: Final[Mapping[int, str]] = {
    10005: "The requested resource or URL could not be found.",
    10009: "The required authentication headers were either invalid or not included in the request.",
    10010: "You are not authorized to access the requested resource.",
    10011: "You have exceeded the maximum number of allowed requests.",
    10027: "This Idempotency-Key was already used with a different request.",
    40305: "The 'from' address should be a number or sender ID on the messaging profile.",
    40310: "The 'to' address should be a single valid number.",
}
DEFAULT_CODES: Final[Mapping[str, int]] = {"undelivered": 40008, "failed": 40008}
"""The `errors[].code` of `Receipts.undelivered()` / `Receipts.failed()` when no code is given."""
DELIVERY_ERRORS: Final[Mapping[int, str]] = {
    40001: "Not routable",
    40002: "Blocked as spam - temporary",
    40003: "Blocked as spam - permanent",
    40004: "Rejected by destination",
    40005: "Message expired during transmission",
    40006: "Recipient server unavailable",
    40008: "Undeliverable",
    40009: "Invalid message body",
    40011: "Too many messages",
    40300: "Blocked due to STOP message",
}
"""Titles of the delivery errors a `message.finalized` event carries in `payload.errors[]`."""
STALE_SECONDS: Final = 600
"""How far in the past `Receipts.with_stale_timestamp()` stamps a webhook (receivers refuse > 300 s)."""

_MESSAGE_PATH = re.compile(r"^/v2/messages/(?P<id>[^/]+)$")
_IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_SHORT_CODE = re.compile(r"^\d{3,8}$")


def telnyx_error(
    code: int,
    status: int,
    detail: str | None = None,
    pointer: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """Telnyx's error body, code as a string; `detail` defaults to Telnyx's wording for `code`."""
    error: dict[str, Any] = {
        "code": str(code),
        "title": _TITLES.get(code, "Error"),
        "detail": detail or _DETAILS.get(code, _TITLES.get(code, "Error")),
        "meta": {"url": f"https://developers.telnyx.com/docs/overview/errors/{code}"},
    }
    if pointer is not None:
        error["source"] = {"pointer": pointer}
    return Response.json(status, {"errors": [error]}, headers)


@dataclass(frozen=True)
class _Stored:
    fingerprint: str
    response: Response
    message_id: str
    stored_at: float


class FakeTelnyx(WebhookFake):
    """Fake Telnyx Messages API; at most `rate_limit` requests per `rate_limit_window` seconds (then 429)."""

    def __init__(
        self,
        api_key: str = DEFAULT_API_KEY,
        *,
        rate_limit: int = 1_000_000,
        rate_limit_window: float = 1.0,
        idempotency_ttl: float = IDEMPOTENCY_TTL,
        numbers: Iterable[OwnedNumber | str] | None = None,
        validate: bool = True,
        **options: Unpack[ServerOptions],
    ) -> None:
        super().__init__(**options)
        self.api_key = api_key
        self.numbers = owned(numbers, DEFAULT_NUMBERS)
        self.rate_limit = rate_limit
        self.rate_limit_window = rate_limit_window
        self.idempotency_ttl = idempotency_ttl
        self.organization_id = str(uuid.uuid4())
        self.contract: OpenApiContract | None = contract(SPEC_FILE, API_HOST) if validate else None
        self._window_start = time.monotonic()
        self._window_count = 0
        self._idempotency: dict[str, _Stored] = {}
        self._messages = MessageStore()
        self._signer = Ed25519Signer()
        self._forger = Ed25519Signer()

    @property
    def webhook_public_key(self) -> str:
        """Base64 of the 32-byte Ed25519 public key the webhooks verify with (a connection's
        `webhook_public_key`)."""
        return self._signer.public_key

    def message_path(self, message_id: str) -> str:
        """The retrieve path of one message."""
        return f"/v2/messages/{message_id}"

    def message(self, message_id: str) -> dict[str, Any] | None:
        """A copy of the message as a retrieve would answer it now (None if unknown)."""
        with self._lock:
            return copy.deepcopy(self._messages.get(message_id))

    @property
    def idempotency_keys(self) -> dict[str, str]:
        """Stored Idempotency-Keys → the id of the message each one sent."""
        with self._lock:
            return {key: stored.message_id for key, stored in self._idempotency.items()}

    def start(self) -> Self:
        if self.contract is not None:
            self.contract.load()  # ~3 s for the 4 MB YAML: pay before the first request
        return super().start()

    def check(self, request: RecordedRequest) -> list[str]:
        return self.contract.request_violations(request) if self.contract is not None else []

    def is_send(self, request: RecordedRequest) -> bool:
        return request.method == "POST" and request.path == "/v2/messages"

    def render_error(self, error: Error) -> Response:
        code = int(error.code) if error.code is not None else error.status
        return telnyx_error(code, error.status, error.message, headers=error.headers)

    def on_reset(self) -> None:
        super().on_reset()
        self._messages.clear()
        self._idempotency.clear()
        self._window_start, self._window_count = time.monotonic(), 0

    def handle(self, request: RecordedRequest) -> Response:
        account = self._account_request(request)
        if account is not None:
            return account
        if (retrieve := _MESSAGE_PATH.match(request.path)) is not None and request.method == "GET":
            return self._retrieve(request, retrieve["id"])
        if request.path != "/v2/messages":
            return telnyx_error(10005, 404)
        if request.method != "POST":
            return telnyx_error(10015, 405, "Method not allowed.")
        if request.bearer_token() != self.api_key:
            return telnyx_error(10009, 401)
        limited, rate_headers = self._count_request()
        if limited:
            return telnyx_error(10011, 429, headers=rate_headers)
        key = request.headers.get("idempotency-key")
        if key is None:
            return _with_headers(self._send(request)[0], rate_headers)
        if len(request.headers.get_list("idempotency-key")) > 1 or not _IDEMPOTENCY_KEY.match(key):
            return telnyx_error(
                10015, 400, "Invalid Idempotency-Key header.", "/header/Idempotency-Key", rate_headers
            )
        fingerprint = hashlib.sha256(
            b"%s %s\n%s" % (request.method.encode(), request.path.encode(), request.body)
        ).hexdigest()
        stored = self._idempotency.get(key)
        if stored is not None and time.monotonic() - stored.stored_at > self.idempotency_ttl:
            stored = None
        if stored is not None:
            if stored.fingerprint != fingerprint:
                return telnyx_error(10027, 422, pointer="/header/Idempotency-Key", headers=rate_headers)
            return _with_headers(stored.response, {**rate_headers, "Idempotent-Replayed": "true"})
        response, message_id = self._send(request)
        if response.status == 200 and message_id is not None:  # only successes are replayed
            self._idempotency[key] = _Stored(fingerprint, response, message_id, time.monotonic())
        return _with_headers(response, rate_headers)

    def _count_request(self) -> tuple[bool, dict[str, str]]:
        """Count one request in the fixed window; (over the limit?, the x-ratelimit-* headers)."""
        now = time.monotonic()
        if now - self._window_start >= self.rate_limit_window:
            self._window_start, self._window_count = now, 0
        self._window_count += 1
        reset = max(1, math.ceil(self._window_start + self.rate_limit_window - now))
        headers = {
            "x-ratelimit-limit": str(self.rate_limit),
            "x-ratelimit-remaining": str(max(0, self.rate_limit - self._window_count)),
            "x-ratelimit-reset": str(reset),
        }
        return self._window_count > self.rate_limit, headers

    def _send(self, request: RecordedRequest) -> tuple[Response, str | None]:
        """The answer to a send request and the id of the message it accepted (None if rejected)."""
        try:
            body = request.json()
        except ValueError:
            return telnyx_error(10015, 400, "The request body is not valid JSON."), None
        if not isinstance(body, dict):
            return telnyx_error(10015, 400, "The request body must be a JSON object."), None
        rejection = self._reject(body)
        if rejection is None and cannot_send_from(self.numbers, body.get("from")):
            rejection = telnyx_error(40305, 400, pointer="/from")
        if rejection is not None:
            return rejection, None
        if request.violations:
            return telnyx_error(10015, 400, "; ".join(request.violations)), None
        payload = self._payload(body)
        self.accept(
            AcceptedMessage(
                payload["id"],
                body["to"],
                payload["from"]["phone_number"],
                body.get("text"),
                request.received_at,
            )
        )
        self._messages.add(payload["id"], copy.deepcopy(payload))
        webhook_url = body.get("webhook_url")
        target = Target(webhook_url) if isinstance(webhook_url, str) and webhook_url else None
        self.schedule_receipts(payload["id"], body["to"], target)
        return Response.json(200, {"data": payload}), payload["id"]

    @staticmethod
    def _reject(body: Mapping[str, Any]) -> Response | None:
        to, sender, text = body.get("to"), body.get("from"), body.get("text")
        if not isinstance(to, str) or not to:
            return telnyx_error(10004, 400, "The 'to' parameter is required and cannot be blank.", "/to")
        if not sender and not body.get("messaging_profile_id"):
            return telnyx_error(
                10004, 400, "The 'from' parameter is required without a messaging_profile_id.", "/from"
            )
        if isinstance(sender, str) and sender in INVALID_FROM:
            return telnyx_error(40305, 400, pointer="/from")
        if to in INVALID_TO or not (E164.match(to) or _SHORT_CODE.match(to)):
            return telnyx_error(40310, 400, pointer="/to")
        if to in BLOCKED_TO:
            detail = (
                f"Messages cannot be sent from {sender or POOL_NUMBER} to {to} due to an existing block rule."
            )
            return telnyx_error(40300, 409, detail, "/to")
        if not text and not body.get("media_urls"):
            return telnyx_error(10004, 400, "The 'text' parameter is required for SMS.", "/text")
        if isinstance(text, str):
            if body.get("encoding") == "gsm7" and not is_gsm7(text):
                return telnyx_error(
                    10015, 400, "The text contains characters that GSM-7 cannot encode.", "/text"
                )
            if (parts := sms_segments(text)) > MAX_PARTS:
                return telnyx_error(
                    10015, 400, f"The text needs {parts} parts; at most {MAX_PARTS}.", "/text"
                )
        return None

    def _payload(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """An OutboundMessagePayload for an accepted send, as the spec describes it."""
        text = body["text"] if isinstance(body.get("text"), str) else ""
        media = body.get("media_urls") or []
        gsm7 = is_gsm7(text) and body.get("encoding") != "ucs2"
        return {
            "record_type": "message",
            "direction": "outbound",
            "id": str(uuid.uuid4()),
            "type": "MMS" if media else "SMS",
            "messaging_profile_id": body.get("messaging_profile_id") or DEFAULT_MESSAGING_PROFILE_ID,
            "organization_id": self.organization_id,
            "from": {
                "phone_number": body.get("from") or POOL_NUMBER,
                "carrier": "Telnyx",
                "line_type": "VoIP",
            },
            "to": [
                {
                    "phone_number": body["to"],
                    "status": "queued",
                    "carrier": "T-MOBILE USA, INC.",
                    "line_type": "Wireless",
                }
            ],
            "cc": [],
            "text": text,
            "subject": body.get("subject"),
            "media": [{"url": url, "content_type": None, "sha256": None, "size": None} for url in media],
            "webhook_url": body.get("webhook_url"),
            "webhook_failover_url": body.get("webhook_failover_url"),
            "encoding": "GSM-7" if gsm7 else "UCS-2",
            "parts": sms_segments(text) if text else 1,
            "num_chars": len(text),
            "tags": [],
            "cost": None,
            "cost_breakdown": None,
            "tcr_campaign_id": None,
            "tcr_campaign_billable": False,
            "tcr_campaign_registered": None,
            "received_at": _iso_now(),
            "sent_at": None,
            "completed_at": None,
            "valid_until": None,
            "wait_seconds": 0.0,
            "smart_encoding_applied": False,
            "errors": [],
        }

    # -- the account and its numbers ---------------------------------------------------------------
    def _account_request(self, request: RecordedRequest) -> Response | None:
        """The answer to a balance, messaging-profile or numbers request, None for any other."""
        path = request.path
        known = path in ("/v2/balance", "/v2/phone_numbers", "/v2/phone_numbers/messaging")
        if request.method != "GET" or not (known or path.startswith("/v2/messaging_profiles/")):
            return None
        if request.bearer_token() != self.api_key:
            return telnyx_error(10009, 401)
        if request.violations:
            return telnyx_error(10015, 400, "; ".join(request.violations))
        if path == "/v2/balance":
            balance = {"available_credit": "400.00", "balance": "300.00", "credit_limit": "100.00"}
            return Response.json(200, {"data": {**balance, "currency": "USD", "record_type": "balance"}})
        if path.startswith("/v2/messaging_profiles/"):
            profile = path.removeprefix("/v2/messaging_profiles/")
            if profile not in self.messaging_profiles:
                return telnyx_error(10005, 404)
            return Response.json(200, {"data": self._profile(profile)})
        render = self._number if path == "/v2/phone_numbers" else self._messaging_settings
        return Response.json(200, self._numbers_page(request, render))

    @property
    def messaging_profiles(self) -> frozenset[str]:
        """The ids of the account's messaging profiles: the fake's own and any a number names."""
        named = {n.messaging_profile_id for n in self.numbers if n.messaging_profile_id}
        return frozenset({DEFAULT_MESSAGING_PROFILE_ID, *named})

    def profile_of(self, number: OwnedNumber) -> str | None:
        """The messaging profile `number` is on (None: on none, it cannot send SMS)."""
        if number.messaging_profile_id is not None:
            return number.messaging_profile_id
        return DEFAULT_MESSAGING_PROFILE_ID if number.sms else None

    def _numbers_page(
        self, request: RecordedRequest, render: Callable[[OwnedNumber], dict[str, Any]]
    ) -> dict[str, Any]:
        """One page of `page[size]` (default 20, at most 250) items, page `page[number]` (from 1)."""
        query = {name: values[0] for name, values in request.query.items() if values}
        size = min(int(query.get("page[size]", DEFAULT_PAGE_SIZE)), MAX_PAGE_SIZE)
        number = int(query.get("page[number]", 1))
        start, end = page_bounds(len(self.numbers), (number - 1) * size, size)
        meta = {
            "page_number": number,
            "page_size": size,
            "total_pages": max(1, math.ceil(len(self.numbers) / size)),
            "total_results": len(self.numbers),
        }
        return {"data": [render(n) for n in self.numbers[start:end]], "meta": meta}

    def _number(self, number: OwnedNumber) -> dict[str, Any]:
        """A PhoneNumberDetailed (`GET /v2/phone_numbers`)."""
        profile = self.profile_of(number)
        created = "2024-01-02T03:04:05.000Z"
        return {
            "activated_at": created,
            "billing_group_id": None,
            "call_forwarding_enabled": True,
            "call_recording_enabled": False,
            "caller_id_name_enabled": False,
            "cnam_listing_enabled": False,
            "connection_id": number.digit_id() if number.voice else None,
            "connection_name": "fake-voice-connection" if number.voice else None,
            "country_iso_alpha2": "US",
            "created_at": created,
            "customer_reference": number.name,
            "deletion_lock_enabled": False,
            "emergency_address_id": None,
            "emergency_enabled": False,
            "emergency_status": "disabled",
            "external_pin": None,
            "hd_voice_enabled": False,
            "id": number.digit_id(),
            "inbound_call_screening": "disabled",
            "messaging_profile_id": profile,
            "messaging_profile_name": _profile_name(profile),
            "phone_number": number.number,
            "phone_number_type": "toll_free" if number.number.startswith(("+1844", "+1866")) else "local",
            "purchased_at": created,
            "record_type": "phone_number",
            "source_type": "number_order",
            "status": "active",
            "t38_fax_gateway_enabled": False,
            "tags": [],
            "updated_at": created,
        }

    def _messaging_settings(self, number: OwnedNumber) -> dict[str, Any]:
        """A PhoneNumberWithMessagingSettings (`GET /v2/phone_numbers/messaging`): `features.sms`
        and `features.mms` are null where the number cannot do them."""
        features = {"domestic_two_way": True, "international_inbound": True, "international_outbound": True}
        created = "2024-01-02T03:04:05.000Z"
        return {
            "country_code": "US",
            "created_at": created,
            "eligible_messaging_products": ["A2P"],
            "features": {"sms": features if number.sms else None, "mms": features if number.mms else None},
            "id": number.digit_id(),
            "messaging_product": "A2P",
            "messaging_profile_id": self.profile_of(number),
            "organization_id": self.organization_id,
            "phone_number": number.number,
            "record_type": "messaging_settings",
            "tags": [],
            "traffic_type": "A2P",
            "type": "tollfree" if number.number.startswith(("+1844", "+1866")) else "longcode",
            "updated_at": created,
        }

    def _profile(self, profile: str) -> dict[str, Any]:
        created = "2024-01-02T03:04:05.000Z"
        return {
            "created_at": created,
            "enabled": True,
            "id": profile,
            "name": _profile_name(profile),
            "organization_id": self.organization_id,
            "record_type": "messaging_profile",
            "updated_at": created,
            "webhook_api_version": "2",
            "webhook_failover_url": "",
            "webhook_url": "",
            "whitelisted_destinations": ["US"],
        }

    # -- retrieve ------------------------------------------------------------------------------------
    def _retrieve(self, request: RecordedRequest, message_id: str) -> Response:
        if request.bearer_token() != self.api_key:
            return telnyx_error(10009, 401)
        payload = self._messages.get(message_id)
        if payload is None:
            return telnyx_error(10005, 404)
        response = Response.json(200, {"data": payload})
        if self.contract is not None:
            self._violations.extend(
                f"retrieve answer: {v}" for v in self.contract.response_violations(request, response)
            )
        return response

    # -- webhooks ------------------------------------------------------------------------------------------
    def receipt_steps(self, receipts: Receipts) -> list[tuple[str, int | None]]:
        code = receipts.code if receipts.code is not None else DEFAULT_CODES.get(receipts.outcome)
        steps: dict[str, list[tuple[str, int | None]]] = {
            "delivered": [("sent", None), ("delivered", None)],
            "undelivered": [("sent", None), ("delivery_failed", code)],
            "failed": [("sending_failed", code)],
            "unconfirmed": [("sent", None), ("delivery_unconfirmed", None)],
        }
        return steps[receipts.outcome]

    def set_status(self, message_id: str, status: str, code: int | None) -> None:
        payload = self._messages.get(message_id)
        if payload is not None:
            _move(payload, status, code)

    def status_webhook(
        self, message_id: str, status: str, code: int | None, target: Target, receipts: Receipts
    ) -> Webhook:
        payload = copy.deepcopy(self._messages.get(message_id) or {})
        _move(payload, status, code)  # the event shows the status it reports, even when it comes late
        event_type = "message.sent" if status == "sent" else "message.finalized"
        return self._event("deliveryUpdate", event_type, payload, target.url, receipts.forged, receipts.stale)

    def send_inbound(
        self, url: str, *, from_: str, to: str, text: str, forged: bool = False, stale: bool = False
    ) -> Callback:
        """Send a `message.received` event for an SMS from `from_` to `to` (a number of the account)."""
        now, message_id = _iso_now(), str(uuid.uuid4())
        payload = {
            "record_type": "message",
            "direction": "inbound",
            "id": message_id,
            "type": "SMS",
            "messaging_profile_id": DEFAULT_MESSAGING_PROFILE_ID,
            "organization_id": self.organization_id,
            "from": {"phone_number": from_, "carrier": "T-MOBILE USA, INC.", "line_type": "Wireless"},
            "to": [{"phone_number": to, "status": "delivered", "carrier": "Telnyx", "line_type": "VoIP"}],
            "cc": [],
            "text": text,
            "subject": None,
            "media": [],
            "encoding": "GSM-7" if is_gsm7(text) else "UCS-2",
            "parts": sms_segments(text),
            "num_chars": len(text),
            "tags": [],
            "cost": None,
            "cost_breakdown": None,
            "received_at": now,
            "sent_at": None,
            "completed_at": None,
            "valid_until": None,
            "webhook_url": url,
            "webhook_failover_url": None,
            "errors": [],
        }
        hook = self._event("inboundMessage", "message.received", payload, url, forged, stale)
        return self.deliver("inbound", message_id, "received", hook)

    def _event(
        self, webhook: str, event_type: str, payload: dict[str, Any], url: str, forged: bool, stale: bool
    ) -> Webhook:
        """A signed event for the spec's webhook `webhook`, checked against its schema."""
        event = {
            "data": {
                "record_type": "event",
                "id": str(uuid.uuid4()),
                "event_type": event_type,
                "occurred_at": _iso_now(),
                "payload": payload,
            },
            "meta": {"attempt": 1, "delivered_to": url},
        }
        body = json.dumps(event).encode()
        timestamp = str(int(time.time()) - (STALE_SECONDS if stale else 0))
        signer = self._forger if forged else self._signer
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "telnyx-webhooks",
            "telnyx-timestamp": timestamp,
            "telnyx-signature-ed25519": signer.sign(timestamp, body),
        }
        if self.contract is not None:
            self._violations.extend(
                f"{webhook} webhook: {v}" for v in self.contract.webhook_violations(webhook, headers, body)
            )
        return Webhook(url, "POST", headers, body)


def _profile_name(profile: str | None) -> str | None:
    if profile is None:
        return None
    return "Fake messaging profile" if profile == DEFAULT_MESSAGING_PROFILE_ID else f"Profile {profile[:8]}"


def _move(payload: dict[str, Any], status: str, code: int | None) -> None:
    """Set an OutboundMessagePayload to `status` (a `to[].status`), with `errors[]` for `code`."""
    now = _iso_now()
    for recipient in payload.get("to", []):
        recipient["status"] = status
    if status != "sending_failed":
        payload["sent_at"] = payload.get("sent_at") or now
        payload["cost"] = {"amount": "0.0040", "currency": "USD"}
    payload["completed_at"] = None if status == "sent" else (payload.get("completed_at") or now)
    payload["errors"] = (
        [
            {
                "code": str(code),
                "title": DELIVERY_ERRORS.get(code, "Error"),
                "detail": DELIVERY_ERRORS.get(code, ""),
            }
        ]
        if code is not None
        else []
    )


def _iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _with_headers(response: Response, headers: Mapping[str, str]) -> Response:
    return Response(response.status, response.body, {**response.headers, **headers})
