"""Voice platforms that call a server URL when the model uses a tool (Vapi, Retell).

Each module owns what its platform sends and expects: how a request is authenticated, how its
tool calls and call object are read into `ToolCall`s and a `CallContext`, and how the results
are answered. `worker/http/tools.py` serves them (`POST /v1/tools/{platform}`) and runs the calls.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from producers.contract import CallContext


class BadRequest(ValueError):
    """The request is not the platform's tool-call request (answered 400)."""


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One tool call of a platform's request."""

    id: str  #: the platform's tool-call id (part of the idempotency key)
    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)


def arguments_of(value: Any) -> dict[str, Any]:
    """A tool call's arguments: an object, or the JSON text of one (models send either)."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise BadRequest("tool-call arguments are not JSON") from None
    if not isinstance(value, dict):
        raise BadRequest("tool-call arguments must be an object")
    return value


def call_context(call_id: Any, direction: str, customer: Any, ours: Any) -> CallContext | None:
    """The `CallContext` of a phone call (None when it has no customer number: a web call)."""
    if not isinstance(customer, str) or not customer or not isinstance(call_id, str) or not call_id:
        return None
    ours = ours if isinstance(ours, str) and ours else "unknown"
    try:
        if direction == "inbound":
            return CallContext(call_id=call_id, direction="inbound", from_number=customer, to_number=ours)
        return CallContext(call_id=call_id, direction="outbound", from_number=ours, to_number=customer)
    except ValueError:
        raise BadRequest("the call's id or numbers are malformed") from None
