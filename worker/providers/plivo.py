"""Plivo (Messaging API v1) through httpx: `POST /v1/Account/{auth_id}/Message/`, Basic auth, JSON.

Plivo answers refusals with an HTTP status and a free-text `error`; delivery receipts carry
numeric `ErrorCode`s. Both are in `ERROR_TABLE` / `HTTP_TABLE` below. Plivo has no idempotency key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any, ClassVar, Self
from urllib.parse import parse_qs, urlsplit, urlunsplit

import httpx

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
from worker.providers.numbers import MAX_NUMBERS, MAX_PAGES, AccountNumber, NumberListing
from worker.receipts import DeliveryStatus, ReceiptUpdate

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

_OFFER = "offer to read it out or share it another way"
#: Delivery `ErrorCode`s with what the agent can say (status callbacks and fetched messages).
RECEIPT_ERRORS: dict[int, tuple[ErrorCode, str]] = {
    10: (ErrorCode.UNDELIVERED, f"the carrier rejected the message as invalid; {_OFFER}"),
    20: (ErrorCode.UNDELIVERED, "a network error stopped it; offer to send it again in a moment"),
    30: (ErrorCode.UNDELIVERED, f"the carrier filtered it as spam; {_OFFER}"),
    40: (ErrorCode.SENDER_INVALID, f"the carrier refused the sending number; {_OFFER}"),
    50: (ErrorCode.INVALID_NUMBER, "that number isn't valid; confirm the number with the caller"),
    60: (ErrorCode.UNDELIVERED, f"the carrier stopped it as a message loop; {_OFFER}"),
    70: (ErrorCode.NOT_MOBILE, "that number can't receive texts; ask for a mobile number"),
    80: (
        ErrorCode.UNDELIVERED,
        "the phone was unreachable; ask the caller to check their phone, and offer to send it again later",
    ),
    90: (ErrorCode.UNDELIVERED, "the carrier has no route to that number; ask for another number"),
    100: (ErrorCode.UNDELIVERED, f"the carrier blocked it; {_OFFER}"),
    110: (ErrorCode.MESSAGE_TOO_LONG, "it was too long for the carrier; offer a shorter text or read it out"),
    200: (ErrorCode.RECIPIENT_OPTED_OUT, reason(ErrorCode.RECIPIENT_OPTED_OUT)),
    201: (ErrorCode.RECIPIENT_NOT_ALLOWED, f"this sending number can't text Canadian numbers; {_OFFER}"),
    300: (ErrorCode.UNDELIVERED, "the provider couldn't dispatch it; offer to send it again"),
    420: (ErrorCode.EXPIRED, "it expired before it could be delivered; offer to send it again"),
    900: (ErrorCode.PROVIDER_ERROR, f"the texting account is out of credit; {_OFFER}"),
    910: (ErrorCode.AUTH_FAILED, f"the texting account is disabled; {_OFFER}"),
    1000: (
        ErrorCode.UNDELIVERED,
        "the carrier reported an unknown error; offer to send it again or read it out",
    ),
}

#: Plivo's message states in ours (`queued`/`sending` publish nothing).
STATUS_TABLE: dict[str, DeliveryStatus] = {
    "queued": "queued",
    "sent": "sent",
    "delivered": "delivered",
    "read": "delivered",
    "undelivered": "undelivered",
    "failed": "undelivered",
    "rejected": "undelivered",
}


def _int_code(value: Any) -> int | None:
    text = str(value).strip() if value is not None else ""
    return int(text) if text.isdigit() and int(text) != 0 else None  # "000"/null: success


def _parse(
    message_id: Any, raw_status: Any, error_code: Any, raw: Mapping[str, Any], source: str
) -> ReceiptUpdate:
    if not message_id or not raw_status:
        raise ValueError("not a Plivo message status: MessageUUID and Status are required")
    status = STATUS_TABLE.get(str(raw_status).lower(), "queued")
    error = None
    if status == "undelivered":
        code = _int_code(error_code)
        error = receipt_error(code, RECEIPT_ERRORS.get(code) if code is not None else None)
    return ReceiptUpdate(
        provider="plivo",
        message_id=str(message_id),
        status=status,
        error=error,
        raw=dict(raw),
        source="poll" if source == "poll" else "callback",
    )


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


def _account(connection: Connection) -> tuple[str, httpx.BasicAuth]:
    auth_id = connection.secret("auth_id")
    base = (connection.api_base_url or DEFAULT_BASE_URL).rstrip("/")
    return f"{base}/v1/Account/{auth_id}", httpx.BasicAuth(auth_id, connection.secret("auth_token"))


def _account_error(response: httpx.Response) -> SendError:
    return status_error("plivo", response.status_code, code=HTTP_TABLE.get(response.status_code))


def _number(item: dict[str, Any]) -> AccountNumber:
    digits = str(item["number"]).lstrip("+")
    alias = item.get("alias")
    return AccountNumber(
        number=f"+{digits}",
        sms=item.get("sms_enabled") is True,
        mms=item.get("mms_enabled") is True,
        voice=item.get("voice_enabled") is True,
        name=alias if isinstance(alias, str) and alias else None,
    )


def _classify_400(error: str) -> ErrorCode:
    text = error.lower()
    if "dst" in text or "destination" in text:
        return ErrorCode.INVALID_NUMBER
    if "src" in text or "source" in text or "powerpack" in text:
        return ErrorCode.SENDER_INVALID
    if "insufficient credit" in text:
        return ErrorCode.PROVIDER_ERROR
    return HTTP_TABLE[400]


#: Numbers read per request: Plivo's `limit` is at most 20.
NUMBERS_PAGE_SIZE = 20


class PlivoProvider(SmsProvider):
    spec: ClassVar[ProviderSpec] = SPECS["plivo"]
    name: ClassVar[str] = spec.name
    callbacks: ClassVar[bool] = True
    polls: ClassVar[bool] = True
    limits: ClassVar[MessageLimits] = MessageLimits(max_chars={"gsm7": 1600, "ucs2": 737})
    sender_rates: ClassVar[Mapping[NumberType, float] | None] = CARRIER_SENDER_RATES

    @classmethod
    def check_credentials(cls, connection: Connection, *, http: httpx.Client, timeout: float) -> str:
        """Fetch the account, `GET /v1/Account/{auth_id}/`."""
        base, auth = _account(connection)
        with map_transport_errors():
            response = http.get(f"{base}/", auth=auth, timeout=timeout)
        if response.status_code == 200:
            return "account found"
        raise _account_error(response)

    @classmethod
    def list_numbers(cls, connection: Connection, *, http: httpx.Client, timeout: float) -> NumberListing:
        """`GET /v1/Account/{auth_id}/Number/` with `limit`/`offset`, following `meta.next` to the
        end or `MAX_NUMBERS`. Plivo gives numbers without the `+`."""
        base, auth = _account(connection)
        origin = httpx.URL(base).copy_with(path="/", query=None)
        url: httpx.URL | None = httpx.URL(f"{base}/Number/", params={"limit": NUMBERS_PAGE_SIZE, "offset": 0})
        numbers: list[AccountNumber] = []
        for _ in range(MAX_PAGES):
            if url is None or len(numbers) > MAX_NUMBERS:
                break
            with map_transport_errors():
                response = http.get(url, auth=auth, timeout=timeout)
            data = response_json(response)
            if response.status_code != 200 or not isinstance(data, dict):
                raise _account_error(response)
            for item in data.get("objects") or []:
                if isinstance(item, dict) and item.get("number"):
                    numbers.append(_number(item))
            meta = data.get("meta")
            meta = meta if isinstance(meta, dict) else {}
            following = meta.get("next")
            # `next` is a path on the API host ("/v1/Account/MA…/Number/?limit=20&offset=20");
            # the credentials go nowhere else.
            url = origin.join(following) if isinstance(following, str) and following else None
            if url is not None and url.host != origin.host:
                raise SendError(ErrorCode.PROVIDER_ERROR, "plivo: the next page is on another host")
        truncated = len(numbers) > MAX_NUMBERS or (url is not None)
        return NumberListing(tuple(numbers[:MAX_NUMBERS]), truncated=truncated)

    @classmethod
    def build(cls, connection: Connection, resources: ProviderResources) -> Self:
        return cls(connection, http=resources.http())

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
        if sms.status_callback:
            payload["url"] = sms.status_callback
            payload["method"] = "POST"
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

    @classmethod
    def receipt(cls, fields: Mapping[str, Any], *, source: str = "callback") -> ReceiptUpdate:
        """A status callback's form fields (`MessageUUID`, `Status`, `ErrorCode`, …)."""
        raw = {k: fields[k] for k in fields}
        return _parse(fields.get("MessageUUID"), fields.get("Status"), fields.get("ErrorCode"), raw, source)

    def fetch_status(self, message_id: str) -> ReceiptUpdate:
        """`GET /v1/Account/{auth_id}/Message/{message_uuid}/`: `message_state`, `error_code`."""
        with map_transport_errors():
            response = self._http.get(f"{self._url}{message_id}/", auth=self._auth)
        data = response_json(response)
        if response.status_code != 200 or not isinstance(data, dict):
            raise self._error(response, data)
        return _parse(
            data.get("message_uuid") or message_id,
            data.get("message_state"),
            data.get("error_code"),
            data,
            "poll",
        )

    # -- callbacks ---------------------------------------------------------------------------------

    signs_callbacks: ClassVar[bool] = True

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
        """`X-Plivo-Signature-V3` with `X-Plivo-Signature-V3-Nonce`, signed with the connection's
        auth token over the public URL and the posted fields (`v3_base`). The header may list
        several signatures (comma-separated, during a token rotation): valid if any matches. V2
        signs the URL only, not the body, so it is not accepted."""
        signatures = callbacks.header(headers, "X-Plivo-Signature-V3")
        nonce = callbacks.header(headers, "X-Plivo-Signature-V3-Nonce")
        if not signatures or not nonce:
            return False
        try:
            fields = callbacks.form_lists(body)
        except callbacks.MalformedCallback:
            return False
        expected = v3_signature(connection.secret("auth_token"), url, fields, nonce).encode()
        # Every candidate is compared, so the time taken does not tell which one matched.
        matches = [hmac.compare_digest(expected, s.strip().encode()) for s in signatures.split(",")]
        return any(matches)

    @classmethod
    def callback_fields(cls, body: bytes) -> dict[str, Any]:
        return dict(callbacks.form_fields(body))

    @classmethod
    def inbound_message(cls, connection: Connection, fields: Mapping[str, Any]) -> InboundMessage | None:
        """A message to the number's application URL: `From`, `To` (without `+`), `Text`,
        `MessageUUID`. Plivo gives no opt-out reading of its own."""
        text = fields.get("Text")
        if not isinstance(text, str):
            raise callbacks.MalformedCallback("Text: missing")
        return InboundMessage(
            provider=cls.name,
            connection_id=connection.connection_id,
            from_number=callbacks.e164(fields.get("From"), field="From"),
            to_number=callbacks.e164(fields.get("To"), field="To"),
            text=text,
            message_id=fields.get("MessageUUID") or None,
        )


# -- callbacks ----------------------------------------------------------------------------------


def _sorted_query(params: Mapping[str, list[str]]) -> str:
    return "&".join(f"{name}={value}" for name in sorted(params) for value in sorted(params[name]))


def _sorted_fields(params: Mapping[str, list[str]]) -> str:
    return "".join(f"{name}{value}" for name in sorted(params) for value in sorted(params[name]))


def v3_base(url: str, fields: Mapping[str, list[str]]) -> str:
    """What Plivo's V3 signature covers for a POST to `url` with `fields` (before `.nonce`):
    `scheme://host/path`, then `?` and the URL's query sorted as `k=v&…` when there is a query or
    there are fields, `.` when there are both, then the fields sorted and joined as `kv`."""
    parts = urlsplit(url)
    root = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    query = parse_qs(parts.query, keep_blank_values=True)
    base = root
    if query or fields:
        base += "?" + _sorted_query(query)
    if query and fields:
        base += "."
    return base + _sorted_fields(fields)


def v3_signature(auth_token: str, url: str, fields: Mapping[str, list[str]], nonce: str) -> str:
    """Base64(HMAC-SHA256(auth token, f"{v3_base}.{nonce}"))."""
    message = f"{v3_base(url, fields)}.{nonce}".encode()
    return base64.b64encode(hmac.new(auth_token.encode(), message, hashlib.sha256).digest()).decode()
