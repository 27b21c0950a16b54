"""`FakePlivo`: Plivo's send-message endpoint (Messaging API v1).

    POST /v1/Account/{auth_id}/Message/   (trailing slash; JSON; HTTP Basic auth_id:auth_token)
    GET  /v1/Account/{auth_id}/           (the account: what `connection test` fetches)
    GET  /v1/Account/{auth_id}/Number/    (the account's numbers: `limit` ≤ 20 and `offset`, with `meta`)

Answers like Plivo (reference/providers.md §2): 202 `{api_id, message: "message(s) queued",
message_uuid: [...]}` (plus `invalid_number` when some of several `<`-separated destinations are
invalid), or `{api_id, error}` with 400/401/403/404/429/500. Plivo publishes no OpenAPI spec, so
requests are checked against `PlivoMessageRequest` and `PlivoNumbersQuery`, strict models of the
documented fields.
Plivo has no magic numbers; this fake borrows Twilio's: `INVALID_DST` and `GEO_BLOCKED_DST`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal, Unpack
from urllib.parse import urlencode

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, ValidationError

from worker.testing.accounts import OwnedNumber, cannot_send_from, owned, page_bounds
from worker.testing.actions import Error
from worker.testing.exchange import AcceptedMessage, RecordedRequest, Response
from worker.testing.numbers import is_gsm7
from worker.testing.server import FakeServer, ServerOptions

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

_SEND_PATH = re.compile(r"^/v1/Account/(?P<auth_id>[^/]+)/Message/$")
_ACCOUNT_PATH = re.compile(r"^/v1/Account/(?P<auth_id>[^/]+)/$")
_NUMBERS_PATH = re.compile(r"^/v1/Account/(?P<auth_id>[^/]+)/Number/$")
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


class FakePlivo(FakeServer):
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

    @property
    def messages_path(self) -> str:
        """The send-message path for this account (with Plivo's trailing slash)."""
        return f"/v1/Account/{self.auth_id}/Message/"

    def check(self, request: RecordedRequest) -> list[str]:
        if not self.validate:
            return []
        if request.method == "GET" and _ACCOUNT_PATH.match(request.path):
            return [] if request.basic_auth() else ["missing HTTP Basic credentials"]
        if request.method == "GET" and _NUMBERS_PATH.match(request.path):
            return _numbers_query_violations(request)
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
        for message_uuid, number in zip(uuids, valid, strict=True):
            sender = src if isinstance(src, str) else None
            self.accept(
                AcceptedMessage(
                    message_uuid, number, sender, text if isinstance(text, str) else None, request.received_at
                )
            )
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
