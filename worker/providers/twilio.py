"""Twilio Programmable Messaging through the official SDK.

The SDK is given its credentials and an explicit timeout (its default is none), never reads
`TWILIO_*` from the environment, and talks to `api_base_url` when one is configured (a regional
endpoint, or a fake in tests) — `edge`/`region` would mangle such a URL. Its transport is one
pooled keep-alive httpx client per connection and process (`worker/providers/twilio_http.py`),
not the SDK's `requests` stack.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Self
from urllib.parse import parse_qs, urlsplit

import httpx
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.response import Response
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from producers.contract import ErrorCode
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
    receipt_error,
    retry_after_seconds,
    status_error,
)
from worker.providers.numbers import MAX_NUMBERS, AccountNumber, NumberListing
from worker.providers.twilio_http import HTTPX_ERROR_TYPES, HttpxTwilioClient, translate_httpx_error
from worker.receipts import DeliveryStatus, ReceiptUpdate

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


_OFFER = "offer to read it out or share it another way"
_INTERNAL = "the texting provider had an internal error; offer to send it again in a moment"
#: `ErrorCode`s of undelivered/failed receipts (status callbacks, `error_code` of a fetched
#: message): the taxonomy code and what the agent can say. Codes not here fall back to
#: `ERROR_TABLE` (a `failed` message can carry a 21xxx code), then to `undelivered`.
RECEIPT_ERRORS: dict[int, tuple[ErrorCode, str]] = {
    30001: (ErrorCode.RATE_LIMITED, "the carrier's queue was full; offer to send it again in a few minutes"),
    30002: (ErrorCode.PROVIDER_ERROR, f"the texting account is suspended; {_OFFER}"),
    30003: (
        ErrorCode.UNDELIVERED,
        "the phone was unreachable, maybe switched off or without signal; "
        "ask the caller to check their phone, and offer to send it again later",
    ),
    30004: (ErrorCode.UNDELIVERED, f"the carrier or the recipient blocked it; {_OFFER}"),
    30005: (ErrorCode.INVALID_NUMBER, "that number isn't in service; confirm the number with the caller"),
    30006: (
        ErrorCode.NOT_MOBILE,
        "that number is a landline or can't receive texts; ask for a mobile number",
    ),
    30007: (ErrorCode.UNDELIVERED, f"the carrier filtered it as spam; {_OFFER}"),
    30008: (
        ErrorCode.UNDELIVERED,
        "the carrier reported an unknown error; offer to send it again or read it out",
    ),
    30009: (ErrorCode.UNDELIVERED, "part of the message went missing; offer to send it again"),
    30010: (ErrorCode.PROVIDER_ERROR, f"it cost more than the allowed price; {_OFFER}"),
    30011: (ErrorCode.UNDELIVERED, "that phone can't receive picture messages; offer a plain text"),
    30012: (ErrorCode.EXPIRED, "it expired before the carrier could deliver it; offer to send it again"),
    # 30013-30016: Twilio refused the request's own fields (ValidityPeriod/TTL too big, an empty
    # or overlong 'To' list, a channel prefix it does not support, 'To' and 'From' on different
    # channels): nothing reached a carrier, and the same request would fail again.
    30013: (ErrorCode.INVALID_REQUEST, f"the provider refused how long it may wait to deliver it; {_OFFER}"),
    30014: (
        ErrorCode.INVALID_NUMBER,
        "the provider refused the recipient's number; confirm the number with the caller",
    ),
    30015: (ErrorCode.INVALID_REQUEST, f"the provider doesn't support that kind of address; {_OFFER}"),
    30016: (ErrorCode.INVALID_REQUEST, f"the sending and receiving addresses don't match in kind; {_OFFER}"),
    30017: (
        ErrorCode.UNDELIVERED,
        "the carrier's network was congested; offer to send it again in a few minutes",
    ),
    30018: (ErrorCode.SENDER_INVALID, f"the caller's carrier needs a registered sender; {_OFFER}"),
    30019: (
        ErrorCode.MESSAGE_TOO_LONG,
        "it was too long for the carrier; offer a shorter text or read it out",
    ),
    # 30020, 30021: internal failures of Twilio's message scheduling and of its messaging-service
    # orchestrator; worth one more try later.
    30020: (ErrorCode.PROVIDER_ERROR, _INTERNAL),
    30021: (ErrorCode.PROVIDER_ERROR, _INTERNAL),
    30022: (ErrorCode.RATE_LIMITED, "the sending number's limit was exceeded; offer to send it again later"),
    30023: (ErrorCode.RATE_LIMITED, f"the sending number's daily limit was reached; {_OFFER}"),
    30024: (ErrorCode.SENDER_INVALID, f"the sending number isn't set up with the carrier; {_OFFER}"),
    # 30025, 30026: the sender is near its daily T-Mobile limit (A2P 10DLC); past 100 % the carrier
    # answers 30023 until midnight Pacific time.
    30025: (ErrorCode.RATE_LIMITED, f"the sending number is close to the carrier's daily limit; {_OFFER}"),
    30026: (ErrorCode.RATE_LIMITED, f"the sending number is close to the carrier's daily limit; {_OFFER}"),
    30027: (
        ErrorCode.RATE_LIMITED,
        f"the carrier's daily limit for the sending number was reached; {_OFFER}",
    ),
    # 30028-30031: a request parameter Twilio refused (API version, ContentRetention,
    # AddressRetention, MaxRate): our request, not the phone; the same request fails again.
    30028: (ErrorCode.INVALID_REQUEST, f"the texting provider refused the request; {_OFFER}"),
    30029: (ErrorCode.INVALID_REQUEST, f"the texting provider refused the request; {_OFFER}"),
    30030: (ErrorCode.INVALID_REQUEST, f"the texting provider refused the request; {_OFFER}"),
    30031: (ErrorCode.INVALID_REQUEST, f"the texting provider refused the request; {_OFFER}"),
    30032: (ErrorCode.SENDER_INVALID, f"the toll-free sending number isn't verified yet; {_OFFER}"),
    30033: (ErrorCode.SENDER_INVALID, f"the sending number's US texting campaign is suspended; {_OFFER}"),
    30034: (ErrorCode.SENDER_INVALID, f"the sending number isn't registered for texting in the US; {_OFFER}"),
    30035: (
        ErrorCode.SENDER_INVALID,
        f"the sending number's US texting registration isn't finished yet; {_OFFER}",
    ),
    30036: (ErrorCode.EXPIRED, "it couldn't be delivered in time; offer to send it again or read it out"),
}

#: Twilio's message statuses in ours (`queued`/`sending` publish nothing).
STATUS_TABLE: dict[str, DeliveryStatus] = {
    "accepted": "queued",
    "scheduled": "queued",
    "queued": "queued",
    "sending": "sending",
    "sent": "sent",
    "delivered": "delivered",
    "read": "delivered",
    "undelivered": "undelivered",
    "failed": "undelivered",
    "canceled": "undelivered",
}


def _int_code(value: Any) -> int | None:
    text = str(value).strip() if value is not None else ""
    return int(text) if text.isdigit() and int(text) != 0 else None


def _raw_dlr_time(value: Any) -> datetime | None:
    """`RawDlrDoneDate` (`YYMMDDhhmm`, the carrier's time of the final receipt), in UTC."""
    try:
        return datetime.strptime(str(value), "%y%m%d%H%M").replace(tzinfo=UTC)
    except ValueError:
        return None


#: IncomingPhoneNumbers read per request (Twilio's default is 50, its most 1,000).
NUMBERS_PAGE_SIZE = 100


class TwilioProvider(SmsProvider):
    spec: ClassVar[ProviderSpec] = SPECS["twilio"]
    name: ClassVar[str] = spec.name
    callbacks: ClassVar[bool] = True
    polls: ClassVar[bool] = True
    limits: ClassVar[MessageLimits] = MessageLimits(
        max_parts=10, max_chars={"gsm7": 1600, "ucs2": 1600}, parts_source="Twilio's advice: 10 segments"
    )
    sender_rates: ClassVar[Mapping[NumberType, float] | None] = CARRIER_SENDER_RATES

    @classmethod
    def check_credentials(cls, connection: Connection, *, http: httpx.Client, timeout: float) -> str:
        """Fetch the account (`GET /2010-04-01/Accounts/{sid}.json`): it must exist and be active."""
        sid = connection.secret("account_sid")
        with _account_client(connection, timeout) as client:
            account = client.api.v2010.accounts(sid).fetch()
        if account.status != "active":
            raise SendError(ErrorCode.AUTH_FAILED, f"the twilio account is {account.status}")
        return "account active"

    @classmethod
    def list_numbers(cls, connection: Connection, *, http: httpx.Client, timeout: float) -> NumberListing:
        """`GET /2010-04-01/Accounts/{sid}/IncomingPhoneNumbers.json`, following `next_page_uri`
        (the SDK's paging) to the end or `MAX_NUMBERS`."""
        numbers: list[AccountNumber] = []
        with _account_client(connection, timeout) as client:
            records = client.incoming_phone_numbers.stream(page_size=NUMBERS_PAGE_SIZE, limit=MAX_NUMBERS + 1)
            for record in records:
                capabilities = record.capabilities if isinstance(record.capabilities, dict) else {}
                numbers.append(
                    AccountNumber(
                        number=str(record.phone_number),
                        sms=capabilities.get("sms") is True,
                        mms=capabilities.get("mms") is True,
                        voice=capabilities.get("voice") is True,
                        name=record.friendly_name or None,
                        status=record.status or None,
                    )
                )
        return NumberListing(tuple(numbers[:MAX_NUMBERS]), truncated=len(numbers) > MAX_NUMBERS)

    @classmethod
    def build(cls, connection: Connection, resources: ProviderResources) -> Self:
        settings = resources.settings
        return cls(connection, timeout=settings.provider_timeout, pool_size=settings.concurrency)

    def __init__(self, connection: Connection, *, timeout: float, pool_size: int = 64) -> None:
        # One pooled keep-alive httpx client per connection and process (worker/providers/twilio_http.py).
        self._http = HttpxTwilioClient(timeout=timeout, pool_size=pool_size)
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
        if sms.status_callback:
            options["status_callback"] = sms.status_callback
        message = self._client.messages.create(**options)
        return Receipt(message_id=message.sid, status=message.status)

    def translate(self, exc: Exception) -> SendError:
        if isinstance(exc, TwilioRestException | TwilioServiceException):
            return self._from_twilio_error(exc)
        if isinstance(exc, HTTPX_ERROR_TYPES):
            return translate_httpx_error(exc)
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
        self._http.close()

    @classmethod
    def receipt(cls, fields: Mapping[str, Any], *, source: str = "callback") -> ReceiptUpdate:
        """A status callback's form fields (`MessageSid`, `MessageStatus`, `ErrorCode`, …; the
        legacy `SmsSid`/`SmsStatus` too). Unknown statuses publish nothing (`queued`)."""
        sid = fields.get("MessageSid") or fields.get("SmsSid")
        raw_status = fields.get("MessageStatus") or fields.get("SmsStatus")
        if not sid or not raw_status:
            raise ValueError("not a Twilio status callback: MessageSid and MessageStatus are required")
        status = STATUS_TABLE.get(str(raw_status).lower(), "queued")
        error = None
        if status == "undelivered":
            code = _int_code(fields.get("ErrorCode"))
            entry = RECEIPT_ERRORS.get(code) if code is not None else None
            fallback = ERROR_TABLE.get(code) if code is not None else None
            error = receipt_error(code, entry, fallback=fallback)
        return ReceiptUpdate(
            provider=cls.name,
            message_id=str(sid),
            status=status,
            error=error,
            raw={k: fields[k] for k in fields},
            source="poll" if source == "poll" else "callback",
            occurred_at=_raw_dlr_time(fields.get("RawDlrDoneDate")) if fields.get("RawDlrDoneDate") else None,
        )

    def fetch_status(self, message_id: str) -> ReceiptUpdate:
        """`GET /2010-04-01/Accounts/{sid}/Messages/{MessageSid}.json` through the SDK's fetch."""
        try:
            message = self._client.messages(message_id).fetch()
        except Exception as exc:
            raise self.translate(exc) from exc
        fields = {
            "MessageSid": message.sid or message_id,
            "MessageStatus": message.status or "queued",
            "ErrorCode": message.error_code,
            "ErrorMessage": message.error_message,
            "DateUpdated": message.date_updated.isoformat() if message.date_updated else None,
        }
        return self.receipt({k: v for k, v in fields.items() if v is not None}, source="poll")

    # -- callbacks ---------------------------------------------------------------------------------

    signs_callbacks: ClassVar[bool] = True
    #: an empty TwiML answer: no auto-reply (anything else would be sent back to the customer)
    inbound_reply: ClassVar[tuple[bytes, str] | None] = (
        b'<?xml version="1.0" encoding="UTF-8"?><Response></Response>',
        "text/xml",
    )

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
        """`X-Twilio-Signature` through the SDK's `RequestValidator`, with the connection's auth
        token: HMAC-SHA1 over the public URL plus every posted field. A JSON body is covered by
        the URL's `bodySHA256`. The newer shared-key scheme (`X-Twilio-Webhooks-Signature-Settings`)
        signs with a key we do not hold, so it fails here."""
        signature = callbacks.header(headers, "X-Twilio-Signature")
        if not signature or callbacks.header(headers, "X-Twilio-Webhooks-Signature-Settings"):
            return False
        validator = RequestValidator(connection.secret("auth_token"))
        try:
            if "bodySHA256" in parse_qs(urlsplit(url).query):
                return bool(validator.validate(url, body.decode("utf-8"), signature))
            return bool(validator.validate(url, _Form(callbacks.form_lists(body)), signature))
        except (UnicodeDecodeError, callbacks.MalformedCallback):
            return False

    @classmethod
    def callback_fields(cls, body: bytes) -> dict[str, Any]:
        return dict(callbacks.form_fields(body))

    @classmethod
    def receipt_belongs_to(cls, connection: Connection, fields: Mapping[str, Any]) -> bool:
        """A status callback names the account that sent the message (`AccountSid`): when it
        does, it must be the connection's account."""
        sent_by = fields.get("AccountSid")
        return not sent_by or str(sent_by) == connection.secret("account_sid")

    @classmethod
    def inbound_message(cls, connection: Connection, fields: Mapping[str, Any]) -> InboundMessage | None:
        """An incoming-message webhook: `From`, `To`, `Body`, `MessageSid`, and `OptOutType`
        (STOP / START / HELP) when Advanced Opt-Out is on."""
        body = fields.get("Body")
        if not isinstance(body, str):
            raise callbacks.MalformedCallback("Body: missing")
        hint = fields.get("OptOutType")
        return InboundMessage(
            provider=cls.name,
            connection_id=connection.connection_id,
            from_number=callbacks.e164(fields.get("From"), field="From"),
            to_number=callbacks.e164(fields.get("To"), field="To"),
            text=body,
            keyword_hint=hint.strip().upper() if isinstance(hint, str) and hint.strip() else None,
            message_id=fields.get("MessageSid") or fields.get("SmsSid") or None,
        )


class _Form(dict[str, list[str]]):
    """Posted fields with every value of a repeated name, as `RequestValidator` reads a Werkzeug
    MultiDict (`getall`): each value is signed."""

    def getall(self, name: str) -> list[str]:
        return self[name]


@contextlib.contextmanager
def _account_client(connection: Connection, timeout: float) -> Iterator[Client]:
    """An SDK client for one CLI request; every SDK or transport error leaves as a `SendError`."""
    http = HttpxTwilioClient(timeout=timeout, pool_size=1)
    client = Client(
        connection.secret("account_sid"),
        connection.secret("auth_token"),
        http_client=http,
        environment={"TWILIO_IGNORE_ENVIRONMENT": "1"},
    )
    if connection.api_base_url:
        client.api.base_url = connection.api_base_url.rstrip("/")
    try:
        yield client
    except TwilioRestException as exc:
        raise _account_error(int(exc.status or 0), exc.code if isinstance(exc.code, int) else None) from None
    except HTTPX_ERROR_TYPES as exc:
        raise translate_httpx_error(exc) from None
    except TwilioException as exc:
        # A list page that is not 200 comes as TwilioException("Unable to fetch page", response).
        response = exc.args[1] if len(exc.args) > 1 else None
        if isinstance(response, Response):
            raise _account_error(response.status_code, _code_of(response.text)) from None
        raise SendError(ErrorCode.PROVIDER_ERROR, f"twilio: {type(exc).__name__}") from None
    finally:
        http.close()


def _code_of(text: str) -> int | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    code = data.get("code") if isinstance(data, dict) else None
    return code if isinstance(code, int) else None


def _account_error(status: int, code: int | None) -> SendError:
    # Twilio's own message quotes the request URL (with the account SID): say it in our words.
    detail = {20003: "authentication failed", 20404: "no such account for these credentials"}.get(
        code or 0, ""
    )
    return status_error(
        "twilio",
        status,
        code=ERROR_TABLE.get(code) if code is not None else None,
        provider_code=code if code is not None else status,
        detail=detail,
    )


def _scrub(detail: str) -> str:
    """Twilio's messages quote the numbers ("The 'To' number +1415… is not valid"): mask digit runs."""
    return re.sub(r"\+?\d[\d\s-]{6,}\d", lambda m: m.group(0)[:5] + "****", detail)[:300]
