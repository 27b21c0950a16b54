"""Scripted behaviours for `FakeServer.script()`: each action decides the fate of exactly one request.

    fake.script(Error(20429, status=429, headers={"Retry-After": "2"}), Delay(3.0), Drop())

answers the next send request with a 429, the one after it normally but 3 s late, and closes the
connection on the third without a response; later requests get the provider's normal behaviour.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from worker.testing.exchange import Response


@dataclass(frozen=True)
class Reply:
    """Answer with exactly this status, body and headers (`json` wins over `body` when given)."""

    status: int
    json: Any = None
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)

    def to_response(self) -> Response:
        if self.json is not None:
            return Response.json(self.status, self.json, self.headers)
        return Response(self.status, self.body, self.headers)


@dataclass(frozen=True)
class Error:
    """Answer with the provider's own error body for `code` (its message table fills `message`).

    Twilio renders `{code, message, more_info, status}`, Telnyx `{"errors": [{"code": "…"}]}` with the code
    as a string, Plivo `{api_id, error}` (Plivo errors have no code, so `code` is ignored there).
    """

    code: int | str | None = None
    status: int = 400
    message: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Drop:
    """Read the request, then close the connection without any response.

    `reset=True` sends a TCP RST instead of a FIN (the client sees "connection reset by peer").
    `processed=True` lets the provider accept the request first (the message counts as sent): the
    ambiguous "sent, but the answer was lost" case that makes naive retries send twice.
    """

    reset: bool = False
    processed: bool = False


@dataclass(frozen=True)
class Hang:
    """Read the request and never answer; the socket stays open until the client gives up or the
    server stops. `processed=True` accepts the message first, as in `Drop`."""

    processed: bool = False


@dataclass(frozen=True)
class Delay:
    """Wait `seconds` (on top of the server's latency), then behave as `then` (default: normally)."""

    seconds: float
    then: Reply | Error | Drop | None = None


Action: TypeAlias = Reply | Error | Delay | Hang | Drop
