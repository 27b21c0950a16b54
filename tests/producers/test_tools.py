"""The LLM tool: its function-calling schema and the `send_sms` adapter's exact answers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest

from producers.client import SmsClient
from producers.contract import CallContext, ErrorCode, ErrorInfo, Status, VariableValue, reason, tool_message
from producers.jobs import build_job
from producers.results import SendResult
from producers.tools import SEND_SMS_TOOL, send_sms

CALL = CallContext(call_id="CA42", direction="inbound", from_number="+14155551234", to_number="+14155550000")


class StubClient(SmsClient):
    """Records `send()` calls and answers with a fixed result; validates arguments like the real one."""

    def __init__(self, result: SendResult | None = None) -> None:
        self.result = result
        self.calls: list[dict[str, Any]] = []

    async def send(
        self,
        *,
        agent_id: str,
        call: CallContext,
        template: str | None = None,
        variables: Mapping[str, VariableValue] | None = None,
        message: str | None = None,
        to: str | None = None,
        from_: str | None = None,
        connection: str | None = None,
        idempotency_key: str | None = None,
        timeout: float = 5.0,
        expires_in: float = 300.0,
    ) -> SendResult:
        arguments: dict[str, Any] = {
            "agent_id": agent_id, "call": call, "template": template, "variables": variables,
            "message": message, "to": to, "from_": from_, "connection": connection,
            "idempotency_key": idempotency_key,
        }  # fmt: skip
        self.calls.append({**arguments, "timeout": timeout})
        job = build_job(**arguments)  # the real client raises here for bad arguments, too
        assert self.result is not None
        return SendResult(
            job_id=job.job_id,
            status=self.result.status,
            tool_message=self.result.tool_message,
            error=self.result.error,
        )


def accepted() -> SendResult:
    return SendResult(job_id="j", status="accepted", tool_message=tool_message(Status.ACCEPTED))


def failed(code: ErrorCode) -> SendResult:
    return SendResult(
        job_id="j",
        status="failed",
        tool_message=tool_message(Status.FAILED, code),
        error=ErrorInfo(code=code, message="x"),
    )


def pending() -> SendResult:
    return SendResult(job_id="j", status="pending", tool_message=tool_message("pending"))


async def call_tool(client: StubClient, arguments: Mapping[str, Any], tool_call_id: str = "call_7") -> str:
    return await send_sms(
        client, agent_id="agent_abc123", call=CALL, arguments=arguments, tool_call_id=tool_call_id
    )


# -- the schema -----------------------------------------------------------------------------------


def test_send_sms_tool_is_a_valid_function_calling_schema() -> None:
    """SEND_SMS_TOOL is an OpenAI-style function tool whose parameters are a valid JSON Schema."""
    assert SEND_SMS_TOOL["type"] == "function"
    function = SEND_SMS_TOOL["function"]
    assert function["name"] == "send_sms"
    assert function["description"].strip()
    parameters = function["parameters"]
    jsonschema.Draft202012Validator.check_schema(parameters)
    assert parameters["type"] == "object"


def test_send_sms_tool_exposes_exactly_the_documented_arguments() -> None:
    """The tool's arguments are to_, message, from_, template and variables, none of them required."""
    parameters = SEND_SMS_TOOL["function"]["parameters"]
    assert set(parameters["properties"]) == {"to_", "message", "from_", "template", "variables"}
    assert parameters["required"] == []
    assert parameters["additionalProperties"] is False


def test_send_sms_tool_schema_accepts_model_arguments_and_refuses_bad_ones() -> None:
    """Arguments a model would produce validate; unknown arguments and non-scalar variables do not."""
    validator = jsonschema.Draft202012Validator(SEND_SMS_TOOL["function"]["parameters"])
    assert validator.is_valid({"template": "booking_confirmation", "variables": {"date": "March 10", "n": 2}})
    assert validator.is_valid({"message": "Your code is 1234", "to_": "+14155551234"})
    assert not validator.is_valid({"message": "hi", "recipient": "+19005550000"})
    assert not validator.is_valid({"template": "t", "variables": {"date": ["March", "10"]}})


# -- the adapter ----------------------------------------------------------------------------------


async def test_accepted_result_returns_exactly_sms_sent() -> None:
    """When the client's result is accepted, the tool returns exactly "SMS sent."."""
    client = StubClient(accepted())
    assert await call_tool(
        client, {"template": "booking_confirmation", "variables": {"date": "March 10"}}
    ) == ("SMS sent.")


@pytest.mark.parametrize("code", [ErrorCode.INVALID_NUMBER, ErrorCode.RECIPIENT_OPTED_OUT, ErrorCode.EXPIRED])
async def test_failed_result_returns_not_sent_with_the_reason(code: ErrorCode) -> None:
    """When the client's result is failed, the tool returns "SMS couldn't be sent: <reason>."."""
    client = StubClient(failed(code))
    assert await call_tool(client, {"message": "hello"}) == f"SMS couldn't be sent: {reason(code)}."


async def test_pending_result_returns_the_pending_text() -> None:
    """When no outcome came in time, the tool returns the pending text, never "SMS sent."."""
    client = StubClient(pending())
    text = await call_tool(client, {"message": "hello"})
    assert text == tool_message("pending")
    assert "SMS sent" not in text


@pytest.mark.parametrize(
    "arguments",
    [{}, {"template": ""}, {"message": ""}, {"to_": "+14155551234"}, {"template": None, "message": None}],
    ids=["empty", "empty-template", "empty-message", "only-to", "nulls"],
)
async def test_neither_message_nor_template_returns_not_sent_without_calling_the_client(
    arguments: dict[str, Any],
) -> None:
    """Without a message or a template the tool answers "SMS couldn't be sent: …" and sends nothing."""
    client = StubClient(accepted())
    text = await call_tool(client, arguments)
    assert text.startswith("SMS couldn't be sent: ")
    assert "message or a template" in text
    assert client.calls == []


@pytest.mark.parametrize(
    "variables",
    [["March 10"], "March 10", {"date": ["March", "10"]}, {"ok": True}, {"x": None}, {"x": {"y": 1}}],
    ids=["list", "str", "list-value", "bool-value", "null-value", "dict-value"],
)
async def test_bad_variables_return_not_sent_instead_of_raising(variables: Any) -> None:
    """Variables that are not a mapping of text or numbers give a "couldn't be sent" string, not an error."""
    client = StubClient(accepted())
    text = await call_tool(client, {"template": "booking_confirmation", "variables": variables})
    assert text == "SMS couldn't be sent: template variables must be text or numbers."
    assert client.calls == []


@pytest.mark.parametrize(
    "arguments",
    [{"message": "hi", "to_": "+1" + "5" * 40}, {"template": "t" * 300}, {"message": 12345}],
    ids=["long-to", "long-template", "non-text-message"],
)
async def test_arguments_the_job_refuses_return_not_sent_instead_of_raising(
    arguments: dict[str, Any],
) -> None:
    """Arguments build_job refuses come back as "SMS couldn't be sent: …" for the model to correct."""
    client = StubClient(accepted())
    text = await call_tool(client, arguments)
    assert text.startswith("SMS couldn't be sent: invalid SMS request: ")
    assert text.endswith(".")


async def test_idempotency_key_is_call_id_and_tool_call_id() -> None:
    """The tool passes idempotency_key f"{call_id}:{tool_call_id}" so a repeated tool call sends once."""
    client = StubClient(accepted())
    await call_tool(client, {"message": "hello"}, tool_call_id="call_Ab3")
    await call_tool(client, {"message": "hello"}, tool_call_id="call_Ab3")
    assert [c["idempotency_key"] for c in client.calls] == ["CA42:call_Ab3", "CA42:call_Ab3"]


async def test_arguments_are_mapped_onto_send() -> None:
    """to_, from_, template and variables reach send() as to, from_, template and variables."""
    client = StubClient(accepted())
    await call_tool(
        client,
        {
            "to_": "+14155551234",
            "from_": "+14155550000",
            "template": "booking_confirmation",
            "variables": {"date": "March 10", "n": 2},
        },
    )
    (sent,) = client.calls
    assert sent["agent_id"] == "agent_abc123"
    assert sent["call"] == CALL
    assert (sent["to"], sent["from_"]) == ("+14155551234", "+14155550000")
    assert sent["template"] == "booking_confirmation"
    assert sent["variables"] == {"date": "March 10", "n": 2}
    assert sent["message"] is None


async def test_a_template_wins_over_a_message() -> None:
    """When the model gives both a template and a message, only the template is sent."""
    client = StubClient(accepted())
    assert (
        await call_tool(client, {"template": "booking_confirmation", "message": "free text"}) == "SMS sent."
    )
    (sent,) = client.calls
    assert (sent["template"], sent["message"]) == ("booking_confirmation", None)


async def test_empty_optional_arguments_are_left_out() -> None:
    """Empty to_ and from_ strings from the model mean "not given" (the caller, the default sender)."""
    client = StubClient(accepted())
    await call_tool(client, {"message": "hello", "to_": "", "from_": ""})
    (sent,) = client.calls
    assert (sent["to"], sent["from_"], sent["template"]) == (None, None, None)
    assert sent["message"] == "hello"
