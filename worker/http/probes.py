"""`/healthz` (the process answers), `/readyz` (Redis answers a PING within a second, not shutting
down) and `/metrics` (Prometheus), as on the worker."""

from __future__ import annotations

import redis
from prometheus_client.exposition import choose_encoder
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from worker.http.state import ServiceState


def _state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


async def healthz(request: Request) -> Response:
    """Live while the event loop answers; restarting would not bring Redis back, so Redis is not
    asked here."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    state = _state(request)
    if state.stopping:
        return JSONResponse({"status": "fail", "detail": "shutting down"}, status_code=503)
    try:
        await run_in_threadpool(state.redis.ping)
    except redis.RedisError as exc:
        detail = f"redis unreachable: {type(exc).__name__}"
        return JSONResponse({"status": "fail", "detail": detail}, status_code=503)
    return JSONResponse({"status": "ok", "detail": "redis answers"})


async def metrics(request: Request) -> Response:
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encoder(_state(request).metrics.registry), media_type=content_type)


ROUTES = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]
