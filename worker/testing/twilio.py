"""`FakeTwilio`: Twilio's Programmable Messaging API (2010-04-01): create, fetch, and its webhooks.

    POST /2010-04-01/Accounts/{AccountSid}/Messages.json         (form-encoded; HTTP Basic)
    GET  /2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json   (the message's status, error_code)
    GET  /2010-04-01/Accounts/{Sid}.json                         (the account: what `connection test` fetches)
    GET  /2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers.json   (`numbers`, in Twilio's paging)

HTTP Basic is AccountSid:AuthToken.

Answers like Twilio (`tests/specs/twilio/twilio_api_v2010.json`): 201 with the Message resource, or the legacy
error body `{code, message, more_info, status}` that twilio-python turns into `TwilioRestException`.
Twilio's own test-credential magic numbers (`MAGIC_FROM`, `MAGIC_TO`) trigger their documented errors.
Every request is also checked against Twilio's OpenAPI spec; a violation is recorded and, unless a
more specific Twilio error applies, answered with 400 / `SPEC_VIOLATION_CODE`; the fetch answers are
checked against the spec's `api.v2010.account.message` too.

Status callbacks (as `worker/providers/twilio.py` reads them): to the `StatusCallback` of the create
request, form POSTs `sent` then `delivered` or `undelivered` (+ `ErrorCode`), or only `failed`; none for
the initial `queued`. Each is signed with `X-Twilio-Signature` = twilio's own
`RequestValidator(auth_token).compute_signature(url, fields)` over the exact URL. `send_inbound()` posts an
incoming SMS the way Twilio calls a number's messaging webhook, with `OptOutType` for STOP/START/HELP
keywords (Advanced Opt-Out).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, Final, Self, Unpack
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator

from worker.testing.accounts import OwnedNumber, cannot_send_from, owned, page_bounds
from worker.testing.actions import Error
from worker.testing.exchange import AcceptedMessage, RecordedRequest, Response
from worker.testing.numbers import E164, opt_out_type, sms_segments
from worker.testing.server import ServerOptions
from worker.testing.spec import OpenApiContract, contract
from worker.testing.webhooks import Callback, MessageStore, Receipts, Target, Webhook, WebhookFake

API_HOST: Final = "https://api.twilio.com"
SPEC_FILE: Final = "twilio/twilio_api_v2010.json"
DEFAULT_ACCOUNT_SID: Final = "AC0123456789abcdef0123456789abcdef"
DEFAULT_AUTH_TOKEN: Final = "fake-twilio-auth-token"
DEFAULT_NUMBERS: Final = ("+15005550006", "+14155550000")
"""The account's numbers unless `numbers=` says otherwise: the senders the tests use."""
DEFAULT_PAGE_SIZE: Final = 50
MAX_PAGE_SIZE: Final = 1000
MAX_BODY_CHARS: Final = 1600
SPEC_VIOLATION_CODE: Final = 70002
"""Twilio's "Bad request": the body or parameters do not match the API's expected schema."""

MAGIC_FROM: Final[Mapping[str, int]] = {"+15005550001": 21212, "+15005550007": 21606, "+15005550008": 21611}
"""Twilio's test `From` numbers → error code (docs "Test credentials"); +15005550006 passes validation."""

MAGIC_TO: Final[Mapping[str, int]] = {
    "+15005550001": 21211,  # invalid 'To' number
    "+15005550002": 21612,  # cannot route to this number
    "+15005550003": 21408,  # no permission for the region (geo permissions)
    "+15005550004": 21610,  # recipient unsubscribed (replied STOP)
    "+15005550009": 21614,  # not a mobile number
}
"""Twilio's test `To` numbers → error code (docs "Test credentials"); any other valid number passes."""

_MESSAGES: Final[Mapping[int, str]] = {
    20003: "Authenticate",
    20004: "Method not allowed",
    20429: "Too Many Requests",
    20500: "Internal Server Error",
    20503: "Service Unavailable",
    21602: "Message body is required.",
    21603: "A 'From' phone number is required.",
    21604: "A 'To' phone number is required.",
    21610: "Attempt to send to unsubscribed recipient",
    21611: "This 'From' number has exceeded the maximum number of queued messages",
    21614: "'To' number is not a valid mobile number",
    21617: "The concatenated message body exceeds the 1600 character limit.",
}
DEFAULT_CODES: Final[Mapping[str, int]] = {"undelivered": 30003, "failed": 30008}
"""The `ErrorCode` of `Receipts.undelivered()` / `Receipts.failed()` when no code is given."""
SERVICE_SENDER: Final = "+15005550006"
"""The `From` a Messaging Service picks for a message created without one."""
DELIVERY_ERRORS: Final[Mapping[int, str]] = {
    30001: "Queue overflow",
    30002: "Account suspended",
    30003: "Unreachable destination handset",
    30004: "Message blocked",
    30005: "Unknown destination handset",
    30006: "Landline or unreachable carrier",
    30007: "Message filtered",
    30008: "Unknown error",
}
"""`error_message` of a fetched message for the delivery error codes (Twilio's error dictionary)."""

_SEND_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<sid>[^/]+)/Messages\.json$")
_FETCH_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<sid>[^/]+)/Messages/(?P<message>[^/]+)\.json$")
_ACCOUNT_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<sid>[^/]+)\.json$")
_NUMBERS_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<sid>[^/]+)/IncomingPhoneNumbers\.json$")
_FORM = "application/x-www-form-urlencoded"


def twilio_error(
    code: int, status: int = 400, message: str | None = None, headers: Mapping[str, str] | None = None
) -> Response:
    """Twilio's legacy REST error body; `message` defaults to Twilio's wording for `code`."""
    body = {
        "code": code,
        "message": message or _MESSAGES.get(code, f"Error {code}"),
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return Response.json(status, body, headers)


class FakeTwilio(WebhookFake):
    """Fake Twilio Messages API. `owned_numbers`, when given, makes any other `From` fail with 21606.

    `numbers` are what the account lists (`IncomingPhoneNumbers`); `account_status` is what the
    account fetch reports (`active`, `suspended`, `closed`)."""

    def __init__(
        self,
        account_sid: str = DEFAULT_ACCOUNT_SID,
        auth_token: str = DEFAULT_AUTH_TOKEN,
        *,
        owned_numbers: Iterable[str] | None = None,
        numbers: Iterable[OwnedNumber | str] | None = None,
        account_status: str = "active",
        validate: bool = True,
        **options: Unpack[ServerOptions],
    ) -> None:
        super().__init__(**options)
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.owned_numbers = frozenset(owned_numbers) if owned_numbers is not None else None
        self.numbers = owned(numbers, DEFAULT_NUMBERS)
        self.account_status = account_status
        self.contract: OpenApiContract | None = contract(SPEC_FILE, API_HOST) if validate else None
        self._messages = MessageStore()

    @property
    def messages_path(self) -> str:
        """The create-message path for this account."""
        return f"/2010-04-01/Accounts/{self.account_sid}/Messages.json"

    def message_path(self, sid: str) -> str:
        """The fetch path of message `sid`."""
        return f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json"

    def message(self, sid: str) -> dict[str, Any] | None:
        """A copy of the Message resource as a fetch would answer it now (None if unknown)."""
        with self._lock:
            resource = self._messages.get(sid)
            return dict(resource) if resource is not None else None

    def start(self) -> Self:
        if self.contract is not None:
            self.contract.load()  # pay for parsing before the first request, not during it
        return super().start()

    def check(self, request: RecordedRequest) -> list[str]:
        return self.contract.request_violations(request) if self.contract is not None else []

    def is_send(self, request: RecordedRequest) -> bool:
        return request.method == "POST" and _SEND_PATH.match(request.path) is not None

    def render_error(self, error: Error) -> Response:
        code = int(error.code) if error.code is not None else error.status
        return twilio_error(code, error.status, error.message, error.headers)

    def on_reset(self) -> None:
        super().on_reset()
        self._messages.clear()

    def handle(self, request: RecordedRequest) -> Response:
        account = self._account_request(request)
        if account is not None:
            return account
        if (fetch := _FETCH_PATH.match(request.path)) is not None and request.method == "GET":
            return self._fetch(request, fetch["sid"], fetch["message"])
        match = _SEND_PATH.match(request.path)
        if match is None:
            return twilio_error(20404, 404, f"The requested resource {request.path} was not found")
        if request.method != "POST":
            return twilio_error(20004, 405)
        if request.basic_auth() != (self.account_sid, self.auth_token):
            return twilio_error(20003, 401, headers={"WWW-Authenticate": 'Basic realm="Twilio API"'})
        if match["sid"] != self.account_sid:
            return twilio_error(20404, 404, f"The requested resource {request.path} was not found")
        # Twilio reads only form bodies; anything else arrives as "no parameters".
        form = request.form_lists() if request.content_type == _FORM else {}
        fields = {name: values[0] for name, values in form.items() if values and values[0]}
        rejection = self._reject(fields)
        if rejection is not None:
            return rejection
        if request.violations:
            return twilio_error(SPEC_VIOLATION_CODE, 400, "Bad request: " + "; ".join(request.violations))
        return self._create(request, fields, form.get("MediaUrl", []))

    def _reject(self, fields: Mapping[str, str]) -> Response | None:
        """The first create rule `fields` break, as Twilio orders them: presence, length, numbers."""
        to, sender, body = fields.get("To"), fields.get("From"), fields.get("Body")
        if to is None:
            return twilio_error(21604)
        if sender is None and "MessagingServiceSid" not in fields:
            return twilio_error(21603)
        if body is None and "MediaUrl" not in fields and "ContentSid" not in fields:
            return twilio_error(21602)
        if body is not None and len(body) > MAX_BODY_CHARS:
            return twilio_error(21617)
        if sender is not None:
            if sender in MAGIC_FROM:
                return self._number_error(MAGIC_FROM[sender], to, sender)
            if self.owned_numbers is not None and sender not in self.owned_numbers:
                return self._number_error(21606, to, sender)
            if cannot_send_from(self.numbers, sender):
                return self._number_error(21606, to, sender)
        if to in MAGIC_TO:
            return self._number_error(MAGIC_TO[to], to, sender)
        if not E164.match(to.rpartition(":")[2]):  # a channel address (whatsapp:+1…) carries a number too
            return self._number_error(21211, to, sender)
        return None

    @staticmethod
    def _number_error(code: int, to: str, sender: str | None) -> Response:
        worded = {
            21211: f"The 'To' number {to} is not a valid phone number.",
            21212: f"The 'From' number {sender} is not a valid phone number, shortcode, "
            "or alphanumeric sender ID.",
            21408: "Permission to send an SMS has not been enabled for the region indicated "
            f"by the 'To' number: {to}.",
            21606: f"The 'From' phone number provided ({sender}) is not a valid message-capable "
            "Twilio phone number for this destination/account.",
            21612: f"The 'To' phone number: {to}, is not currently reachable using the 'From' phone number: "
            f"{sender} via SMS.",
        }
        return twilio_error(code, 400, worded.get(code))

    def _create(self, request: RecordedRequest, fields: Mapping[str, str], media: list[str]) -> Response:
        sid = ("MM" if media else "SM") + uuid.uuid4().hex
        service = fields.get("MessagingServiceSid")
        body = fields.get("Body", "")
        now = format_datetime(datetime.now(UTC))  # RFC 2822, "+0000"
        uri = f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}"
        status = "accepted" if service else "queued"
        if fields.get("ScheduleType") == "fixed":
            status = "scheduled"
        resource = {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": fields.get("From"),
            "messaging_service_sid": service,
            "num_media": str(len(media)),
            # A Messaging Service picks the sender later, so Twilio reports 0 segments at first.
            "num_segments": "0" if service else str(sms_segments(body)),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": status,
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": fields["To"],
            "uri": f"{uri}.json",
        }
        self.accept(AcceptedMessage(sid, fields["To"], fields.get("From"), body, request.received_at))
        self._messages.add(sid, dict(resource))
        callback = fields.get("StatusCallback")
        self.schedule_receipts(sid, fields["To"], Target(callback) if callback else None)
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Twilio-Request-Id": "RQ" + uuid.uuid4().hex,
        }
        return Response.json(201, resource, headers)

    # -- fetch -----------------------------------------------------------------------------------------
    def _fetch(self, request: RecordedRequest, account_sid: str, sid: str) -> Response:
        if request.basic_auth() != (self.account_sid, self.auth_token):
            return twilio_error(20003, 401, headers={"WWW-Authenticate": 'Basic realm="Twilio API"'})
        resource = self._messages.get(sid) if account_sid == self.account_sid else None
        if resource is None:
            return twilio_error(20404, 404, f"The requested resource {request.path} was not found")
        response = Response.json(200, resource, {"Content-Type": "application/json; charset=utf-8"})
        if self.contract is not None:
            self._violations.extend(
                f"fetch answer: {v}" for v in self.contract.response_violations(request, response)
            )
        return response

    # -- status callbacks --------------------------------------------------------------------------------
    def receipt_steps(self, receipts: Receipts) -> list[tuple[str, int | None]]:
        code = receipts.code if receipts.code is not None else DEFAULT_CODES.get(receipts.outcome)
        steps: dict[str, list[tuple[str, int | None]]] = {
            "delivered": [("sent", None), ("delivered", None)],
            "undelivered": [("sent", None), ("undelivered", code)],
            "failed": [("failed", code)],
            "unconfirmed": [("sent", None)],
        }
        return steps[receipts.outcome]

    def set_status(self, message_id: str, status: str, code: int | None) -> None:
        resource = self._messages.get(message_id)
        if resource is None:
            return
        now = format_datetime(datetime.now(UTC))
        resource.update(status=status, date_updated=now, error_code=code)
        resource["error_message"] = DELIVERY_ERRORS.get(code, f"Error {code}") if code is not None else None
        if status != "failed":
            resource["from"] = resource["from"] or SERVICE_SENDER
            resource["num_segments"] = str(sms_segments(resource["body"] or ""))
            resource["date_sent"] = resource["date_sent"] or now
            resource["price"] = "-0.00790"

    def status_webhook(
        self, message_id: str, status: str, code: int | None, target: Target, receipts: Receipts
    ) -> Webhook:
        resource = self._messages.get(message_id) or {}
        fields = {
            "MessageSid": message_id,
            "SmsSid": message_id,
            "MessageStatus": status,
            "SmsStatus": status,
            "AccountSid": self.account_sid,
            "From": resource.get("from") or SERVICE_SENDER,
            "To": resource.get("to", ""),
            "ApiVersion": "2010-04-01",
        }
        if resource.get("messaging_service_sid"):
            fields["MessagingServiceSid"] = resource["messaging_service_sid"]
        if status in ("failed", "undelivered"):
            fields["ErrorCode"] = str(code)
        if status in ("delivered", "undelivered"):
            fields["RawDlrDoneDate"] = datetime.now(UTC).strftime("%y%m%d%H%M")
        return self._signed(target.url, fields, forged=receipts.forged)

    # -- inbound -------------------------------------------------------------------------------------------
    def send_inbound(self, url: str, *, from_: str, to: str, body: str, forged: bool = False) -> Callback:
        """POST an incoming SMS to `url` as Twilio calls a number's messaging webhook; wait for the answer.

        Carries `OptOutType` (STOP / START / HELP) when `body` is such a keyword, as Advanced Opt-Out does.
        """
        sid = "SM" + uuid.uuid4().hex
        fields = {
            "ToCountry": "US",
            "ToState": "CA",
            "SmsMessageSid": sid,
            "NumMedia": "0",
            "ToCity": "SAN FRANCISCO",
            "FromZip": "94105",
            "SmsSid": sid,
            "FromState": "CA",
            "SmsStatus": "received",
            "FromCity": "SAN FRANCISCO",
            "Body": body,
            "FromCountry": "US",
            "To": to,
            "ToZip": "94105",
            "NumSegments": str(sms_segments(body)),
            "MessageSid": sid,
            "AccountSid": self.account_sid,
            "From": from_,
            "ApiVersion": "2010-04-01",
        }
        if (keyword := opt_out_type(body)) is not None:
            fields["OptOutType"] = keyword
        return self.deliver("inbound", sid, "received", self._signed(url, fields, forged=forged))

    def _signed(self, url: str, fields: Mapping[str, str], *, forged: bool) -> Webhook:
        token = self.auth_token + ("-forged" if forged else "")
        signature = RequestValidator(token).compute_signature(url, dict(fields))
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": "TwilioProxy/1.1",
            "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
            "X-Twilio-Signature": signature,
        }
        return Webhook(url, "POST", headers, urlencode(fields).encode())

    # -- the account and its numbers ---------------------------------------------------------------
    def _account_request(self, request: RecordedRequest) -> Response | None:
        """The answer to an account fetch or a numbers list, None for any other request."""
        account, numbers = _ACCOUNT_PATH.match(request.path), _NUMBERS_PATH.match(request.path)
        if request.method != "GET" or (account is None and numbers is None):
            return None
        if request.basic_auth() != (self.account_sid, self.auth_token):
            return twilio_error(20003, 401, headers={"WWW-Authenticate": 'Basic realm="Twilio API"'})
        sid = (account or numbers)["sid"]  # type: ignore[index]  # one of them matched
        if sid != self.account_sid:
            return twilio_error(20404, 404, f"The requested resource {request.path} was not found")
        if request.violations:
            return twilio_error(SPEC_VIOLATION_CODE, 400, "Bad request: " + "; ".join(request.violations))
        if account is not None:
            return Response.json(200, self._account())
        return Response.json(200, self._numbers_page(request))

    def _account(self) -> dict[str, Any]:
        uri = f"/2010-04-01/Accounts/{self.account_sid}"
        created = format_datetime(datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC))
        return {
            "auth_token": self.auth_token,  # Twilio does return it; nothing here may print it
            "date_created": created,
            "date_updated": created,
            "friendly_name": "Fake Twilio account",
            "owner_account_sid": self.account_sid,
            "sid": self.account_sid,
            "status": self.account_status,
            "subresource_uris": {"incoming_phone_numbers": f"{uri}/IncomingPhoneNumbers.json"},
            "type": "Full",
            "uri": f"{uri}.json",
        }

    def _numbers_page(self, request: RecordedRequest) -> dict[str, Any]:
        """One page as Twilio pages: `PageSize` (default 50, at most 1000), `Page` (the index, client
        state) and `PageToken` (`PA` + the SID of the last number of the previous page; `PB` + the
        first SID of the following page, backwards), with `next_page_uri` / `previous_page_uri`."""
        query = {name: values[0] for name, values in request.query.items() if values}
        size = min(int(query.get("PageSize", DEFAULT_PAGE_SIZE)), MAX_PAGE_SIZE)
        page = int(query.get("Page", 0))
        listed = list(self.numbers)  # filters (PhoneNumber, FriendlyName…) are not served
        sids = [_number_sid(n) for n in listed]
        token = query.get("PageToken", "")
        if token[:2] == "PA" and token[2:] in sids:
            offset = sids.index(token[2:]) + 1
        elif token[:2] == "PB" and token[2:] in sids:
            offset = max(sids.index(token[2:]) - size, 0)
        else:
            offset = page * size
        start, end = page_bounds(len(listed), offset, size)
        path = self.numbers_path

        def uri(**params: Any) -> str:
            return f"{path}?{urlencode({'PageSize': size, **params})}"

        return {
            "end": max(end - 1, start),
            "first_page_uri": uri(Page=0),
            "incoming_phone_numbers": [self._number(n) for n in listed[start:end]],
            "next_page_uri": uri(Page=page + 1, PageToken="PA" + sids[end - 1])
            if end < len(listed)
            else None,
            "page": page,
            "page_size": size,
            "previous_page_uri": uri(Page=page - 1, PageToken="PB" + sids[start]) if start > 0 else None,
            "start": start,
            "uri": f"{path}?{urlencode(query)}" if query else path,
        }

    @property
    def numbers_path(self) -> str:
        """The IncomingPhoneNumbers list path for this account."""
        return f"/2010-04-01/Accounts/{self.account_sid}/IncomingPhoneNumbers.json"

    def _number(self, number: OwnedNumber) -> dict[str, Any]:
        sid = _number_sid(number)
        created = format_datetime(datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC))
        return {
            "account_sid": self.account_sid,
            "address_requirements": "none",
            "address_sid": None,
            "api_version": "2010-04-01",
            "beta": False,
            "capabilities": {"voice": number.voice, "sms": number.sms, "mms": number.mms, "fax": False},
            "date_created": created,
            "date_updated": created,
            "emergency_status": "Inactive",
            "emergency_address_sid": None,
            "emergency_address_status": "unregistered",
            "friendly_name": number.name if number.name is not None else _national(number.number),
            "identity_sid": None,
            "origin": "twilio",
            "phone_number": number.number,
            "sid": sid,
            "sms_application_sid": None,
            "sms_fallback_method": "POST",
            "sms_fallback_url": "",
            "sms_method": "POST",
            "sms_url": "",
            "status_callback": "",
            "status_callback_method": "POST",
            "trunk_sid": None,
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/IncomingPhoneNumbers/{sid}.json",
            "voice_application_sid": None,
            "voice_caller_id_lookup": False,
            "voice_fallback_method": "POST",
            "voice_fallback_url": None,
            "voice_method": "POST",
            "voice_url": None,
            "bundle_sid": None,
            "voice_receive_mode": "voice",
            "status": "in-use",
            "type": "local",
        }


def _number_sid(number: OwnedNumber) -> str:
    return "PN" + number.hex_id()


def _national(number: str) -> str:
    """Twilio's default friendly name of a NANP number: "(415) 555-0000"."""
    digits = number.removeprefix("+1")
    return (
        f"({digits[:3]}) {digits[3:6]}-{digits[6:]}"
        if number.startswith("+1") and len(digits) == 10
        else number
    )
