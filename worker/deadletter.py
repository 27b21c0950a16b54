"""The dead-letter list `sms:dead`: raw queue entries no worker can run, kept for inspection.

An entry on the `sms` queue that is not a task message this worker can run — not JSON, a body
that does not decode, bad base64, missing headers, an unknown task name, a message that keeps
killing the workers that take it — is moved here by the transport (`worker/transport.py`) or the
consumer (`worker/consumer.py`) instead of stopping the worker. Each one costs one log line
(`queue.dead_letter`: the reason, size and a hash, never the bytes) and one count in
`midcall_sms_dead_letters_total{reason}`.

Each list item is JSON: `at`, `reason`, `detail`, `queue`, `worker`, `size`, `sha256` (the first
16 hex digits of the raw entry's hash) and `raw` (the entry's bytes, base64). The list holds the
newest `SMS_DEAD_LETTER_MAX` entries and expires `SMS_DEAD_LETTER_TTL` seconds after the last one.
`midcall-sms dead list` shows summaries (never `raw`, which may hold phone numbers and texts);
`requeue` puts entries back on their queue (after a fix, e.g. a worker that knows the task);
`purge` deletes them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
import structlog

from producers.contract import DEAD_LETTER_KEY, QUEUE
from worker import metrics

log = structlog.get_logger("worker.deadletter")


@dataclass(frozen=True, slots=True)
class DeadLetterPolicy:
    max_entries: int = 10_000
    ttl_seconds: int = 7 * 24 * 3600


DEFAULT_POLICY = DeadLetterPolicy()


def fingerprint(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()[:16]


def entry(raw: bytes, *, reason: str, detail: str, queue: str, worker: str | None) -> str:
    return json.dumps(
        {
            "v": 1,
            "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "reason": reason,
            "detail": detail,
            "queue": queue,
            "worker": worker,
            "size": len(raw),
            "sha256": fingerprint(raw),
            "raw": base64.b64encode(raw).decode("ascii"),
        },
        separators=(",", ":"),
    )


def push(
    pipe: Any,
    raw: bytes,
    *,
    reason: str,
    detail: str,
    queue: str = QUEUE,
    worker: str | None = None,
    policy: DeadLetterPolicy = DEFAULT_POLICY,
) -> None:
    """Queue the dead-lettering of `raw` on `pipe` (a pipeline or a client), log it, count it."""
    pipe.lpush(DEAD_LETTER_KEY, entry(raw, reason=reason, detail=detail, queue=queue, worker=worker))
    pipe.ltrim(DEAD_LETTER_KEY, 0, policy.max_entries - 1)
    pipe.expire(DEAD_LETTER_KEY, policy.ttl_seconds)
    metrics.DEAD_LETTERS.labels(reason).inc()
    log.error(
        "queue.dead_letter", reason=reason, detail=detail, queue=queue, size=len(raw), sha256=fingerprint(raw)
    )


def _decode(item: bytes | str) -> dict[str, Any] | None:
    try:
        data = json.loads(item)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def raw_of(data: dict[str, Any]) -> bytes | None:
    try:
        return base64.b64decode(str(data.get("raw", "")), validate=True)
    except (binascii.Error, ValueError):
        return None


def _task_of(raw: bytes) -> tuple[str | None, str | None]:
    """The task name and id of a raw entry when it has readable headers (ids are not secret)."""
    try:
        message = json.loads(raw)
        headers = message.get("headers") if isinstance(message, dict) else None
    except (ValueError, UnicodeDecodeError):
        return None, None
    if not isinstance(headers, dict):
        return None, None
    task, task_id = headers.get("task"), headers.get("id")
    return (
        task[:100] if isinstance(task, str) else None,
        task_id[:100] if isinstance(task_id, str) else None,
    )


def summaries(client: redis.Redis, limit: int = 50) -> list[dict[str, Any]]:
    """The newest `limit` entries as summaries: no raw bytes, no body, no number."""
    out: list[dict[str, Any]] = []
    for index, item in enumerate(client.lrange(DEAD_LETTER_KEY, 0, max(limit, 1) - 1)):
        data = _decode(item) or {}
        raw = raw_of(data) or b""
        task, task_id = _task_of(raw)
        out.append(
            {
                "index": index,
                "at": data.get("at"),
                "reason": data.get("reason", "unreadable"),
                "detail": data.get("detail"),
                "queue": data.get("queue"),
                "size": data.get("size", len(raw)),
                "sha256": data.get("sha256"),
                "task": task,
                "id": task_id,
            }
        )
    return out


def count(client: redis.Redis) -> int:
    return int(client.llen(DEAD_LETTER_KEY))


def requeue(client: redis.Redis, limit: int | None = None) -> int:
    """Move the oldest `limit` entries (all when None) back onto their queue; returns how many.

    Each one moves atomically (RPOP from the dead list, LPUSH onto the queue in one transaction);
    an entry that is still poison comes back here when a worker reads it again.
    """
    moved = 0
    while limit is None or moved < limit:
        item = client.lindex(DEAD_LETTER_KEY, -1)
        if item is None:
            break
        data = _decode(item) or {}
        raw = raw_of(data)
        queue = str(data["queue"]) if isinstance(data.get("queue"), str) else QUEUE
        with client.pipeline(transaction=True) as pipe:
            pipe.lrem(DEAD_LETTER_KEY, -1, item)  # type: ignore[arg-type]
            if raw is not None:
                pipe.lpush(queue, raw)
            removed = pipe.execute()[0]
        if removed and raw is not None:
            moved += 1
    return moved


def purge(client: redis.Redis) -> int:
    """Delete every entry; returns how many there were."""
    with client.pipeline(transaction=True) as pipe:
        pipe.llen(DEAD_LETTER_KEY)
        pipe.delete(DEAD_LETTER_KEY)
        n, _ = pipe.execute()
    return int(n)
