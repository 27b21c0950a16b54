"""Publishing events on a call's result channel (a Redis Stream with a TTL): the one writer.

`publish` queues the write on a pipeline or client; `lua_publish` is the same write inside a Lua
script (the claim and the receipt ranking publish atomically with their own checks);
`delivery_event` is the factory of receipt events.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from producers.contract import (
    EVENT_FIELD,
    EVENTS_MAXLEN,
    EVENTS_TTL_SECONDS,
    ErrorInfo,
    Event,
    Status,
    events_key,
    tool_message,
    utcnow,
)


def publish(pipe: Any, event: Event) -> None:
    """Queue the event on `pipe` (a pipeline or a client): XADD, then refresh the channel's TTL."""
    key = events_key(event.call_id)
    pipe.xadd(key, {EVENT_FIELD: event.dumps()}, maxlen=EVENTS_MAXLEN, approximate=True)
    pipe.expire(key, EVENTS_TTL_SECONDS)


def lua_publish(stream: str, event_json: str) -> str:
    """The same write as `publish`, as Lua statements: `stream` and `event_json` are Lua
    expressions (`KEYS[2]`, `ARGV[3]`)."""
    xadd = f"redis.call('XADD', {stream}, 'MAXLEN', '~', {EVENTS_MAXLEN}, '*', '{EVENT_FIELD}', {event_json})"
    return f"  {xadd}\n  redis.call('EXPIRE', {stream}, {EVENTS_TTL_SECONDS})"


def delivery_event(
    mapping: Mapping[str, str],
    status: Status,
    *,
    error: ErrorInfo | None = None,
    provider_message_id: str | None = None,
) -> Event:
    """The event a receipt publishes, from the message's mapping (`sms:msg:…`, see
    `worker.service`): never terminal (the job's `accepted` was), with the delivery tool message."""
    segments = mapping.get("segments")
    return Event(
        job_id=mapping["job_id"],
        call_id=mapping["call_id"],
        status=status,
        terminal=False,
        at=utcnow(),
        attempt=int(mapping.get("attempt") or 0),
        provider=mapping.get("provider"),
        provider_message_id=provider_message_id or mapping.get("message_id"),
        to=mapping.get("to") or None,
        from_=mapping.get("from_") or None,
        segments=int(segments) if segments else None,
        error=error,
        tool_message=tool_message(status, error.code if error else None, error.message if error else None),
    )
