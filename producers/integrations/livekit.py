"""LiveKit Agents: `send_sms` and `sms_status` as ready function tools, with late delivery news.

```python
from livekit.agents import Agent
from producers import SmsClient
from producers.integrations.livekit import SmsTools

sms = SmsClient.from_url("redis://localhost:6379/0")
agent = Agent(instructions="…", tools=SmsTools(sms, agent_id="agent_abc123").tools)
```

The caller's number comes from the room's SIP participant (participant kind SIP, attributes
`sip.phoneNumber`, `sip.trunkPhoneNumber`, `sip.callID`; a call that came in through a dispatch
rule has `sip.ruleID` and is inbound, one the agent dialed is outbound). The tool-call id is the
idempotency key. The tool answers with the exact sentence ("SMS sent." / "SMS couldn't be
sent: …"), as an async tool (`RunContext.update`), and keeps following the text on the call's
stream: a late `undelivered` (or the outcome of a text that was `pending`) is handed to the
model as the tool's final result, so the agent tells the caller while they are still there; a
`delivered` is recorded for the model without a spoken reply. `sms_status` answers where the
call's latest text stands ("SMS delivered.", "SMS wasn't delivered: …", …).

Needs `pip install 'midcall-sms[livekit]'`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from livekit import rtc
from livekit.agents import RunContext, function_tool, get_job_context
from livekit.agents.llm import RawFunctionTool, Tool, Toolset

from producers.client import SmsClient
from producers.contract import NOT_SENT_PREFIX, CallContext, Status
from producers.integrations.follow import DEFAULT_FOLLOW_SECONDS, follow
from producers.tools import SEND_SMS_TOOL, SMS_STATUS_TOOL, run_send_sms, sms_status

#: `ctx.update()` wraps a message in this template: the model reads the sentence as it is.
AS_IS = "{message}"
NO_CALLER_MESSAGE = f"{NOT_SENT_PREFIX}: there is no phone caller in this room."


class Participant(Protocol):
    """What is read of a room participant (an `rtc.RemoteParticipant`)."""

    @property
    def kind(self) -> int: ...
    @property
    def attributes(self) -> Mapping[str, str]: ...
    @property
    def identity(self) -> str: ...


class Room(Protocol):
    """What is read of the room (an `rtc.Room`)."""

    @property
    def name(self) -> str: ...
    @property
    def remote_participants(self) -> Mapping[str, Any]: ...


def sip_participant(participants: Iterable[Participant]) -> Participant | None:
    """The first SIP participant with a phone number: the person on the phone."""
    for participant in participants:
        if participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_SIP and participant.attributes.get(
            "sip.phoneNumber"
        ):
            return participant
    return None


def call_from_participant(participant: Participant, *, room_name: str = "") -> CallContext:
    """The `CallContext` of a SIP participant: inbound when it came through a dispatch rule."""
    attributes = participant.attributes
    caller = attributes["sip.phoneNumber"]
    ours = attributes.get("sip.trunkPhoneNumber") or "unknown"
    call_id = attributes.get("sip.callID") or room_name or participant.identity
    if attributes.get("sip.ruleID"):
        return CallContext(call_id=call_id, direction="inbound", from_number=caller, to_number=ours)
    return CallContext(call_id=call_id, direction="outbound", from_number=ours, to_number=caller)


def call_from_room(room: Room) -> CallContext:
    """The call of the room's SIP participant; `LookupError` when the room has none."""
    participant = sip_participant(room.remote_participants.values())
    if participant is None:
        raise LookupError("no SIP participant with a phone number in the room")
    return call_from_participant(participant, room_name=room.name)


def _schema(tool: dict[str, Any]) -> dict[str, Any]:
    spec = tool["function"]
    return {"name": spec["name"], "description": spec["description"], "parameters": spec["parameters"]}


class SmsTools:
    """The `send_sms` and `sms_status` function tools for one agent, bound to the call of the room.

    `call`: a fixed call (tests, a call known otherwise); else `room`; else the room of the
    current job (`get_job_context().room`), read at each tool call, since the caller may join
    after the agent starts. `timeout`: seconds the tool waits for the outcome before answering
    "not confirmed yet". `follow_seconds`: how long a text is followed for late news (0: not at all).
    """

    def __init__(
        self,
        client: SmsClient,
        *,
        agent_id: str,
        call: CallContext | None = None,
        room: Room | None = None,
        timeout: float = 5.0,
        follow_seconds: float = DEFAULT_FOLLOW_SECONDS,
    ) -> None:
        self._client = client
        self._agent_id = agent_id
        self._call = call
        self._room = room
        self._timeout = timeout
        self._follow_seconds = follow_seconds
        self.send_sms: RawFunctionTool[..., Any] = function_tool(
            self._send_sms, raw_schema=_schema(SEND_SMS_TOOL)
        )
        self.sms_status: RawFunctionTool[..., Any] = function_tool(
            self._sms_status, raw_schema=_schema(SMS_STATUS_TOOL)
        )

    @property
    def tools(self) -> list[Tool | Toolset]:
        """The tools to give the `Agent` (`Agent(tools=…)`)."""
        return [self.send_sms, self.sms_status]

    def call(self) -> CallContext:
        """The call the tools act for (see the class docstring); `LookupError` without a caller."""
        if self._call is not None:
            return self._call
        room = self._room if self._room is not None else get_job_context().room
        return call_from_room(room)

    async def _sms_status(self, raw_arguments: dict[str, object], context: RunContext[Any]) -> str:
        try:
            call = self.call()
        except (LookupError, RuntimeError):
            return NO_CALLER_MESSAGE
        return await sms_status(self._client, call=call, arguments=raw_arguments)

    async def _send_sms(self, raw_arguments: dict[str, object], context: RunContext[Any]) -> str | None:
        try:
            call = self.call()
        except (LookupError, RuntimeError):
            return NO_CALLER_MESSAGE
        message, result = await run_send_sms(
            self._client,
            agent_id=self._agent_id,
            call=call,
            arguments=raw_arguments,
            tool_call_id=context.function_call.call_id,
            timeout=self._timeout,
        )
        if result is None or result.status == "failed" or self._follow_seconds <= 0:
            return message
        # The first update is the tool's answer: the model goes on with exactly this sentence.
        await context.update(message, template=AS_IS)
        async for news in follow(self._client, call.call_id, result, within=self._follow_seconds):
            if not news.speak:
                await context.update(news.message, template=AS_IS, silent=True)
            elif news.status == Status.ACCEPTED:
                await context.update(news.message, template=AS_IS)
            else:
                # undelivered, or a pending text that failed: the final result, answered aloud.
                return news.message
        return None  # nothing to say: no reply is generated
