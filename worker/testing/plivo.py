"""`FakePlivo`: Plivo's Messaging API v1: send, retrieve, and its webhooks.

    POST /v1/Account/{auth_id}/Message/                 (trailing slash; JSON; HTTP Basic auth_id:auth_token)
    GET  /v1/Account/{auth_id}/Message/{message_uuid}/  (the message's message_state and error_code)
    GET  /v1/Account/{auth_id}/                         (the account: what `connection test` fetches)
    GET  /v1/Account/{auth_id}/Number/                  (the numbers: `limit` ≤ 20, `offset`, `meta`)

Answers like Plivo (its Message API, as `worker/providers/plivo.py` speaks it): 202 `{api_id, message:
"message(s) queued", message_uuid: [...]}` (plus `invalid_number` when some of several `<`-separated
destinations are invalid), or `{api_id, error}` with 400/401/403/404/429/500. Plivo publishes no OpenAPI
spec, so requests are checked against `PlivoMessageRequest` and `PlivoNumbersQuery`, strict models of the
documented fields.
Plivo has no magic numbers; this fake borrows Twilio's: `INVALID_DST` and `GEO_BLOCKED_DST`.

Status callbacks (as `worker/providers/plivo.py` reads them) go to the send's `url` with its `method`
(POST form, or GET with the fields in the query): `queued` → `sent` → `delivered` | `undelivered` (+
`ErrorCode`), or `queued` → `failed`, with `Sequence` numbering the statuses in the order they happened.
Each carries both signatures, V2 (`X-Plivo-Signature-V2`, `-Ma-V2`, `-V2-Nonce`) and V3
(`X-Plivo-Signature-V3`, `-Ma-V3`, `-V3-Nonce`), made with the auth token (the fake's account is a main
account, so the `Ma` ones are the same). `send_inbound()` posts an incoming SMS as Plivo calls a number's
message URL.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, Literal, Unpack
from urllib.parse import urlencode

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, ValidationError

from worker.testing import signing
from worker.testing.accounts import OwnedNumber, cannot_send_from, owned, page_bounds
from worker.testing.actions import Error
from worker.testing.exchange import AcceptedMessage, RecordedRequest, Response
from worker.testing.numbers import is_gsm7, sms_segments
from worker.testing.server import ServerOptions
from worker.testing.webhooks import Callback, MessageStore, Receipts, Target, Webhook, WebhookFake

DEFAULT_AUTH_ID: Final = "MA0123456789ABCDEF01"
DEFAULT_AUTH_TOKEN: Final = "fake-plivo-auth-token"
INVALID_DST: Final = "15005550001"
"""A destination this fake treats as invalid (listed in `invalid_number`; 400 when it is the only one)."""
GEO_BLOCKED_DST: Final = "15005550003"
"""A destination outside the account's geo permissions: 403, as Plivo answers for a blocked country."""
DEFAULT_NUMBERS: Final = ("+14155550100",)
"""The account's numbers unless `numbers=` says otherwise: the sender the tests use."""
MAX_LIMIT: Final = 20
"""Plivo's most numbers per list page (docs "List account phone numbers"), also its default."""
MAX_GSM7_CHARS: Final = 1600
MAX_UCS2_CHARS: Final = 737

DEFAULT_CODES: Final[Mapping[str, int]] = {"undelivered": 80, "failed": 300}
"""The `ErrorCode` of `Receipts.undelivered()` / `Receipts.failed()` when no code is given (Plivo's
"destination temporarily unavailable" and "failed to dispatch message")."""
RATE: Final = "0.00500"
_SEQUENCE: Final[Mapping[str, int]] = {"queued": 1, "sent": 2, "failed": 2, "delivered": 3, "undelivered": 3}

_SEND_PATH = re.compile(r"^/v1/Account/(?P<auth_id>[^/]+)/Message/$")
_ACCOUNT_PATH = re.compile(r"^/v1/Account/(?P<auth_id>[^/]+)/$")
_NUMBERS_PATH = re.compile(r"^/v1/Account/(?P<auth_id>[^/]+)/Number/$")
_MESSAGE_PATH = re.compile(r"^/v1/Account/(?P<auth_id>[^/]+)/Message/(?P<uuid>[^/]+)/$")
_DST_STRIP = re.compile(r"[\s/\-.+()]")  # Plivo ignores these characters in numbers
_DST_NUMBER = re.compile(r"^[1-9]\d{6,14}$")
_ERRORS: Final[Mapping[int, str]] = {
    400: "invalid request",
    401: "authentication failed",
    403: "forbidden",
    404: "not found",
    405: "method not allowed",
    429: "too many requests",
    500: "internal server error",
}


class PlivoMessageRequest(BaseModel):
    """The send-message JSON body as Plivo documents it (docs "Send a Message"; plivo-python 4.59).

    Strict and closed: a string where a number belongs, or an undocumented field (a typo such as
    `destination`), is a contract violation even though Plivo might ignore it silently.
    """

    model_config = ConfigDict(strict=True, extra="forbid")

    src: str | None = None
    powerpack_uuid: str | None = None
    dst: str = Field(min_length=1)
    text: str | None = None
    type: Literal["sms", "mms", "whatsapp"] = "sms"
    url: AnyHttpUrl | None = None
    method: Literal["GET", "POST"] = "POST"
    log: bool | Literal["true", "false"] = True
    trackable: bool | None = None
    message_expiry: int | None = Field(default=None, gt=0)
    media_urls: list[AnyHttpUrl] | None = None
    media_ids: list[str] | None = None
    dlt_entity_id: str | None = None
    dlt_template_id: str | None = None
    dlt_template_category: str | None = None


class PlivoNumbersQuery(BaseModel):
    """The list-numbers query as Plivo documents it (docs "List account phone numbers")."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["local", "mobile", "fixed", "national", "tollfree"] | None = None
    number_startswith: str | None = Field(default=None, pattern=r"^\d+$")
    subaccount: str | None = None
    alias: str | None = None
    services: Literal["voice", "sms", "mms", "voice,sms", "voice,sms,mms"] | None = None
    limit: int = Field(default=MAX_LIMIT, ge=1, le=MAX_LIMIT)
    offset: int = Field(default=0, ge=0)


def plivo_error(status: int, error: str | None = None, headers: Mapping[str, str] | None = None) -> Response:
    """Plivo's error body `{api_id, error}`."""
    body = {"api_id": str(uuid.uuid4()), "error": error or _ERRORS.get(status, "error")}
    return Response.json(status, body, headers)


class FakePlivo(WebhookFake):
    """Fake Plivo Messages API; `numbers` are what the account lists."""

    def __init__(
        self,
        auth_id: str = DEFAULT_AUTH_ID,
        auth_token: str = DEFAULT_AUTH_TOKEN,
        *,
        numbers: Iterable[OwnedNumber | str] | None = None,
        validate: bool = True,
        **options: Unpack[ServerOptions],
    ) -> None:
        super().__init__(**options)
        self.auth_id = auth_id
        self.auth_token = auth_token
        self.numbers = owned(numbers, DEFAULT_NUMBERS)
        self.validate = validate
        self._messages = MessageStore()

    @property
    def messages_path(self) -> str:
        """The send-message path for this account (with Plivo's trailing slash)."""
        return f"/v1/Account/{self.auth_id}/Message/"

    def message_path(self, message_uuid: str) -> str:
        """The retrieve path of one message (trailing slash)."""
        return f"/v1/Account/{self.auth_id}/Message/{message_uuid}/"

    def message(self, message_uuid: str) -> dict[str, Any] | None:
        """A copy of the message detail record as a retrieve would answer it now (None if unknown)."""
        with self._lock:
            record = self._messages.get(message_uuid)
            return dict(record) if record is not None else None

    def on_reset(self) -> None:
        super().on_reset()
        self._messages.clear()

    def check(self, request: RecordedRequest) -> list[str]:
        if not self.validate:
            return []
        if request.method == "GET" and _ACCOUNT_PATH.match(request.path):
            return [] if request.basic_auth() else ["missing HTTP Basic credentials"]
        if request.method == "GET" and _NUMBERS_PATH.match(request.path):
            return _numbers_query_violations(request)
        if request.method == "GET" and _MESSAGE_PATH.match(request.path) is not None:
            return [] if request.basic_auth() else ["missing HTTP Basic credentials"]
        if request.method != "POST" or _SEND_PATH.match(request.path) is None:
            expected = "POST /v1/Account/{auth_id}/Message/"
            return [f"no such endpoint: {request.method} {request.path} (expected {expected})"]
        violations = [] if request.basic_auth() else ["missing HTTP Basic credentials"]
        if request.content_type != "application/json":
            return [*violations, f"Content-Type must be application/json, not {request.content_type!r}"]
        try:
            PlivoMessageRequest.model_validate_json(request.body)
        except ValidationError as exc:
            violations += [f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in exc.errors()]
        return violations

    def is_send(self, request: RecordedRequest) -> bool:
        return request.method == "POST" and _SEND_PATH.match(request.path) is not None

    def render_error(self, error: Error) -> Response:
        return plivo_error(error.status, error.message, error.headers)

    def handle(self, request: RecordedRequest) -> Response:
        account = self._account_request(request)
        if account is not None:
            return account
        if (retrieve := _MESSAGE_PATH.match(request.path)) is not None and request.method == "GET":
            return self._retrieve(request, retrieve["auth_id"], retrieve["uuid"])
        match = _SEND_PATH.match(request.path)
        if match is None:
            return plivo_error(404)
        if request.method != "POST":
            return plivo_error(405)
        if request.basic_auth() != (self.auth_id, self.auth_token):
            return plivo_error(401)
        if match["auth_id"] != self.auth_id:
            return plivo_error(404)
        try:
            body = request.json()
        except ValueError:
            return plivo_error(400, "invalid JSON body")
        if not isinstance(body, dict):
            return plivo_error(400, "invalid JSON body")
        return self._send(request, body)

    def _send(self, request: RecordedRequest, body: dict[str, object]) -> Response:
        src, powerpack, dst, text = (body.get(k) for k in ("src", "powerpack_uuid", "dst", "text"))
        if not src and not powerpack:
            return plivo_error(400, "Either src or powerpack_uuid is required")
        if src and powerpack:
            return plivo_error(400, "src and powerpack_uuid cannot both be specified")
        if isinstance(src, str) and cannot_send_from(self.numbers, "+" + src.lstrip("+")):
            return plivo_error(400, "src is not an SMS-enabled number of this account")  # this fake's words
        if not isinstance(dst, str) or not dst:
            return plivo_error(400, "dst parameter is required")
        if body.get("type", "sms") == "sms" and (not isinstance(text, str) or not text):
            return plivo_error(400, "text parameter is required for sms")
        if isinstance(text, str) and len(text) > (MAX_GSM7_CHARS if is_gsm7(text) else MAX_UCS2_CHARS):
            return plivo_error(400, "text is too long")
        numbers = list(dict.fromkeys(_DST_STRIP.sub("", part) for part in dst.split("<")))
        if isinstance(src, str) and _DST_STRIP.sub("", src) in numbers:
            return plivo_error(400, "src and dst cannot be same")
        if GEO_BLOCKED_DST in numbers:
            return plivo_error(403, f"Sending to {GEO_BLOCKED_DST} is not allowed by your geo permissions")
        valid = [n for n in numbers if _DST_NUMBER.match(n) and n != INVALID_DST]
        invalid = [n for n in numbers if n not in valid]
        if not valid:
            return plivo_error(400, f"invalid dst: {dst}")
        if request.violations:
            return plivo_error(400, "; ".join(request.violations))
        uuids = [str(uuid.uuid4()) for _ in valid]
        url, method = body.get("url"), body.get("method", "POST")
        target = Target(url, str(method).upper()) if isinstance(url, str) and url else None
        for message_uuid, number in zip(uuids, valid, strict=True):
            sender = src if isinstance(src, str) else None
            message = text if isinstance(text, str) else None
            self.accept(AcceptedMessage(message_uuid, number, sender, message, request.received_at))
            self._messages.add(message_uuid, self._mdr(message_uuid, number, sender, body))
            self.schedule_receipts(message_uuid, number, target)
        answer: dict[str, object] = {
            "api_id": str(uuid.uuid4()),
            "message": "message(s) queued",
            "message_uuid": uuids,
        }
        if invalid:
            answer["invalid_number"] = invalid
        return Response.json(202, answer)

    # -- the account and its numbers ---------------------------------------------------------------
    def _account_request(self, request: RecordedRequest) -> Response | None:
        """The answer to an account fetch or a numbers list, None for any other request."""
        account, numbers = _ACCOUNT_PATH.match(request.path), _NUMBERS_PATH.match(request.path)
        if request.method != "GET" or (account is None and numbers is None):
            return None
        if request.basic_auth() != (self.auth_id, self.auth_token):
            return plivo_error(401)
        if (account or numbers)["auth_id"] != self.auth_id:  # type: ignore[index]  # one matched
            return plivo_error(404)
        if request.violations:
            return plivo_error(400, "; ".join(request.violations))
        if account is not None:
            return Response.json(200, self._account())
        return Response.json(200, self._numbers_page(request))

    def _account(self) -> dict[str, Any]:
        return {
            "account_type": "standard",
            "address": "",
            "api_id": str(uuid.uuid4()),
            "auth_id": self.auth_id,
            "auto_recharge": False,
            "billing_mode": "prepaid",
            "cash_credits": "10.00000",
            "city": "",
            "name": "Fake Plivo account",
            "resource_uri": f"/v1/Account/{self.auth_id}/",
            "state": "",
            "timezone": "America/Los_Angeles",
        }

    def _numbers_page(self, request: RecordedRequest) -> dict[str, Any]:
        """One page: `limit` numbers from `offset`, with `meta.next` / `meta.previous` as paths."""
        query = PlivoNumbersQuery.model_validate(_first_values(request))
        listed = [n for n in self.numbers if _matches(n, query)]
        start, end = page_bounds(len(listed), query.offset, query.limit)
        path = f"/v1/Account/{self.auth_id}/Number/"
        filters = query.model_dump(exclude_none=True, exclude={"limit", "offset"})

        def uri(offset: int) -> str:
            return f"{path}?{urlencode({**filters, 'limit': query.limit, 'offset': offset})}"

        return {
            "api_id": str(uuid.uuid4()),
            "meta": {
                "limit": query.limit,
                "next": uri(end) if end < len(listed) else None,
                "offset": query.offset,
                "previous": uri(max(start - query.limit, 0)) if start > 0 else None,
                "total_count": len(listed),
            },
            "objects": [self._number(n) for n in listed[start:end]],
        }

    def _number(self, number: OwnedNumber) -> dict[str, Any]:
        digits = number.number.lstrip("+")
        return {
            "added_on": "2024-01-02",
            "alias": number.name,
            "application": f"/v1/Account/{self.auth_id}/Application/{number.digit_id(17)}/",
            "carrier": "Plivo",
            "cnam_lookup": "disabled",
            "monthly_rental_rate": "0.50000",
            "mms_enabled": number.mms,
            "mms_rate": "0.00000",
            "number": digits,  # Plivo gives numbers without the plus
            "number_type": "local",
            "region": "California, UNITED STATES",
            "renewal_date": "2026-12-02",
            "resource_uri": f"/v1/Account/{self.auth_id}/Number/{digits}/",
            "sms_enabled": number.sms,
            "sms_rate": "0.00000",
            "sub_account": None,
            "tendlc_campaign_id": None,
            "tendlc_registration_status": "COMPLETED" if number.sms else None,
            "toll_free_sms_verification": None,
            "voice_enabled": number.voice,
            "voice_rate": "0.00850",
        }

    # -- retrieve ------------------------------------------------------------------------------------
    def _mdr(
        self, message_uuid: str, number: str, sender: str | None, body: Mapping[str, object]
    ) -> dict[str, Any]:
        """The message detail record (MDR) of a message just queued, as the retrieve endpoint shows it."""
        text = body.get("text")
        units = sms_segments(text) if isinstance(text, str) else 1
        powerpack = body.get("powerpack_uuid")
        return {
            "carrier_fees": "0.00000",
            "error_code": None,
            "from_number": _DST_STRIP.sub("", sender) if sender else "",
            "mcc": "310",
            "message_direction": "outbound",
            "message_state": "queued",
            "message_time": _plivo_time(offset=True),
            "message_type": str(body.get("type", "sms")),
            "message_uuid": message_uuid,
            "mnc": "260",
            "powerpack_id": powerpack if isinstance(powerpack, str) else None,
            "resource_uri": self.message_path(message_uuid),
            "to_number": number,
            "total_amount": "0.00000",
            "total_rate": RATE,
            "units": units,
        }

    def _retrieve(self, request: RecordedRequest, auth_id: str, message_uuid: str) -> Response:
        if request.basic_auth() != (self.auth_id, self.auth_token):
            return plivo_error(401)
        record = self._messages.get(message_uuid) if auth_id == self.auth_id else None
        if record is None:
            return plivo_error(404)
        return Response.json(200, {"api_id": str(uuid.uuid4()), **record})

    # -- status callbacks ----------------------------------------------------------------------------------
    def receipt_steps(self, receipts: Receipts) -> list[tuple[str, int | None]]:
        code = receipts.code if receipts.code is not None else DEFAULT_CODES.get(receipts.outcome)
        steps: dict[str, list[tuple[str, int | None]]] = {
            "delivered": [("queued", None), ("sent", None), ("delivered", None)],
            "undelivered": [("queued", None), ("sent", None), ("undelivered", code)],
            "failed": [("queued", None), ("failed", code)],
            "unconfirmed": [("queued", None), ("sent", None)],
        }
        return steps[receipts.outcome]

    def set_status(self, message_id: str, status: str, code: int | None) -> None:
        record = self._messages.get(message_id)
        if record is None:
            return
        record["message_state"] = status
        if status in ("failed", "undelivered"):
            record["error_code"] = str(code)
        elif status == "delivered":
            record["error_code"] = "000"
        if status in ("sent", "delivered", "undelivered"):
            record["total_amount"] = f"{float(RATE) * int(record['units']):.5f}"

    def status_webhook(
        self, message_id: str, status: str, code: int | None, target: Target, receipts: Receipts
    ) -> Webhook:
        record = self._messages.get(message_id) or {}
        now = _plivo_time()
        fields = {
            "MessageUUID": message_id,
            "ParentMessageUUID": message_id,
            "PartInfo": "1 of 1",
            "To": str(record.get("to_number", "")),
            "From": str(record.get("from_number", "")),
            "Type": str(record.get("message_type", "sms")),
            "Status": status,
            "Units": str(record.get("units", 1)),
            "TotalRate": RATE,
            "TotalAmount": str(record.get("total_amount", "0.00000")),
            "MCC": str(record.get("mcc", "")),
            "MNC": str(record.get("mnc", "")),
            "Sequence": str(_SEQUENCE.get(status, 1)),
            "MessageTime": now,
            "QueuedTime": now,
        }
        if status != "queued":
            fields["SentTime"] = now
        if status in ("delivered", "undelivered"):
            fields["DeliveryReportTime"] = now
        if status in ("failed", "undelivered"):
            fields["ErrorCode"] = str(code)
        if record.get("powerpack_id"):
            fields["PowerpackUUID"] = str(record["powerpack_id"])
        return self._signed(target, fields, forged=receipts.forged)

    # -- inbound -------------------------------------------------------------------------------------------
    def send_inbound(
        self, url: str, *, from_: str, to: str, text: str, method: str = "POST", forged: bool = False
    ) -> Callback:
        """Send an incoming SMS to `url` as Plivo calls a number's message URL; wait for the answer.

        Numbers are reported as Plivo does, without `+`.
        """
        message_uuid = str(uuid.uuid4())
        fields = {
            "From": from_.lstrip("+"),
            "To": to.lstrip("+"),
            "Text": text,
            "Type": "sms",
            "MessageUUID": message_uuid,
            "Units": str(sms_segments(text)),
            "TotalRate": "0.00000",
            "TotalAmount": "0.00000",
        }
        hook = self._signed(Target(url, method.upper()), fields, forged=forged)
        return self.deliver("inbound", message_uuid, "received", hook)

    def _signed(self, target: Target, fields: Mapping[str, str], *, forged: bool) -> Webhook:
        token = self.auth_token + ("-forged" if forged else "")
        v2_nonce, v3_nonce = (str(secrets.randbelow(10**20)).zfill(20) for _ in range(2))
        v2 = signing.plivo_v2(target.url, v2_nonce, token)
        v3 = signing.plivo_v3(target.method, target.url, fields, v3_nonce, token)
        headers = {
            "User-Agent": "PlivoHTTP",
            "X-Plivo-Signature-V2": v2,
            "X-Plivo-Signature-Ma-V2": v2,
            "X-Plivo-Signature-V2-Nonce": v2_nonce,
            "X-Plivo-Signature-V3": v3,
            "X-Plivo-Signature-Ma-V3": v3,
            "X-Plivo-Signature-V3-Nonce": v3_nonce,
        }
        if target.method == "GET":
            joiner = "&" if "?" in target.url else "?"
            return Webhook(target.url + joiner + urlencode(fields), "GET", headers)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        return Webhook(target.url, "POST", headers, urlencode(fields).encode())


def _first_values(request: RecordedRequest) -> dict[str, str]:
    return {name: values[0] for name, values in request.query.items() if values}


def _numbers_query_violations(request: RecordedRequest) -> list[str]:
    violations = [] if request.basic_auth() else ["missing HTTP Basic credentials"]
    repeated = sorted(name for name, values in request.query.items() if len(values) > 1)
    if repeated:
        violations.append(f"repeated query parameter(s): {', '.join(repeated)}")
    try:
        PlivoNumbersQuery.model_validate(
            {name: values[0] for name, values in request.query.items() if values}
        )
    except ValidationError as exc:
        violations += [f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in exc.errors()]
    return violations


def _matches(number: OwnedNumber, query: PlivoNumbersQuery) -> bool:
    if query.number_startswith and not number.number.lstrip("+").startswith(query.number_startswith):
        return False
    if query.alias is not None and number.name != query.alias:
        return False
    wanted = query.services.split(",") if query.services else []
    return all(getattr(number, service) for service in wanted)


def _plivo_time(*, offset: bool = False) -> str:
    """Plivo's timestamps: "2026-12-01 09:45:00.123456" (the retrieve endpoint adds "+00:00")."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return stamp + "+00:00" if offset else stamp
