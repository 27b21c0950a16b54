"""A call's result channel as the clients read it (redis-py replies), and the `queued` event."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from producers.contract import EVENT_FIELD, Event, Job, Status, as_text, mask_number
from producers.events import new_event


def queued_event(job: Job) -> Event:
    return new_event(job.job_id, job.call.call_id, Status.QUEUED, to=mask_number(job.to))


def parse_entries(entries: Iterable[Sequence[Any]]) -> list[tuple[str, Event]]:
    """Stream entries `[(id, {field: value})]` as `(id, Event)`; entries that are not events are skipped."""
    parsed: list[tuple[str, Event]] = []
    for entry_id, fields in entries:
        raw = fields.get(EVENT_FIELD) if isinstance(fields, dict) else None
        if raw is None:
            raw = fields.get(EVENT_FIELD.encode()) if isinstance(fields, dict) else None
        if raw is None:
            continue
        parsed.append((as_text(entry_id), Event.model_validate_json(raw)))
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
