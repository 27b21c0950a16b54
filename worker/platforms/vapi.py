"""Vapi: the server message for tool calls, and its answer.

Vapi POSTs `{"message": {"type": "tool-calls", "toolCallList": [...], "call": {...}, ...}}` to
the tool's server URL, with the server secret in a header set on the assistant (or the tool's
credential). Each item of `toolCallList` has an `id` and the function's `name` and `arguments`
(at the item's top level, or under `function`; arguments an object or a JSON string). `call` has
its `id`, `type` (`inboundPhoneCall`, `outboundPhoneCall`, `webCall`), `customer.number`,
`phoneNumber.number` and `assistantId`. The answer is `{"results": [{"toolCallId", "result"}]}`,
one per tool call, which Vapi gives the model. Vapi waits 20 s for a tool's answer by default.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any

from producers.contract import CallContext
from worker.platforms import BadRequest, ToolCall, arguments_of, call_context

NAME = "vapi"


def authenticated(headers: Mapping[str, str], header: str, secret: str | None) -> bool:
    """Whether the request carries the agent's server secret (constant-time comparison)."""
    sent = headers.get(header)
    if not secret or sent is None:
        return False
    return hmac.compare_digest(sent.encode(), secret.encode())


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def message_of(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict) or not isinstance(data.get("message"), dict):
        raise BadRequest("not a Vapi server message: no `message` object")
    message: dict[str, Any] = data["message"]
    return message


def assistant_id(message: Mapping[str, Any]) -> str | None:
    """The assistant the message is for (`call.assistantId`, else `assistant.id`)."""
    found = _object(message.get("call")).get("assistantId") or _object(message.get("assistant")).get("id")
    return found if isinstance(found, str) else None


def parse(message: Mapping[str, Any]) -> tuple[list[ToolCall], CallContext | None]:
    """The tool calls and the phone call of a `tool-calls` message."""
    if message.get("type") != "tool-calls":
        raise BadRequest(f"not a tool-calls message: type {str(message.get('type'))[:40]!r}")
    items = message.get("toolCallList")
    if not isinstance(items, list) or not items:
        raise BadRequest("toolCallList is missing or empty")
    calls = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise BadRequest("a tool call without an id")
        function = _object(item.get("function"))
        name = item.get("name") or function.get("name")
        raw = item["arguments"] if "arguments" in item else function.get("arguments")
        calls.append(ToolCall(id=item["id"], name=str(name or ""), arguments=arguments_of(raw)))
    call = message.get("call")
    if not isinstance(call, dict):
        raise BadRequest("the message has no call")
    customer, number = _object(call.get("customer")), _object(call.get("phoneNumber"))
    direction = "outbound" if call.get("type") == "outboundPhoneCall" else "inbound"
    return calls, call_context(call.get("id"), direction, customer.get("number"), number.get("number"))


def answer(results: list[tuple[str, str]]) -> dict[str, Any]:
    """Vapi's answer: one `{"toolCallId", "result"}` per tool call, in the request's order."""
    return {"results": [{"toolCallId": call_id, "result": result} for call_id, result in results]}
