"""The LLM tool: a function-calling schema and the adapter that turns a tool call into an SMS.

`send_sms` returns exactly "SMS sent." when a provider accepted the message, and
"SMS couldn't be sent: <reason>." when it was not sent, so the agent never says "I've sent it"
for a text that was not sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from producers.channel import parse_entries
from producers.client import SmsClient
from producers.contract import NOT_SENT_PREFIX, CallContext, Status, events_key

if TYPE_CHECKING:
    from producers.results import SendResult

SEND_SMS_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "send_sms",
        "description": (
            "Send a text message to the caller during the call, for example a booking confirmation, "
            "a payment link or a code. Use a named template with variables when one fits; otherwise "
            "write the message. Tell the caller it was sent only if the result says 'SMS sent.'."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "to_": {
                    "type": "string",
                    "description": "Recipient in E.164 form (+14155551234). Leave out to text the caller.",
                },
                "message": {"type": "string", "description": "The text to send, if no template is used."},
                "from_": {"type": "string", "description": "Sending number in E.164 form. Usually left out."},
                "template": {"type": "string", "description": "Name of a configured message template."},
                "variables": {
                    "type": "object",
                    "description": 'Values for the template\'s placeholders, e.g. {"date": "March 10"}.',
                    "additionalProperties": {"type": ["string", "number"]},
                },
            },
            "required": [],
            "additionalProperties": False,
        },
    },
}


async def run_send_sms(
    client: SmsClient,
    *,
    agent_id: str,
    call: CallContext,
    arguments: Mapping[str, Any],
    tool_call_id: str,
    timeout: float = 5.0,
) -> tuple[str, SendResult | None]:
    """`send_sms`, also returning the `SendResult` (None when the arguments were refused before
    anything was queued), so an adapter can follow the text's later events (its job id)."""
    template = arguments.get("template") or None
    message = arguments.get("message") or None
    variables = arguments.get("variables") or {}
    if template is None and message is None:
        return f"{NOT_SENT_PREFIX}: give either a message or a template.", None
    if not isinstance(variables, Mapping) or not all(
        isinstance(v, str | int | float) and not isinstance(v, bool) for v in variables.values()
    ):
        return f"{NOT_SENT_PREFIX}: template variables must be text or numbers.", None
    try:
        result = await client.send(
            agent_id=agent_id,
            call=call,
            template=template,
            variables=variables,
            message=None if template else message,
            to=arguments.get("to_") or None,
            from_=arguments.get("from_") or None,
            idempotency_key=f"{call.call_id}:{tool_call_id}",
            timeout=timeout,
        )
    except ValueError as exc:
        # The model's arguments, not our code, were wrong: tell it so it can correct itself.
        return f"{NOT_SENT_PREFIX}: {exc}.", None
    return result.tool_message, result


async def send_sms(
    client: SmsClient,
    *,
    agent_id: str,
    call: CallContext,
    arguments: Mapping[str, Any],
    tool_call_id: str,
    timeout: float = 5.0,
) -> str:
    """Run one `send_sms` tool call; returns the text to hand back to the model.

    The tool call id makes the idempotency key, so a model that repeats the same call (after a
    barge-in, a retry) gets the first outcome and the caller gets one text.
    """
    message, result = await run_send_sms(
        client, agent_id=agent_id, call=call, arguments=arguments, tool_call_id=tool_call_id, timeout=timeout
    )
    if result is None:
        return message
    return result.tool_message


SMS_STATUS_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "sms_status",
        "description": (
            "Check whether the last text message sent during this call reached the caller's phone. "
            "Use it before telling the caller the text arrived, or when they say they didn't get it. "
            "Repeat the result's meaning to the caller; never say it was delivered unless the result "
            "says 'SMS delivered.'."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "wait_seconds": {
                    "type": "number",
                    "description": "How long to wait for the delivery receipt (0-10 s). Usually left out.",
                },
            },
            "required": [],
            "additionalProperties": False,
        },
    },
}
#: The most seconds one `sms_status` call waits for a receipt.
MAX_STATUS_WAIT = 10.0
NO_SMS_MESSAGE = "No text message has been sent during this call."


async def sms_status(
    client: SmsClient, *, call: CallContext, arguments: Mapping[str, Any] | None = None, timeout: float = 1.0
) -> str:
    """Run one `sms_status` tool call: one short, true sentence about the call's latest SMS.

    "SMS delivered."; "SMS wasn't delivered: <reason and what to offer>."; "SMS handed to the
    carrier; delivery not confirmed yet."; "SMS probably delivered: … Don't send it again.";
    "SMS accepted by the provider; delivery not confirmed yet." when no receipt came within
    `wait_seconds` (default `timeout`); "SMS couldn't be sent: <reason>." for a text that failed.
    """
    wait = (arguments or {}).get("wait_seconds", timeout)
    if not isinstance(wait, int | float) or isinstance(wait, bool):
        wait = timeout
    job_id = await latest_job(client, call.call_id)
    if job_id is None:
        return NO_SMS_MESSAGE
    result = await client.wait_delivery(
        job_id, call_id=call.call_id, timeout=min(max(float(wait), 0.0), MAX_STATUS_WAIT)
    )
    return result.tool_message


async def latest_job(client: SmsClient, call_id: str) -> str | None:
    """The job id of the call's latest text that got an outcome (accepted or failed), if any."""
    entries: Any = await client.redis.xrevrange(events_key(call_id), count=200)
    for _, event in parse_entries(entries):
        if event.status in (Status.ACCEPTED, Status.FAILED):
            return event.job_id
    return None
