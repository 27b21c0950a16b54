"""`FakeCustomEndpoint`: the customer's own HTTPS SMS gateway that a `custom` connection posts to.

The contract (README, config section): `POST custom_api_url` with JSON `{"to": "+1…", "message": "…"}` and the
configured headers; any 2xx is acceptance. This fake answers 200 `{"id": "<uuid>"}`. A body of another
shape or a missing/wrong configured header is a violation, answered 400 or 401 `{"error": "…"}`.
The fake serves plain HTTP on loopback, so the worker needs `SMS_ALLOW_PRIVATE_ENDPOINTS=true` for it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Unpack

from worker.testing.actions import Error
from worker.testing.exchange import AcceptedMessage, RecordedRequest, Response
from worker.testing.numbers import E164
from worker.testing.server import FakeServer, ServerOptions


def custom_error(status: int, error: str, headers: Mapping[str, str] | None = None) -> Response:
    """The error body this fake uses: `{"error": "…"}` (a custom endpoint may answer anything)."""
    return Response.json(status, {"error": error}, headers)


class FakeCustomEndpoint(FakeServer):
    """Accepts `POST <any path>` (or only `path`, when given) carrying `expected_headers`."""

    def __init__(
        self,
        expected_headers: Mapping[str, str] | None = None,
        *,
        path: str | None = None,
        **options: Unpack[ServerOptions],
    ) -> None:
        super().__init__(**options)
        self.expected_headers = dict(expected_headers or {})
        self.path = path

    def check(self, request: RecordedRequest) -> list[str]:
        violations = [
            f"header {name!r} missing or different from the configured value"
            for name, value in self.expected_headers.items()
            if request.headers.get(name) != value
        ]
        if request.method != "POST":
            violations.append(f"method must be POST, not {request.method}")
        if self.path is not None and request.path != self.path:
            violations.append(f"path must be {self.path}, not {request.path}")
        return violations + _body_violations(request)

    def render_error(self, error: Error) -> Response:
        return custom_error(
            error.status, error.message or f"error {error.code or error.status}", error.headers
        )

    def handle(self, request: RecordedRequest) -> Response:
        if any(request.headers.get(name) != value for name, value in self.expected_headers.items()):
            return custom_error(401, "unauthorized")
        if request.violations:
            return custom_error(400, "; ".join(request.violations))
        body = request.json()
        message_id = str(uuid.uuid4())
        self.accept(AcceptedMessage(message_id, body["to"], None, body["message"], request.received_at))
        return Response.json(200, {"id": message_id})


def _body_violations(request: RecordedRequest) -> list[str]:
    if request.content_type != "application/json":
        return [f"Content-Type must be application/json, not {request.content_type!r}"]
    try:
        body = request.json()
    except ValueError:
        return ["body is not JSON"]
    if not isinstance(body, dict):
        return ["body must be a JSON object"]
    violations = [f"unexpected field {name!r}" for name in body if name not in ("to", "message")]
    to, message = body.get("to"), body.get("message")
    if not isinstance(to, str) or not E164.match(to):
        violations.append(f"'to' must be a +E.164 string, not {to!r}")
    if not isinstance(message, str) or not message:
        violations.append("'message' must be a non-empty string")
    return violations
