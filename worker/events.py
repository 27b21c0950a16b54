"""Publishing events on a call's result channel (a Redis Stream with a TTL)."""

from __future__ import annotations

from typing import Any

from producers.contract import EVENT_FIELD, EVENTS_MAXLEN, EVENTS_TTL_SECONDS, Event, events_key


def publish(pipe: Any, event: Event) -> None:
    """Queue the event on `pipe` (a pipeline or a client): XADD, then refresh the channel's TTL."""
    key = events_key(event.call_id)
    pipe.xadd(key, {EVENT_FIELD: event.dumps()}, maxlen=EVENTS_MAXLEN, approximate=True)
    pipe.expire(key, EVENTS_TTL_SECONDS)
