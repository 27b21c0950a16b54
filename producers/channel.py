"""Reading and writing a call's result channel (a Redis Stream), shared by both clients."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from producers.contract import (
    EVENT_FIELD,
    EVENTS_MAXLEN,
    EVENTS_TTL_SECONDS,
    Event,
    Job,
    Status,
    events_key,
    mask_number,
    tool_message,
    utcnow,
)


def queued_event(job: Job) -> Event:
    return Event(
        job_id=job.job_id,
        call_id=job.call.call_id,
        status=Status.QUEUED,
        terminal=False,
        at=utcnow(),
        to=mask_number(job.to),
        tool_message=tool_message("pending"),
    )


def xadd_args(event: Event) -> tuple[str, dict[str, str]]:
    return events_key(event.call_id), {EVENT_FIELD: event.dumps()}


XADD_OPTIONS: dict[str, Any] = {"maxlen": EVENTS_MAXLEN, "approximate": True}
TTL = EVENTS_TTL_SECONDS


def stream_id(value: Any) -> str:
    """A stream entry id as text (redis-py returns bytes or str depending on decoding)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def parse_entries(entries: Iterable[Sequence[Any]]) -> list[tuple[str, Event]]:
    """Stream entries `[(id, {field: value})]` as `(id, Event)`; entries that are not events are skipped."""
    parsed: list[tuple[str, Event]] = []
    for entry_id, fields in entries:
        raw = fields.get(EVENT_FIELD) if isinstance(fields, dict) else None
        if raw is None:
            raw = fields.get(EVENT_FIELD.encode()) if isinstance(fields, dict) else None
        if raw is None:
            continue
        sid = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
        parsed.append((sid, Event.model_validate_json(raw)))
    return parsed


def reply_entries(reply: Any) -> list[Any]:
    """The entries of a one-stream XREAD reply, RESP2 (`[[key, entries]]`) or RESP3 (`{key: [entries]}`)."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return [entry for entries in reply.values() for entry in entries[0]] if reply else []
    return list(reply[0][1])


def absorb(job_id: str, reply: Any, seen: list[Event], last_id: str) -> tuple[str, bool]:
    """Fold one XREAD reply into `seen` (events of `job_id`); returns the new last id and
    whether a terminal event arrived."""
    for entry_id, event in parse_entries(reply_entries(reply)):
        last_id = entry_id
        if event.job_id == job_id:
            seen.append(event)
            if event.terminal:
                return last_id, True
    return last_id, False
