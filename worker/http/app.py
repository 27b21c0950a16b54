"""The app factory: `create_app(settings)` is the whole service, with nothing read from the
environment (`worker.settings` did that)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import redis
import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from producers.client import SmsClient
from worker.config.source import ConfigSource
from worker.http import audit, probes, tools, webhooks
from worker.http.metrics import ServiceMetrics
from worker.http.state import ServiceState, service_client
from worker.settings import Settings

log = structlog.get_logger("worker.http")


def create_app(
    settings: Settings,
    *,
    client: redis.Redis | None = None,
    config: ConfigSource | None = None,
    metrics: ServiceMetrics | None = None,
) -> Starlette:
    """The service. `client`, `config` and `metrics` are for tests; by default the app builds its
    Redis client and config source at startup and closes them at shutdown."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state = ServiceState(settings, client or service_client(settings), config=config, metrics=metrics)
        app.state.service = state
        # The voice platforms' tool calls enqueue and wait like a live-call process does.
        app.state.sms = SmsClient.from_url(settings.redis_url)
        if not settings.public_url:
            log.warning(
                "serve.no_public_url",
                detail="SMS_PUBLIC_URL is not set: Twilio and Plivo callbacks cannot be verified (403)",
            )
        try:
            yield
        finally:
            state.stopping = True
            await app.state.sms.aclose()
            if client is None:
                state.close()

    app = Starlette(
        routes=[*probes.ROUTES, *webhooks.ROUTES, *audit.ROUTES, *tools.ROUTES],
        lifespan=lifespan,
        exception_handlers={404: _not_found, 405: _not_allowed},
    )
    return app


async def _not_found(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": "not found"}, status_code=404)


async def _not_allowed(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": "method not allowed"}, status_code=405)
