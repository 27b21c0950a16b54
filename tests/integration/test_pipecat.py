"""Pipecat: `send_sms` registered with an `LLMService`, run by Pipecat's own pipeline test helper
(`pipecat.tests.utils.run_test`) against a real worker and the sandbox.

The LLM service is a local subclass that, on a user message, makes the function call a model
would make (`run_function_calls`); nothing reaches the network. The results it broadcasts
(`FunctionCallResultFrame`, with their `FunctionCallResultProperties`) are what Pipecat's context
aggregator puts in front of the model.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from pipecat.frames.frames import (
    EndFrame,
    Frame,
    FunctionCallFromLLM,
    FunctionCallResultFrame,
    TranscriptionFrame,
)
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.llm_service import LLMService
from pipecat.tests.utils import run_test

from producers import CallContext, SmsClient
from producers.contract import SENT_MESSAGE
from producers.integrations.pipecat import register_sms_functions
from tests.integration.voice import (
    AGENT_ID,
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


class ScriptedLLM(LLMService):
    """Calls `send_sms` once per user message; holds the EndFrame until its calls are settled."""

    def __init__(
        self, arguments: dict[str, Any], tool_call_id: str = "call_pc_1", tool: str = "send_sms"
    ) -> None:
        super().__init__()
        self.tool = tool
        self.arguments = arguments
        self.tool_call_id = tool_call_id
        self.settled = asyncio.Event()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TranscriptionFrame):
            call = FunctionCallFromLLM(
                function_name=self.tool,
                tool_call_id=self.tool_call_id,
                arguments=self.arguments,
                context=LLMContext(),
            )
            await self.run_function_calls([call])
            return
        if isinstance(frame, EndFrame):
            await asyncio.wait_for(self.settled.wait(), timeout=30)
        await self.push_frame(frame, direction)

    async def broadcast_frame(self, frame_cls: type[Frame], **kwargs: Any) -> None:
        await super().broadcast_frame(frame_cls, **kwargs)
        if frame_cls is FunctionCallResultFrame:
            props = kwargs.get("properties")
            if props is None or props.is_final:
                self.settled.set()


def results(frames: list[Frame] | Any) -> list[tuple[str, bool, bool | None]]:
    """(result, is_final, run_llm) of each function-call result that went downstream."""
    out = []
    for frame in frames:
        if isinstance(frame, FunctionCallResultFrame):
            props = frame.properties
            out.append((frame.result, props.is_final if props else True, props.run_llm if props else None))
    return out


def user_says(text: str) -> TranscriptionFrame:
    return TranscriptionFrame(text=text, user_id="caller", timestamp="2026-12-01T00:00:00Z")


def poll_when_sent(redis_url: str, stop: threading.Event) -> list[str]:
    """Once the sandbox has the text, apply its receipt the way the status poll does."""
    applied: list[str] = []
    deadline = time.monotonic() + 30
    while not stop.is_set() and time.monotonic() < deadline:
        sent = outbox(redis_url)
        if sent:
            applied.append(poll_sandbox(redis_url, sent[0]["message_id"]))
            return applied
        time.sleep(0.05)
    return applied


async def test_send_sms_then_late_undelivered_is_the_final_result(
    redis_url: str, redis_client: Any, write_config: Any, start_worker: Any
) -> None:
    """Through a real worker: the model first gets exactly "SMS sent." (an intermediate result of
    the async call), then the receipt's "SMS wasn't delivered: …" as the final result with an LLM
    run, so the agent tells the caller. One text in the outbox."""
    start_worker(write_config(CONFIG))
    call = CallContext(call_id="CA-pc-1", direction="inbound", from_number=UNDELIVERED, to_number=OUR_NUMBER)
    async with SmsClient.from_url(redis_url) as client:
        llm = ScriptedLLM({"template": "booking", "variables": {"date": "March 10", "time": "2 PM"}})
        register_sms_functions(llm, client, agent_id=AGENT_ID, call=call, follow_seconds=30)
        stop = threading.Event()
        poller = asyncio.create_task(asyncio.to_thread(poll_when_sent, redis_url, stop))
        down, _ = await run_test(llm, frames_to_send=[user_says("Text me the booking.")])
        stop.set()
        applied = await poller
    seen = results(down)
    print(f"pipecat: results={seen!r} receipt={applied}")
    assert seen[0] == (SENT_MESSAGE, False, None)
    final = seen[-1]
    assert final[0].startswith("SMS wasn't delivered: the carrier filtered it as spam"), final
    assert final[1:] == (True, True)
    assert len(seen) == 2
    assert len(outbox(redis_url)) == 1


async def test_refused_arguments_answer_at_once_and_queue_nothing(
    redis_url: str, redis_client: Any, write_config: Any, start_worker: Any
) -> None:
    """A call with neither message nor template gets the final "couldn't be sent" sentence at once
    (no follow), and nothing reaches the worker."""
    start_worker(write_config(CONFIG))
    call = CallContext(
        call_id="CA-pc-2", direction="inbound", from_number="+14155551234", to_number=OUR_NUMBER
    )
    async with SmsClient.from_url(redis_url) as client:
        llm = ScriptedLLM({"variables": {}})
        register_sms_functions(llm, client, agent_id=AGENT_ID, call=call)
        down, _ = await run_test(llm, frames_to_send=[user_says("Text me.")])
    seen = results(down)
    assert seen == [("SMS couldn't be sent: give either a message or a template.", True, None)]
    assert outbox(redis_url) == []


async def test_late_delivered_settles_without_a_run_and_sms_status_says_it(
    redis_url: str, redis_client: Any, write_config: Any, start_worker: Any
) -> None:
    """A late `delivered` is the final result without an LLM run (nobody needs to speak); the
    `sms_status` function then answers "SMS delivered."."""
    start_worker(write_config(CONFIG))
    call = CallContext(call_id="CA-pc-3", direction="inbound", from_number=DELIVERED, to_number=OUR_NUMBER)
    async with SmsClient.from_url(redis_url) as client:
        llm = ScriptedLLM({"message": "Your code is 1234"})
        register_sms_functions(llm, client, agent_id=AGENT_ID, call=call, follow_seconds=30)
        stop = threading.Event()
        poller = asyncio.create_task(asyncio.to_thread(poll_when_sent, redis_url, stop))
        down, _ = await run_test(llm, frames_to_send=[user_says("Text me the code.")])
        stop.set()
        await poller
        assert results(down) == [(SENT_MESSAGE, False, None), ("SMS delivered.", True, False)]

        status_llm = ScriptedLLM({}, tool_call_id="call_pc_status", tool="sms_status")
        register_sms_functions(status_llm, client, agent_id=AGENT_ID, call=call)
        down, _ = await run_test(status_llm, frames_to_send=[user_says("Did it arrive?")])
    print(f"pipecat: sms_status results={results(down)!r}")
    assert results(down) == [("SMS delivered.", True, None)]
