"""LiveKit Agents: `SmsTools.send_sms` run by a real `AgentSession` (its `run()` test harness and
`RunResult.expect`), a scripted LLM in place of a model, a real worker and the sandbox.

Nothing reaches the network: the LLM is a local `llm.LLM` subclass that calls the tool and
then repeats what the tool said; the room is read through the same attributes LiveKit's SIP
service sets on the participant.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from livekit import rtc
from livekit.agents import Agent, AgentSession, llm
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions
from livekit.agents.voice.run_result import RunResult

from producers import CallContext, SmsClient
from producers.contract import SENT_MESSAGE
from producers.integrations.livekit import NO_CALLER_MESSAGE, SmsTools, call_from_room
from tests.integration.conftest import WorkerFactory
from tests.integration.voice import (
    AGENT_ID,
    CALLER,
    CONFIG,
    DELIVERED,
    OUR_NUMBER,
    UNDELIVERED,
    clear_outbox,
    outbox,
    poll_sandbox,
)


@pytest.fixture(autouse=True)
def _empty_outbox(redis_url: str) -> None:
    """Counts of texts below are this test's: earlier tests may leave the sandbox outbox behind."""
    clear_outbox(redis_url)


class ScriptedLLM(llm.LLM[Any]):
    """Calls `send_sms` once with `arguments`, then answers every tool result with "Tool said: …"."""

    def __init__(
        self, arguments: dict[str, Any], tool_call_id: str = "call_lk_1", tool: str = "send_sms"
    ) -> None:
        super().__init__()
        self.tool = tool
        self.arguments = arguments
        self.tool_call_id = tool_call_id
        self.requests: list[llm.ChatContext] = []

    def chat(
        self,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        **_: Any,
    ) -> llm.LLMStream:
        self.requests.append(chat_ctx.copy())
        outputs = [i for i in chat_ctx.items if i.type == "function_call_output"]
        if not outputs:
            call = llm.FunctionToolCall(
                name=self.tool, arguments=json.dumps(self.arguments), call_id=self.tool_call_id
            )
            delta = llm.ChoiceDelta(role="assistant", tool_calls=[call])
        else:
            delta = llm.ChoiceDelta(role="assistant", content=f"Tool said: {outputs[-1].output}")
        return _Stream(self, delta, chat_ctx=chat_ctx, tools=tools or [], conn_options=conn_options)

    def outputs_seen(self) -> list[str]:
        """Every tool output the model has been shown, in order."""
        seen: list[str] = []
        for request in self.requests:
            for item in request.items:
                if item.type == "function_call_output" and item.output not in seen:
                    seen.append(item.output)
        return seen


class _Stream(llm.LLMStream):
    def __init__(self, model: ScriptedLLM, delta: llm.ChoiceDelta, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self._delta = delta

    async def _run(self) -> None:
        self._event_ch.send_nowait(llm.ChatChunk(id="chunk-1", delta=self._delta))


@dataclass
class FakeParticipant:
    identity: str
    kind: int
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass
class FakeRoom:
    name: str
    remote_participants: dict[str, FakeParticipant]


def sip_room(*, phone: str = CALLER, inbound: bool = True, call_id: str = "SCL_lk42") -> FakeRoom:
    """A room as LiveKit's SIP service fills it: the caller as a SIP participant (an inbound call
    came through a dispatch rule, so it has `sip.ruleID`), plus another ordinary participant."""
    attributes = {
        "sip.phoneNumber": phone,
        "sip.trunkPhoneNumber": OUR_NUMBER,
        "sip.callID": call_id,
        "sip.callStatus": "active",
    }
    if inbound:
        attributes["sip.ruleID"] = "SDR_abc"
    sip = FakeParticipant("sip_caller", rtc.ParticipantKind.PARTICIPANT_KIND_SIP, attributes)
    other = FakeParticipant("observer", rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD)
    return FakeRoom("room-1", {"observer": other, "sip_caller": sip})


async def wait_for(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def test_call_from_room_reads_the_sip_participant() -> None:
    """Inbound (a dispatch rule): the caller is `from`; outbound: the dialed number is `to`; the
    SIP call id is the call id; a room without a SIP participant has no call."""
    inbound = call_from_room(sip_room())
    assert inbound == CallContext(
        call_id="SCL_lk42", direction="inbound", from_number=CALLER, to_number=OUR_NUMBER
    )
    outbound = call_from_room(sip_room(inbound=False))
    assert (outbound.direction, outbound.customer_number, outbound.from_number) == (
        "outbound",
        CALLER,
        OUR_NUMBER,
    )
    with pytest.raises(LookupError):
        call_from_room(FakeRoom("r", {}))


async def run_tool(tools: SmsTools, model: ScriptedLLM) -> tuple[AgentSession[Any], RunResult[Any]]:
    session: AgentSession[Any] = AgentSession(llm=model)
    await session.start(Agent(instructions="You text the caller.", tools=tools.tools))
    result: RunResult[Any] = await session.run(user_input="Text me the booking, please.")
    return session, result


async def test_send_sms_then_late_undelivered_reaches_the_model(
    redis_url: str, redis_client: Any, write_config: Callable[..., Path], start_worker: WorkerFactory
) -> None:
    """The tool sends one text through a real worker and hands the model exactly "SMS sent."; when
    the receipt says undelivered, the model gets "SMS wasn't delivered: …" as the tool's final
    result and answers it (the agent tells the caller). The tool-call id is the idempotency key."""
    start_worker(write_config(CONFIG))
    room = sip_room(phone=UNDELIVERED)
    async with SmsClient.from_url(redis_url) as client:
        tools = SmsTools(client, agent_id=AGENT_ID, room=room, follow_seconds=30)
        model = ScriptedLLM({"template": "booking", "variables": {"date": "March 10", "time": "2 PM"}})
        session, result = await run_tool(tools, model)
        result.expect.next_event().is_function_call(name="send_sms")
        result.expect.next_event().is_function_call_output(output=SENT_MESSAGE)
        result.expect.next_event().is_message(role="assistant")
        sent = outbox(redis_url)
        assert len(sent) == 1 and sent[0]["to"] == UNDELIVERED
        print(f"livekit: model saw {model.outputs_seen()!r} after run; outbox={len(sent)}")

        assert poll_sandbox(redis_url, sent[0]["message_id"]) in ("published", "duplicate")
        await wait_for(lambda: any(o.startswith("SMS wasn't delivered") for o in model.outputs_seen()))
        late = model.outputs_seen()[-1]
        assert late.startswith("SMS wasn't delivered: the carrier filtered it as spam"), late
        await wait_for(lambda: any(f"Tool said: {late}" in str(i.content) for i in _messages(session)))
        print(f"livekit: late update reached the model: {late!r}; requests={len(model.requests)}")
        await session.aclose()
    assert len(outbox(redis_url)) == 1


def _messages(session: AgentSession[Any]) -> list[Any]:
    return [i for i in session.history.items if i.type == "message" and i.role == "assistant"]


async def test_same_tool_call_id_sends_once_and_no_caller_sends_nothing(
    redis_url: str, redis_client: Any, write_config: Callable[..., Path], start_worker: WorkerFactory
) -> None:
    """A repeated tool call (same call id, a barge-in) gets the first outcome and sends no second
    text; a room without a SIP caller answers "couldn't be sent" and queues nothing."""
    start_worker(write_config(CONFIG))
    async with SmsClient.from_url(redis_url) as client:
        tools = SmsTools(client, agent_id=AGENT_ID, room=sip_room(), follow_seconds=0)
        for _ in range(2):
            model = ScriptedLLM({"message": "Your code is 1234"}, tool_call_id="call_same")
            session, result = await run_tool(tools, model)
            result.expect.contains_function_call_output(output=SENT_MESSAGE)
            await session.aclose()
        assert len(outbox(redis_url)) == 1

        nobody = SmsTools(client, agent_id=AGENT_ID, room=FakeRoom("empty", {}))
        model = ScriptedLLM({"message": "hello"})
        session, result = await run_tool(nobody, model)
        result.expect.contains_function_call_output(output=NO_CALLER_MESSAGE)
        await session.aclose()
    assert len(outbox(redis_url)) == 1


async def test_late_delivered_is_recorded_silently_and_sms_status_says_it(
    redis_url: str, redis_client: Any, write_config: Callable[..., Path], start_worker: WorkerFactory
) -> None:
    """A late `delivered` goes into the conversation as the tool's silent update (no reply is
    generated for it); the `sms_status` tool then answers "SMS delivered."."""
    start_worker(write_config(CONFIG))
    room = sip_room(phone=DELIVERED, call_id="SCL_lk_delivered")
    async with SmsClient.from_url(redis_url) as client:
        tools = SmsTools(client, agent_id=AGENT_ID, room=room, follow_seconds=30)
        model = ScriptedLLM({"message": "Your code is 1234"})
        session, result = await run_tool(tools, model)
        result.expect.contains_function_call_output(output=SENT_MESSAGE)
        sent = outbox(redis_url)
        assert poll_sandbox(redis_url, sent[0]["message_id"]) in ("published", "duplicate")

        def outputs() -> list[str]:
            return [i.output for i in session.history.items if i.type == "function_call_output"]

        await wait_for(lambda: "SMS delivered." in outputs())
        requests_after_delivered = len(model.requests)
        await asyncio.sleep(0.5)
        assert len(model.requests) == requests_after_delivered  # silent: the model was not run for it
        await session.aclose()

        status_model = ScriptedLLM({}, tool_call_id="call_status", tool="sms_status")
        session, result = await run_tool(tools, status_model)
        result.expect.contains_function_call(name="sms_status")
        result.expect.contains_function_call_output(output="SMS delivered.")
        await session.aclose()
    print(f"livekit: outputs after delivered: {outputs()!r}")
