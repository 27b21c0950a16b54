"""The one event factory and the one stream writer of a call's result channel.

Every event, whoever publishes it (the producer's `queued` and its retraction's `failed`, the
worker's outcomes, the receipts' delivery events), is made by `new_event` and written by `publish`
(on a client or a pipeline) or, inside a Lua script, by the statements `lua_publish` returns:
`XADD` with an approximate `MAXLEN`, then the channel's TTL refreshed. The worker imports this
module (`worker/events.py`); this module imports nothing from the worker.
"""

from __future__ import annotations

from typing import Any

from producers.contract import (
    EVENT_FIELD,
    EVENTS_MAXLEN,
    EVENTS_TTL_SECONDS,
    TERMINAL_STATUSES,
    ErrorInfo,
    Event,
    Status,
    events_key,
    tool_message,
    utcnow,
)


def new_event(
    job_id: str,
    call_id: str,
    status: Status,
    *,
    error: ErrorInfo | None = None,
    terminal: bool | None = None,
    tool_message: str | None = None,
    **fields: Any,
) -> Event:
    """An event of `job_id` on `call_id`'s channel, stamped now.

    `terminal` defaults to whether `status` ends a job (`accepted`, `failed`); `tool_message` to
    the sentence for the status and the error (`producers.contract.tool_message`: the error's
    code, its message as the detail, its cause). `fields` are the event's other fields
    (`attempt`, `provider`, `provider_message_id`, `to` — masked —, `from_`, `segments`,
    `encoding`, `possible_duplicate`, `next_attempt_at`).
    """
    if tool_message is None:
        tool_message = _sentence(status, error)
    return Event(
        job_id=job_id,
        call_id=call_id,
        status=status,
        terminal=status in TERMINAL_STATUSES if terminal is None else terminal,
        at=utcnow(),
        error=error,
        tool_message=tool_message,
        **fields,
    )


def _sentence(status: Status, error: ErrorInfo | None) -> str:
    if error is None:
        return tool_message(status)
    return tool_message(status, error.code, error.message, error.cause)


def publish(pipe: Any, event: Event) -> None:
    """Queue the event on `pipe` (a pipeline or a client): XADD, then refresh the channel's TTL."""
    key = events_key(event.call_id)
    pipe.xadd(key, {EVENT_FIELD: event.dumps()}, maxlen=EVENTS_MAXLEN, approximate=True)
    pipe.expire(key, EVENTS_TTL_SECONDS)


def lua_publish(stream: str, event_json: str, *, id_var: str | None = None) -> str:
    """The same write as `publish`, as Lua statements: `stream` and `event_json` are Lua
    expressions (`KEYS[2]`, `ARGV[3]`); with `id_var`, the new entry's id goes into that local."""
    xadd = f"redis.call('XADD', {stream}, 'MAXLEN', '~', {EVENTS_MAXLEN}, '*', '{EVENT_FIELD}', {event_json})"
    if id_var is not None:
        xadd = f"local {id_var} = {xadd}"
    return f"  {xadd}\n  redis.call('EXPIRE', {stream}, {EVENTS_TTL_SECONDS})"
