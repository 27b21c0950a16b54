"""Stream ids and raw `XREAD` replies, without I/O: what both clients' readers share.

The readers read with a connection's own `read_response()` (no redis-py reply callback), so a
reply is RESP2 (`[[key, [[id, [field, value, …]], …]], …]`) or RESP3 (`{key: [[id, […]], …]}`),
its strings bytes or str depending on the client's `decode_responses`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import ValidationError

from producers.contract import EVENT_FIELD, Event, as_text

StreamId = tuple[int, int]
_EVENT_FIELDS = (EVENT_FIELD, EVENT_FIELD.encode())


def parse_id(value: str) -> StreamId:
    """`"1700000000000-3"` as `(1700000000000, 3)`, for ordering ids ("0" is `(0, 0)`)."""
    ms, _, seq = value.partition("-")
    return int(ms), int(seq or 0)


def format_id(value: StreamId) -> str:
    return f"{value[0]}-{value[1]}"


def raw_streams(reply: Any) -> Iterable[tuple[Any, Sequence[Any]]]:
    """`(key, entries)` of a raw XREAD reply (RESP2 or RESP3); nothing for a timed-out read."""
    if not reply:
        return ()
    if isinstance(reply, dict):
        return reply.items()
    return ((stream[0], stream[1]) for stream in reply)


def event_json(fields: Any) -> Any:
    """The `event` field's value from a raw entry's flat `[field, value, …]` list, or None."""
    if not fields:
        return None
    if isinstance(fields, dict):
        return fields.get(EVENT_FIELD, fields.get(EVENT_FIELD.encode()))
    for i in range(0, len(fields) - 1, 2):
        if fields[i] in _EVENT_FIELDS:
            return fields[i + 1]
    return None


def parse_raw_entries(entries: Sequence[Any]) -> list[tuple[str, StreamId, Event | None]]:
    """Each raw entry as `(id, parsed id, Event)`; the event is None for an entry that is not one,
    or not a valid one (readers move past it: a foreign entry must not break everyone's waits)."""
    parsed: list[tuple[str, StreamId, Event | None]] = []
    for entry_id, fields in entries:
        sid = as_text(entry_id)
        raw = event_json(fields)
        event = None
        if raw is not None:
            try:
                event = Event.model_validate_json(raw)
            except ValidationError:
                event = None
        parsed.append((sid, parse_id(sid), event))
    return parsed
