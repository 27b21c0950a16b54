"""`GET /v1/calls/{call_id}/messages`: the call's texts as JSON, the same read model as
`midcall-sms trail` (`worker.audit.call_messages`), behind `Authorization: Bearer <token>`.

A token is one of `SMS_API_TOKENS` (comma-separated, so a new one can be added before the old
one is removed), compared in constant time. Without tokens configured every request is 401: the
API is never open by default. Numbers are masked and texts left out unless `SMS_AUDIT_BODIES`.
"""

from __future__ import annotations

import hmac

import redis
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from worker.audit import call_messages
from worker.http.state import ServiceState

ROUTE = "/v1/calls/{call_id}/messages"


def authorized(header: str | None, tokens: list[bytes]) -> bool:
    """Whether `header` is `Bearer <one of tokens>`; every token is compared, in constant time."""
    if not header or not tokens:
        return False
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        return False
    candidate = presented.strip().encode()
    return any([hmac.compare_digest(candidate, token) for token in tokens])


async def call_messages_route(request: Request) -> Response:
    state: ServiceState = request.app.state.service
    if not authorized(request.headers.get("authorization"), state.tokens):
        state.metrics.api.labels(ROUTE, "401").inc()
        return JSONResponse(
            {"error": "a valid bearer token is required"},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="midcall-sms"'},
        )
    call_id = request.path_params["call_id"]
    try:
        messages = await run_in_threadpool(
            call_messages, state.redis, call_id, bodies=state.settings.audit_bodies
        )
    except redis.RedisError:
        state.metrics.api.labels(ROUTE, "503").inc()
        return JSONResponse({"error": "redis unreachable"}, status_code=503)
    state.metrics.api.labels(ROUTE, "200").inc()
    return JSONResponse({"call_id": call_id, "messages": messages})


ROUTES = [Route(ROUTE, call_messages_route, methods=["GET"])]
