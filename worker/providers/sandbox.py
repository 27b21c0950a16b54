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
| anything else   | accepted                                                       |
"""

from __future__ import annotations

import time
import uuid
from typing import ClassVar

import redis

from producers.contract import SANDBOX_OUTBOX_KEY, ErrorCode, utcnow
from worker.errors import SendError
from worker.providers.base import OutboundSms, Receipt, SmsProvider

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
#: Outbox entries kept (approximately).
OUTBOX_MAXLEN = 10_000


class SandboxProvider(SmsProvider):
    name: ClassVar[str] = "sandbox"

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
        self._redis.xadd(
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
        return Receipt(message_id=message_id, status="queued")
