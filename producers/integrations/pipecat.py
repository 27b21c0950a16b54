"""Pipecat: `send_sms` and `sms_status` registered with the LLM service, late news as async results.

```python
from pipecat.adapters.llm.schemas.tools_schema import ToolsSchema
from producers import CallContext, SmsClient
from producers.integrations.pipecat import SEND_SMS_SCHEMA, SMS_STATUS_SCHEMA, register_sms_functions

sms = SmsClient.from_url("redis://localhost:6379/0")
call = CallContext(call_id=call_sid, direction="inbound", from_number=caller, to_number=ours)
register_sms_functions(llm, sms, agent_id="agent_abc123", call=call)
context = LLMContext(messages, tools=ToolsSchema(standard_tools=[SEND_SMS_SCHEMA, SMS_STATUS_SCHEMA]))
```

The handler uses the tool-call id as the idempotency key and answers with the exact sentence
("SMS sent." / "SMS couldn't be sent: …"). It is registered as an async function call
(`cancel_on_interruption=False`): the sentence goes to the model as an intermediate result
(`FunctionCallResultProperties(is_final=False)`), and the handler follows the text on the call's
stream for `follow_seconds`; a late `undelivered` (or the outcome of a text that was `pending`)
is the final result, with an LLM run, so the agent tells the caller while they are on the line;
`delivered` is given to the model without a run. `call` is the call (a `CallContext`, or a
function returning it: Pipecat's telephony transports know the call's numbers, not this module).

Needs `pip install 'midcall-sms[pipecat]'`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipecat.adapters.llm.schemas.function_schema import FunctionSchema
from pipecat.frames.frames import FunctionCallResultProperties as Properties
from pipecat.services.llm_service import FunctionCallParams, LLMService

from producers.client import SmsClient
from producers.contract import CallContext, Status
from producers.integrations.follow import DEFAULT_FOLLOW_SECONDS, follow
from producers.tools import SEND_SMS_TOOL, SMS_STATUS_TOOL, run_send_sms, sms_status


def _schema(tool: dict[str, Any]) -> FunctionSchema:
    spec = tool["function"]
    return FunctionSchema(
        name=spec["name"],
        description=spec["description"],
        properties=spec["parameters"]["properties"],
        required=list(spec["parameters"]["required"]),
    )


#: The `send_sms` and `sms_status` functions for an `LLMContext`'s `ToolsSchema`.
SEND_SMS_SCHEMA = _schema(SEND_SMS_TOOL)
SMS_STATUS_SCHEMA = _schema(SMS_STATUS_TOOL)
#: Seconds added to the follow time in the function's Pipecat timeout (the send's own wait).
_TIMEOUT_MARGIN = 15.0


class SmsFunctions:
    """The `send_sms` handler for one agent and one call (see the module docstring)."""

    def __init__(
        self,
        client: SmsClient,
        *,
        agent_id: str,
        call: CallContext | Callable[[], CallContext],
        timeout: float = 5.0,
        follow_seconds: float = DEFAULT_FOLLOW_SECONDS,
    ) -> None:
        self._client = client
        self._agent_id = agent_id
        self._call = call
        self._timeout = timeout
        self.follow_seconds = follow_seconds

    def call(self) -> CallContext:
        return self._call if isinstance(self._call, CallContext) else self._call()

    async def sms_status(self, params: FunctionCallParams) -> None:
        """Run one `sms_status` function call (an ordinary one: the model waits for the answer)."""
        await params.result_callback(
            await sms_status(self._client, call=self.call(), arguments=params.arguments)
        )

    async def send_sms(self, params: FunctionCallParams) -> None:
        """Run one `send_sms` function call, then report its late news (async function call)."""
        call = self.call()
        message, result = await run_send_sms(
            self._client,
            agent_id=self._agent_id,
            call=call,
            arguments=params.arguments,
            tool_call_id=params.tool_call_id,
            timeout=self._timeout,
        )
        if result is None or result.status == "failed" or self.follow_seconds <= 0:
            await params.result_callback(message)
            return
        await params.result_callback(message, properties=Properties(is_final=False))
        async for news in follow(self._client, call.call_id, result, within=self.follow_seconds):
            if news.status == Status.ACCEPTED:  # a pending text went out: say so, keep following
                await params.result_callback(news.message, properties=Properties(is_final=False))
            elif not news.speak:  # delivered / probably delivered: the model knows, nobody speaks
                await params.result_callback(news.message, properties=Properties(run_llm=False))
                return
            else:  # undelivered, or a pending text that failed: answered aloud
                await params.result_callback(news.message, properties=Properties(run_llm=True))
                return
        # No final news in time: settle the call with what the model already has, without a run.
        await params.result_callback(message, properties=Properties(run_llm=False))


def register_sms_functions(
    llm: LLMService[Any],
    client: SmsClient,
    *,
    agent_id: str,
    call: CallContext | Callable[[], CallContext],
    timeout: float = 5.0,
    follow_seconds: float = DEFAULT_FOLLOW_SECONDS,
) -> SmsFunctions:
    """Register `send_sms` with `llm` as an async function call, and `sms_status`; returns the
    handler object."""
    functions = SmsFunctions(
        client, agent_id=agent_id, call=call, timeout=timeout, follow_seconds=follow_seconds
    )
    llm.register_function(
        SEND_SMS_SCHEMA.name,
        functions.send_sms,
        cancel_on_interruption=False,
        timeout_secs=timeout + follow_seconds + _TIMEOUT_MARGIN,
    )
    llm.register_function(SMS_STATUS_SCHEMA.name, functions.sms_status, timeout_secs=_TIMEOUT_MARGIN)
    return functions
