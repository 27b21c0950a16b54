"""Voice platforms' tool calls: `POST /v1/tools/vapi[/{agent_id}]` and `/v1/tools/retell[/{agent_id}]`.

Each request, in this order, answering as soon as one step refuses:

1. the body is read up to 64 KiB, else 413, and must be JSON, else 400;
2. the agent is the path's `{agent_id}`, else the one whose `platform_ids` lists the platform's
   id of the call's assistant/agent; none found: 401 (as for a wrong secret, so the answer does
   not tell which agents exist);
3. the request is authenticated with the agent's `tool_secrets` (Vapi: the server secret in the
   agent's `vapi_secret_header`, compared in constant time; Retell: `X-Retell-Signature` over
   the raw body, fresh within five minutes), else 401;
4. only then are the tool calls read (else 400) and run: `send_sms` through the producers'
   `run_send_sms`, the platform's tool-call id making the idempotency key, each waiting at most
   `SMS_TOOL_TIMEOUT` seconds ("SMS not confirmed yet: …" after that; the text stays queued);
   `sms_status` through the producers' `sms_status` (where the call's latest text stands).

Nothing is queued before step 4, so a forged or unauthenticated request sends nothing. Logs name
the platform, the agent and the outcomes, never a number or a text.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import redis
import structlog
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from producers.client import SmsClient
from producers.contract import NOT_SENT_PREFIX, CallContext
from producers.tools import run_send_sms, sms_status
from worker.config.models import Agent
from worker.http.body import BodyTooLarge, read_limited
from worker.http.state import ServiceState
from worker.platforms import BadRequest, ToolCall, retell, vapi
from worker.providers.callbacks import MAX_BODY_BYTES

log = structlog.get_logger("worker.http.tools")

NO_PHONE_CALL = f"{NOT_SENT_PREFIX}: this call has no phone number to text."
TOOLS = ("send_sms", "sms_status")


class Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _refusal(platform: str, refused: Refused) -> Response:
    log.info("tools.refused", platform=platform, status=refused.status, reason=refused.reason)
    return JSONResponse({"error": refused.reason}, status_code=refused.status)


async def _body(request: Request) -> bytes:
    try:
        return await read_limited(request, MAX_BODY_BYTES)
    except BodyTooLarge:
        raise Refused(413, f"body over {MAX_BODY_BYTES} bytes") from None


async def _agent(request: Request, platform: str, platform_id: str | None) -> tuple[str, Agent]:
    state: ServiceState = request.app.state.service
    path_id = request.path_params.get("agent_id")
    try:
        agents = (await run_in_threadpool(state.config)).agents
    except redis.RedisError:
        raise Refused(503, "redis unreachable") from None
    if path_id is not None:
        agent = agents.get(path_id)
        if agent is not None:
            return path_id, agent
    elif platform_id is not None:
        for agent_id, agent in agents.items():
            if platform_id in agent.sms.platform_ids.get(platform, ()):  # type: ignore[call-overload]
                return agent_id, agent
    raise Refused(401, "unknown agent or wrong secret")


def _secret(agent: Agent, platform: str) -> str | None:
    secret = agent.sms.tool_secrets.get(platform)  # type: ignore[call-overload]
    return secret.get_secret_value() if secret is not None else None


async def run_tool(
    sms: SmsClient, agent_id: str, call: CallContext | None, tool: ToolCall, timeout: float
) -> str:
    """One tool call's sentence for the model."""
    if tool.name not in TOOLS:
        return f"Unknown tool {tool.name[:64]!r}: this server runs {', '.join(TOOLS)}."
    if call is None:
        return NO_PHONE_CALL
    if tool.name == "sms_status":
        return await sms_status(sms, call=call, arguments=tool.arguments)
    message, _ = await run_send_sms(
        sms, agent_id=agent_id, call=call, arguments=tool.arguments, tool_call_id=tool.id, timeout=timeout
    )
    return message


async def vapi_tools(request: Request) -> Response:
    started = time.perf_counter()
    try:
        body = await _body(request)
        try:
            message = vapi.message_of(json.loads(body))
        except ValueError as exc:
            raise Refused(400, str(exc) if isinstance(exc, BadRequest) else "the body is not JSON") from None
        agent_id, agent = await _agent(request, vapi.NAME, vapi.assistant_id(message))
        if not vapi.authenticated(request.headers, agent.sms.vapi_secret_header, _secret(agent, vapi.NAME)):
            raise Refused(401, "unknown agent or wrong secret")
        try:
            calls, call = vapi.parse(message)
        except BadRequest as exc:
            raise Refused(400, str(exc)) from None
    except Refused as refused:
        return _refusal(vapi.NAME, refused)
    results = await _run_all(request, agent_id, call, calls)
    _handled(vapi.NAME, agent_id, results, started)
    return JSONResponse(vapi.answer([(c.id, r) for c, r in zip(calls, results, strict=True)]))


async def retell_tools(request: Request) -> Response:
    started = time.perf_counter()
    try:
        body = await _body(request)
        try:
            data = retell.request_of(body)
        except BadRequest as exc:
            raise Refused(400, str(exc)) from None
        agent_id, agent = await _agent(request, retell.NAME, retell.agent_id(data))
        signature = request.headers.get(retell.SIGNATURE_HEADER)
        if not retell.verify(body, _secret(agent, retell.NAME), signature):
            raise Refused(401, "unknown agent or wrong or stale signature")
        try:
            tool, call = retell.parse(data)
        except BadRequest as exc:
            raise Refused(400, str(exc)) from None
    except Refused as refused:
        return _refusal(retell.NAME, refused)
    results = await _run_all(request, agent_id, call, [tool])
    _handled(retell.NAME, agent_id, results, started)
    return PlainTextResponse(results[0])


async def _run_all(
    request: Request, agent_id: str, call: CallContext | None, calls: list[ToolCall]
) -> list[str]:
    state: ServiceState = request.app.state.service
    sms: SmsClient = request.app.state.sms
    timeout = state.settings.tool_timeout
    return list(await asyncio.gather(*(run_tool(sms, agent_id, call, c, timeout) for c in calls)))


def _handled(platform: str, agent_id: str, results: list[str], started: float) -> None:
    outcomes = [_outcome(r) for r in results]
    log.info(
        "tools.handled", platform=platform, agent_id=agent_id, calls=len(results), outcomes=outcomes,
        ms=round((time.perf_counter() - started) * 1000, 2),
    )  # fmt: skip


def _outcome(sentence: str) -> str:
    if sentence.startswith("SMS sent"):
        return "sent"
    if sentence.startswith(NOT_SENT_PREFIX):
        return "not_sent"
    return "pending" if sentence.startswith("SMS not confirmed") else "other"


def _routes(platform: str, endpoint: Any) -> list[Route]:
    return [
        Route(f"/v1/tools/{platform}", endpoint, methods=["POST"]),
        Route(f"/v1/tools/{platform}/{{agent_id}}", endpoint, methods=["POST"]),
    ]


ROUTES = [*_routes(vapi.NAME, vapi_tools), *_routes(retell.NAME, retell_tools)]
