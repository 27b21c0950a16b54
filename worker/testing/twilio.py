"""`FakeTwilio`: Twilio's create-message endpoint (Programmable Messaging, API 2010-04-01).

    POST /2010-04-01/Accounts/{AccountSid}/Messages.json   (form-encoded, HTTP Basic AccountSid:AuthToken)

Answers like Twilio (reference/providers.md §1, §6): 201 with the Message resource, or the legacy
error body `{code, message, more_info, status}` that twilio-python turns into `TwilioRestException`.
Twilio's own test-credential magic numbers (`MAGIC_FROM`, `MAGIC_TO`) trigger their documented errors.
Every request is also checked against Twilio's OpenAPI spec; a violation is recorded and, unless a
more specific Twilio error applies, answered with 400 / `SPEC_VIOLATION_CODE`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Final, Self, Unpack

from worker.testing.actions import Error
from worker.testing.exchange import AcceptedMessage, RecordedRequest, Response
from worker.testing.numbers import E164, sms_segments
from worker.testing.server import FakeServer, ServerOptions
from worker.testing.spec import OpenApiContract, contract

API_HOST: Final = "https://api.twilio.com"
SPEC_FILE: Final = "twilio/twilio_api_v2010.json"
DEFAULT_ACCOUNT_SID: Final = "AC0123456789abcdef0123456789abcdef"
DEFAULT_AUTH_TOKEN: Final = "fake-twilio-auth-token"
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
_SEND_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<sid>[^/]+)/Messages\.json$")
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


class FakeTwilio(FakeServer):
    """Fake Twilio Messages API. `owned_numbers`, when given, makes any other `From` fail with 21606."""

    def __init__(
        self,
        account_sid: str = DEFAULT_ACCOUNT_SID,
        auth_token: str = DEFAULT_AUTH_TOKEN,
        *,
        owned_numbers: Iterable[str] | None = None,
        validate: bool = True,
        **options: Unpack[ServerOptions],
    ) -> None:
        super().__init__(**options)
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.owned_numbers = frozenset(owned_numbers) if owned_numbers is not None else None
        self.contract: OpenApiContract | None = contract(SPEC_FILE, API_HOST) if validate else None

    @property
    def messages_path(self) -> str:
        """The create-message path for this account."""
        return f"/2010-04-01/Accounts/{self.account_sid}/Messages.json"

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

    def handle(self, request: RecordedRequest) -> Response:
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
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Twilio-Request-Id": "RQ" + uuid.uuid4().hex,
        }
        return Response.json(201, resource, headers)
