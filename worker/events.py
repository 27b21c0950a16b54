"""The worker's events on a call's result channel (a Redis Stream with a TTL): made here, written here.

- `new_event` is the one factory, `producers.events.new_event` (the producer's own events are
  made by it too): `terminal` and the agent's `tool_message` follow from the status and the error.
- `job_event` is a delivery's event (`sending`, `retrying`, `accepted`, `failed`) from its job and
  plan; `replay_event` answers a job with the stored outcome of its idempotency key;
  `malformed_event` is the `failed` of a job no worker can read; `delivery_event` is a receipt's.
- `publish` (queues the write on a pipeline or client) and `lua_publish` (the same write inside a
  Lua script: the claim, the outcome and the receipt ranking publish atomically with their own
  checks) are `producers.events`' — one stream writer for the producer and the worker.

Numbers are masked here (`producers.contract.mask_number`) before they reach an event.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from producers.contract import (
    EVENT_FIELD,
    EVENTS_MAXLEN,
    ErrorCode,
    ErrorInfo,
    Event,
    Job,
    Status,
    mask_number,
    tool_message,
)
from producers.events import lua_publish, new_event, publish

if TYPE_CHECKING:
    from worker.plan import SendPlan

__all__ = [
    "delivery_event", "job_event", "lua_publish", "lua_xadd", "malformed_event", "new_event", "publish",
    "replay_event",
]  # fmt: skip


def job_event(
    job: Job,
    plan: SendPlan | None,
    status: Status,
    *,
    attempt: int,
    possible_duplicate: bool = False,
    error: ErrorInfo | None = None,
    provider_message_id: str | None = None,
    next_attempt_at: datetime | None = None,
) -> Event:
    """One delivery's event: what the plan says (provider, masked recipient, sender, segments), or
    only the job's recipient when there is no plan (a refusal before any)."""
    if plan is None:
        return new_event(
            job.job_id, job.call.call_id, status, error=error, attempt=attempt,
            to=mask_number(job.to), possible_duplicate=possible_duplicate,
            provider_message_id=provider_message_id, next_attempt_at=next_attempt_at,
        )  # fmt: skip
    return new_event(
        job.job_id, job.call.call_id, status, error=error, attempt=attempt,
        provider=plan.connection.provider, to=mask_number(plan.to), from_=plan.from_,
        segments=plan.segments, encoding=plan.encoding, possible_duplicate=possible_duplicate,
        provider_message_id=provider_message_id, next_attempt_at=next_attempt_at,
    )  # fmt: skip


def replay_event(job: Job, outcome: Mapping[str, Any]) -> Event:
    """The terminal event that answers `job` with the outcome stored under its idempotency key
    (the first job's terminal event, or the subset of its fields that older workers stored)."""
    error = ErrorInfo.model_validate(outcome["error"]) if outcome.get("error") else None
    return new_event(
        job.job_id, job.call.call_id, Status(outcome.get("status", Status.FAILED)), error=error,
        terminal=True, attempt=int(outcome.get("attempt", 0)), provider=outcome.get("provider"),
        provider_message_id=outcome.get("provider_message_id"), to=outcome.get("to"),
        from_=outcome.get("from_"), segments=outcome.get("segments"), encoding=outcome.get("encoding"),
        possible_duplicate=bool(outcome.get("possible_duplicate", False)),
    )  # fmt: skip


def malformed_event(job_id: str, call_id: str, problems: str) -> Event:
    """The `failed` of a job no worker can read, on the channel it names."""
    error = ErrorInfo(code=ErrorCode.INVALID_REQUEST, message=f"malformed job: {problems}"[:1000])
    return new_event(
        job_id, call_id, Status.FAILED, error=error,
        tool_message=tool_message(Status.FAILED, ErrorCode.INVALID_REQUEST),
    )  # fmt: skip


def delivery_event(
    mapping: Mapping[str, str],
    status: Status,
    *,
    error: ErrorInfo | None = None,
    provider_message_id: str | None = None,
) -> Event:
    """The event a receipt publishes, from the message's mapping (`sms:msg:…`, see
    `worker.outcomes`): never terminal (the job's `accepted` was), with the delivery tool message."""
    segments = mapping.get("segments")
    return new_event(
        mapping["job_id"], mapping["call_id"], status, error=error, terminal=False,
        tool_message=tool_message(status, error.code if error else None, error.message if error else None),
        attempt=int(mapping.get("attempt") or 0), provider=mapping.get("provider"),
        provider_message_id=provider_message_id or mapping.get("message_id"),
        to=mapping.get("to") or None, from_=mapping.get("from_") or None,
        segments=int(segments) if segments else None,
    )  # fmt: skip


def lua_xadd(stream: str, event_json: str) -> str:
    """Only the XADD of `lua_publish` (a caller that knows the channel's TTL is fresh)."""
    return f"redis.call('XADD', {stream}, 'MAXLEN', '~', {EVENTS_MAXLEN}, '*', '{EVENT_FIELD}', {event_json})"
