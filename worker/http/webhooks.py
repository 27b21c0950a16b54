"""Provider callbacks: `POST /v1/webhooks/{provider}/{connection_id}/status` and `/inbound`.

Each request, in this order, answering as soon as one step refuses:

1. the provider must take callbacks (its class `signs_callbacks`: `CALLBACK_PROVIDERS` of
   `worker/providers/registry.py`), else 404;
2. the body is read up to 64 KiB, else 413 (the limit is enforced while reading);
3. the connection is found by provider and id in the current config, else 404;
4. the signature is checked on the raw body with that connection's credentials, by the
   provider's module (`verify_callback`), against the public URL (`SMS_PUBLIC_URL`), else 403;
5. only then is the body parsed (the provider's `callback_fields`, then `receipt` or
   `inbound_message`), else 400;
6. a receipt goes to `worker.receipts.apply_receipt` (published, duplicate, stale or parked:
   all 200), tagged with the route's connection; an inbound message is handed on
   (`worker.http.inbound`).

A receipt that is not about a message of the route's connection (the message-id mapping names
another connection, or the receipt names another account or profile: the provider's
`receipt_belongs_to`, e.g. Twilio `AccountSid`, Telnyx `messaging_profile_id`) changes nothing and is
answered 200 `ignored` (counted as `outcome="mismatch"`, logged as a warning), not 403. The
signature is good, so this is the provider speaking, not a forger: the callback is misrouted
(a second account or profile pointed at this route). Providers retry a 4xx/5xx — Telnyx several
times, Twilio per its retry policy, each retry logged as a webhook error on the account — and no
retry can ever make it match, so a refusal would only bring the same request back. A 200 also
says nothing about which connection owns the message id.

Nothing is written to Redis before step 6, so a refused request changes nothing. Redis
unreachable at any step is 503, so the provider retries and nothing is lost. No provider is
called from a request. Logs name the provider, connection, message id and outcome, never a
number or a text.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import redis
import structlog
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from worker.config.models import Connection
from worker.http import inbound
from worker.http.body import BodyTooLarge, read_limited
from worker.http.state import ServiceState
from worker.providers import CALLBACK_PROVIDERS, SmsProvider
from worker.providers.callbacks import MAX_BODY_BYTES
from worker.receipts import apply_receipt

log = structlog.get_logger("worker.http.webhooks")


def _ignored() -> Response:
    """What a misrouted receipt is answered (see the module docstring)."""
    return JSONResponse({"outcome": "ignored"})


@dataclass(frozen=True, slots=True)
class Refused(Exception):
    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class Handled:
    outcome: str
    message_id: str | None = None
    response: Response | None = None


async def status_callback(request: Request) -> Response:
    return await _webhook(request, "status")


async def inbound_callback(request: Request) -> Response:
    return await _webhook(request, "inbound")


async def _webhook(request: Request, kind: str) -> Response:
    started = time.perf_counter()
    state: ServiceState = request.app.state.service
    provider = request.path_params["provider"]
    connection_id = request.path_params["connection_id"]
    label = provider if provider in CALLBACK_PROVIDERS else "other"
    try:
        handled = await _handle(request, state, kind, provider, connection_id)
    except Refused as refused:
        state.metrics.refused.labels(label, kind, str(refused.status)).inc()
        state.metrics.seconds.labels(label, kind).observe(time.perf_counter() - started)
        log.info(
            "webhook.refused", provider=label, kind=kind, connection_id=connection_id[:64],
            status=refused.status, reason=refused.reason,
        )  # fmt: skip
        return JSONResponse({"error": refused.reason}, status_code=refused.status)
    elapsed = time.perf_counter() - started
    state.metrics.handled.labels(label, kind, handled.outcome).inc()
    state.metrics.seconds.labels(label, kind).observe(elapsed)
    log.info(
        "webhook.handled", provider=provider, kind=kind, connection_id=connection_id,
        message_id=handled.message_id, outcome=handled.outcome, ms=round(elapsed * 1000, 2),
    )  # fmt: skip
    return handled.response or JSONResponse({"outcome": handled.outcome})


async def _handle(
    request: Request, state: ServiceState, kind: str, provider: str, connection_id: str
) -> Handled:
    cls = CALLBACK_PROVIDERS.get(provider)
    if cls is None:
        raise Refused(404, "no callbacks for this provider")
    try:
        body = await read_limited(request, MAX_BODY_BYTES)
    except BodyTooLarge:
        raise Refused(413, f"body over {MAX_BODY_BYTES} bytes") from None
    url = state.public_url(request.url.path, request.url.query)
    # The rest may wait on Redis (the config store, the receipt scripts): one hop to a thread.
    return await run_in_threadpool(_process, state, cls, kind, connection_id, url, request.headers, body)


def _process(
    state: ServiceState,
    cls: type[SmsProvider],
    kind: str,
    connection_id: str,
    url: str | None,
    headers: Mapping[str, str],
    body: bytes,
) -> Handled:
    """Steps 3 to 6, blocking (in a worker thread)."""
    try:
        connection = state.config().connection_by_id(cls.name, connection_id)
        if connection is None:
            raise Refused(404, "unknown connection")
        if not cls.verify_callback(connection, url=url or "", headers=headers, body=body):
            reason = "signature missing or wrong"
            if url is None and cls.signs_url:
                reason += " (SMS_PUBLIC_URL is not set, and this provider signs the URL)"
            raise Refused(403, reason)
        try:
            fields = cls.callback_fields(body)
            if kind == "status":
                return _receipt(state, cls, connection, fields)
            return _inbound(state, cls, connection, fields)
        except ValueError as exc:
            raise Refused(400, f"malformed {kind} callback: {exc}") from None
    except redis.RedisError:
        raise Refused(503, "redis unreachable") from None


def _receipt(
    state: ServiceState, cls: type[SmsProvider], connection: Connection, fields: dict[str, Any]
) -> Handled:
    if not cls.is_receipt(fields):
        return Handled("ignored")
    update = replace(cls.receipt(fields), connection_id=connection.connection_id)
    if not cls.receipt_belongs_to(connection, fields):
        return Handled("mismatch", update.message_id, response=_ignored())
    outcome = apply_receipt(state.redis, update)
    return Handled(outcome, update.message_id, response=_ignored() if outcome == "mismatch" else None)


def _inbound(
    state: ServiceState, cls: type[SmsProvider], connection: Connection, fields: dict[str, Any]
) -> Handled:
    message = cls.inbound_message(connection, fields)
    if message is None:
        return Handled("ignored", response=_inbound_answer(cls))
    outcome = inbound.hand_on(state.redis, connection, message, settings=state.settings)
    return Handled(outcome, message.message_id, response=_inbound_answer(cls))


def _inbound_answer(cls: type[SmsProvider]) -> Response | None:
    if cls.inbound_reply is None:
        return None
    content, media_type = cls.inbound_reply
    return Response(content, media_type=media_type)


ROUTES = [
    Route("/v1/webhooks/{provider}/{connection_id}/status", status_callback, methods=["POST"]),
    Route("/v1/webhooks/{provider}/{connection_id}/inbound", inbound_callback, methods=["POST"]),
]
