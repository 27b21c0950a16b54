"""The LLM tool: a function-calling schema and the adapter that turns a tool call into an SMS.

`send_sms` returns exactly "SMS sent." when a provider accepted the message, and
"SMS couldn't be sent: <reason>." when it was not sent, so the agent never says "I've sent it"
for a text that was not sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from producers.client import SmsClient
from producers.contract import NOT_SENT_PREFIX, CallContext

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
    template = arguments.get("template") or None
    message = arguments.get("message") or None
    variables = arguments.get("variables") or {}
    if template is None and message is None:
        return f"{NOT_SENT_PREFIX}: give either a message or a template."
    if not isinstance(variables, Mapping) or not all(
        isinstance(v, str | int | float) and not isinstance(v, bool) for v in variables.values()
    ):
        return f"{NOT_SENT_PREFIX}: template variables must be text or numbers."
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
        return f"{NOT_SENT_PREFIX}: {exc}."
    return result.tool_message
