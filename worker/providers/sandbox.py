"""The sandbox provider: accepts messages and records them in a Redis outbox, sending nothing.

For demos and for testing agent prompts without a provider account. Magic recipient numbers
trigger each outcome the agent may have to speak about (they pass E.164 validation, like
Twilio's own test numbers):

| to              | outcome                                                        |
|-----------------|----------------------------------------------------------------|
| +15005550001    | failed / invalid_number (as Twilio 21211)                      |
| +15005550002    | failed / not_mobile (21614)                                    |
| +15005550003    | failed / recipient_not_allowed (21408)                         |
| +15005550004    | failed / recipient_opted_out (21610)                           |
| +15005550005    | failed / sender_invalid (21606)                                |
| +15005550007    | failed / auth_failed (20003)                                   |
| +15005550008    | rate_limited (20429, Retry-After 1 s) on every attempt         |
| +15005550009    | provider_unavailable on every attempt (retries, then failed)   |
| +15005550010    | provider_unavailable on the first attempt, then accepted       |
| +15005550011    | accepted after 3 s (longer than a short `send()` timeout)      |
| +15005550012    | accepted, then delivered (its status poll says so)             |
| +15005550013    | accepted, then undelivered: carrier filtering (as Twilio 30007)|
| anything else   | accepted (its status poll says `sent`: handed over, not final) |

Receipts come through the same machinery as the real providers' (the status poll calls
`fetch_status`, which reads what `send` recorded for the message id).

The sandbox sends from any number. `SANDBOX_NUMBERS` is what it lists as its account's numbers
(`config connection numbers`), for the number picker to offer.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar, Self

import httpx
import redis

from producers.contract import SANDBOX_OUTBOX_KEY, ErrorCode, utcnow
from worker.config.models import Connection
from worker.errors import SendError
from worker.provider_specs import SPECS, ProviderSpec
from worker.providers.base import OutboundSms, ProviderResources, Receipt, SmsProvider, receipt_error
from worker.providers.numbers import AccountNumber, NumberListing, SenderCheck
from worker.providers.twilio import RECEIPT_ERRORS as TWILIO_RECEIPT_ERRORS
from worker.receipts import DeliveryStatus, ReceiptUpdate

_FAILURES: dict[str, tuple[ErrorCode, int, str]] = {
    "+15005550001": (ErrorCode.INVALID_NUMBER, 21211, "the 'To' number is not a valid phone number"),
    "+15005550002": (ErrorCode.NOT_MOBILE, 21614, "the 'To' number is not a mobile number"),
    "+15005550003": (ErrorCode.RECIPIENT_NOT_ALLOWED, 21408, "no permission to send to this region"),
    "+15005550004": (ErrorCode.RECIPIENT_OPTED_OUT, 21610, "the recipient has unsubscribed"),
    "+15005550005": (ErrorCode.SENDER_INVALID, 21606, "the 'From' number cannot send SMS"),
    "+15005550007": (ErrorCode.AUTH_FAILED, 20003, "authentication failed"),
    "+15005550008": (ErrorCode.RATE_LIMITED, 20429, "too many requests"),
    "+15005550009": (ErrorCode.PROVIDER_UNAVAILABLE, 503, "service unavailable"),
}
FLAKY_ONCE = "+15005550010"
SLOW = "+15005550011"
SLOW_SECONDS = 3.0
DELIVERED = "+15005550012"
UNDELIVERED = "+15005550013"
#: What the status poll reports per recipient: status and (undelivered) the Twilio-style code.
_RECEIPTS: dict[str, tuple[DeliveryStatus, int | None]] = {
    DELIVERED: ("delivered", None),
    UNDELIVERED: ("undelivered", 30007),
}
#: Seconds the sandbox remembers a message's receipt.
RECEIPT_TTL = 24 * 3600


def receipt_key(message_id: str) -> str:
    return f"sms:sandbox:receipt:{message_id}"


#: Outbox entries kept (approximately).
OUTBOX_MAXLEN = 10_000


#: The sandbox account's documented numbers (README, "The sandbox provider").
SANDBOX_NUMBERS = (AccountNumber("+15005550006", sms=True, mms=True, voice=True, name="Sandbox sender"),)


class SandboxProvider(SmsProvider):
    spec: ClassVar[ProviderSpec] = SPECS["sandbox"]
    name: ClassVar[str] = spec.name
    polls: ClassVar[bool] = True

    @classmethod
    def check_credentials(cls, connection: Connection, *, http: httpx.Client, timeout: float) -> str:
        return "the sandbox needs no credentials"

    @classmethod
    def list_numbers(cls, connection: Connection, *, http: httpx.Client, timeout: float) -> NumberListing:
        return NumberListing(SANDBOX_NUMBERS, note="the sandbox sends from any number")

    @classmethod
    def requires_sender(cls, connection: Connection) -> bool:
        return False

    @classmethod
    def check_sender(cls, connection: Connection, listing: NumberListing, number: str) -> SenderCheck:
        return SenderCheck(number, True, "the sandbox sends from any number")

    @classmethod
    def build(cls, connection: Connection, resources: ProviderResources) -> Self:
        return cls(resources.redis)

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def _send(self, sms: OutboundSms) -> Receipt:
        failure = _FAILURES.get(sms.to)
        if failure is not None:
            code, provider_code, message = failure
            retry_after = 1.0 if code == ErrorCode.RATE_LIMITED else None
            raise SendError(code, f"sandbox: {message}", provider_code=provider_code, retry_after=retry_after)
        if sms.to == FLAKY_ONCE:
            attempts_key = f"sms:sandbox:attempts:{sms.idempotency_key}"
            with self._redis.pipeline() as pipe:
                pipe.incr(attempts_key)
                pipe.expire(attempts_key, 3600)
                attempt = int(pipe.execute()[0])
            if attempt == 1:
                raise SendError(
                    ErrorCode.PROVIDER_UNAVAILABLE, "sandbox: service unavailable", provider_code=503
                )
        if sms.to == SLOW:
            time.sleep(SLOW_SECONDS)
        message_id = "SB" + uuid.uuid4().hex
        receipt_status, receipt_code = _RECEIPTS.get(sms.to, ("sent", None))
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.xadd(
                SANDBOX_OUTBOX_KEY,
                {
                    "message_id": message_id,
                    "job_id": sms.job_id,
                    "to": sms.to,
                    "from": sms.from_ or "",
                    "body": sms.body,
                    "at": utcnow().isoformat(),
                },
                maxlen=OUTBOX_MAXLEN,
                approximate=True,
            )
            pipe.set(receipt_key(message_id), f"{receipt_status}:{receipt_code or ''}", ex=RECEIPT_TTL)
            pipe.execute()
        return Receipt(message_id=message_id, status="queued")

    @classmethod
    def receipt(cls, fields: Mapping[str, Any], *, source: str = "callback") -> ReceiptUpdate:
        """`{"message_id", "status", "error_code"}` (what `fetch_status` reads back)."""
        message_id, status = fields.get("message_id"), fields.get("status")
        if not message_id or status not in (
            "queued",
            "sending",
            "sent",
            "delivered",
            "undelivered",
            "unconfirmed",
        ):
            raise ValueError("not a sandbox receipt: message_id and a delivery status are required")
        error = None
        if status == "undelivered":
            code = int(fields["error_code"]) if str(fields.get("error_code") or "").isdigit() else None
            error = receipt_error(code, TWILIO_RECEIPT_ERRORS.get(code) if code is not None else None)
        return ReceiptUpdate(
            provider=cls.name,
            message_id=str(message_id),
            status=status,
            error=error,
            raw=dict(fields),
            source="poll" if source == "poll" else "callback",
        )

    def fetch_status(self, message_id: str) -> ReceiptUpdate:
        """What the sandbox recorded for the message at send time (unknown ids: `queued`)."""
        stored = self._redis.get(receipt_key(message_id))
        text = stored.decode() if isinstance(stored, bytes) else str(stored or "queued:")
        status, _, code = text.partition(":")
        return self.receipt({"message_id": message_id, "status": status, "error_code": code}, source="poll")
