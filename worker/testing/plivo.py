"""`FakePlivo`: Plivo's send-message endpoint (Messaging API v1).

    POST /v1/Account/{auth_id}/Message/   (trailing slash; JSON; HTTP Basic auth_id:auth_token)

Answers like Plivo (reference/providers.md §2): 202 `{api_id, message: "message(s) queued",
message_uuid: [...]}` (plus `invalid_number` when some of several `<`-separated destinations are
invalid), or `{api_id, error}` with 400/401/403/404/429/500. Plivo publishes no OpenAPI spec, so
requests are checked against `PlivoMessageRequest`, a strict model of the documented fields.
Plivo has no magic numbers; this fake borrows Twilio's: `INVALID_DST` and `GEO_BLOCKED_DST`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Final, Literal, Unpack

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, ValidationError

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
MAX_GSM7_CHARS: Final = 1600
MAX_UCS2_CHARS: Final = 737

_SEND_PATH = re.compile(r"^/v1/Account/(?P<auth_id>[^/]+)/Message/$")
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


def plivo_error(status: int, error: str | None = None, headers: Mapping[str, str] | None = None) -> Response:
    """Plivo's error body `{api_id, error}`."""
    body = {"api_id": str(uuid.uuid4()), "error": error or _ERRORS.get(status, "error")}
    return Response.json(status, body, headers)


class FakePlivo(FakeServer):
    """Fake Plivo Messages API."""

    def __init__(
        self,
        auth_id: str = DEFAULT_AUTH_ID,
        auth_token: str = DEFAULT_AUTH_TOKEN,
        *,
        validate: bool = True,
        **options: Unpack[ServerOptions],
    ) -> None:
        super().__init__(**options)
        self.auth_id = auth_id
        self.auth_token = auth_token
        self.validate = validate

    @property
    def messages_path(self) -> str:
        """The send-message path for this account (with Plivo's trailing slash)."""
        return f"/v1/Account/{self.auth_id}/Message/"

    def check(self, request: RecordedRequest) -> list[str]:
        if not self.validate:
            return []
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
