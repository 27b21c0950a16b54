"""Retell: custom-function requests, signed with the API key.

Retell POSTs `{"name": …, "args": {…}, "call": {"call_id", "from_number", "to_number",
"direction", "agent_id", …}}` to the custom function's URL, with `X-Retell-Signature:
v=<ms timestamp>,d=<hex HMAC-SHA256>`: the HMAC, keyed with the Retell API key, of the raw body
followed by the timestamp's digits (as the official `retell-sdk`'s `Retell.verify` computes it),
refused when the timestamp is more than five minutes from now. The response body is what the
model reads: here the sentence itself, as text. A custom function request carries no tool-call
id, so the idempotency key is the call id with a digest of the function's name and arguments:
the same text asked twice in one call is sent once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping
from typing import Any

from producers.contract import CallContext
from worker.platforms import BadRequest, ToolCall, arguments_of, call_context

NAME = "retell"
SIGNATURE_HEADER = "x-retell-signature"
#: How far a signature's timestamp may be from now (the SDK's default).
MAX_SKEW_MS = 5 * 60 * 1000
_SIGNATURE = re.compile(r"v=(\d{1,16}),d=([0-9a-f]{64})")


def sign(body: bytes, api_key: str, timestamp_ms: int) -> str:
    """The `X-Retell-Signature` Retell sends for `body` at `timestamp_ms` (for tests and tools)."""
    digest = hmac.new(api_key.encode(), body + str(timestamp_ms).encode(), hashlib.sha256).hexdigest()
    return f"v={timestamp_ms},d={digest}"


def verify(body: bytes, api_key: str | None, signature: str | None, *, now_ms: int | None = None) -> bool:
    """Whether `signature` signs `body` with `api_key` and its timestamp is within five minutes."""
    if not api_key or not signature:
        return False
    match = _SIGNATURE.fullmatch(signature.strip())
    if match is None:
        return False
    stamp = int(match.group(1))
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if abs(now - stamp) > MAX_SKEW_MS:
        return False
    expected = sign(body, api_key, stamp).partition(",d=")[2]
    return hmac.compare_digest(expected, match.group(2))


def request_of(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        raise BadRequest("the body is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("call"), dict):
        raise BadRequest("not a Retell custom-function request: no `call` object")
    return data


def agent_id(data: Mapping[str, Any]) -> str | None:
    """Retell's agent id of the call (`call.agent_id`)."""
    found = data["call"].get("agent_id")
    return found if isinstance(found, str) else None


def parse(data: Mapping[str, Any]) -> tuple[ToolCall, CallContext | None]:
    """The function call and the phone call of a custom-function request."""
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise BadRequest("the request has no function `name`")
    arguments = arguments_of(data.get("args"))
    call = data["call"]
    digest = hashlib.sha256(json.dumps([name, arguments], sort_keys=True).encode()).hexdigest()[:24]
    direction = "outbound" if call.get("direction") == "outbound" else "inbound"
    customer, ours = (
        (call.get("to_number"), call.get("from_number"))
        if direction == "outbound"
        else (call.get("from_number"), call.get("to_number"))
    )
    return ToolCall(id=f"retell-{digest}", name=name, arguments=arguments), call_context(
        call.get("call_id"), direction, customer, ours
    )
