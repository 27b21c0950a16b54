"""The audit trail of a call's texts: what was sent, to whom (masked), and every status it went through.

Read from what the worker already writes: the call's event stream (every status with its time,
receipts included), the job summaries recorded with each outcome (`sms:calljobs:<call_id>`), and
each message's raw receipt log (`sms:receipts:<provider>:<id>`, duplicates and stale ones too).
No full number and no message text unless they were recorded with `SMS_AUDIT_BODIES=true` and are
asked for (`bodies=True`). `midcall-sms trail CALL_ID` prints it; the HTTP service serves it as JSON.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import redis

from producers.channel import parse_entries
from producers.contract import (
    DELIVERY_STATUSES,
    TERMINAL_STATUSES,
    Event,
    as_text,
    call_jobs_key,
    events_key,
)
from worker import receipts

#: Fields of a job summary shown only with bodies.
_BODY_FIELDS = ("body", "to_number")


def call_messages(client: redis.Redis, call_id: str, *, bodies: bool = False) -> list[dict[str, Any]]:
    """Per job of the call, oldest first: template name, masked recipient, segments, attempts,
    provider, message id, its final status, and `timeline` (every event with its time) and
    `receipts` (every raw receipt, with what became of it)."""
    entries: Any = client.xrange(events_key(call_id))
    summaries: Any = client.hgetall(call_jobs_key(call_id))
    jobs: dict[str, list[Event]] = {}
    for _, event in parse_entries(entries):
        jobs.setdefault(event.job_id, []).append(event)
    recorded = {as_text(k): json.loads(as_text(v)) for k, v in summaries.items()}
    trail: list[dict[str, Any]] = []
    for job_id, job_events in jobs.items():
        trail.append(_job(client, job_id, job_events, recorded.get(job_id, {}), bodies=bodies))
    return trail


def _job(
    client: redis.Redis, job_id: str, job_events: list[Event], summary: dict[str, Any], *, bodies: bool
) -> dict[str, Any]:
    terminal = next((e for e in job_events if e.status in TERMINAL_STATUSES), None)
    deliveries = [e for e in job_events if e.status in DELIVERY_STATUSES]
    last = deliveries[-1] if deliveries else terminal or job_events[-1]
    with_segments = [e.segments for e in job_events if e.segments is not None]
    provider = terminal.provider if terminal else next((e.provider for e in job_events if e.provider), None)
    message_id = terminal.provider_message_id if terminal else None
    record: dict[str, Any] = {
        "job_id": job_id,
        "template": summary.get("template"),
        "free_text": summary.get("free_text"),
        "agent_id": summary.get("agent_id"),
        "connection": summary.get("connection"),
        "to": summary.get("to") or next((e.to for e in job_events if e.to), None),
        "segments": with_segments[-1] if with_segments else None,
        "attempts": max(e.attempt for e in job_events),
        "provider": provider,
        "provider_message_id": message_id,
        "status": last.status.value,
        "error": last.error.model_dump(mode="json", exclude_none=True) if last.error else None,
        "body_chars": summary.get("body_chars"),
        "body_sha256": summary.get("body_sha256"),
        "timeline": [_step(e) for e in job_events],
        "receipts": [],
    }
    if bodies:
        record.update({name: summary[name] for name in _BODY_FIELDS if name in summary})
    if provider and message_id:
        record["receipts"] = [
            {
                "at": datetime.fromtimestamp(entry["at_ms"] / 1000, UTC).isoformat(),
                "status": entry.get("status"),
                "source": entry.get("source"),
                "result": entry.get("result"),
                "was_parked": entry.get("was_parked", False),
                "error": entry.get("error"),
                "occurred_at": entry.get("occurred_at"),
                "raw": entry.get("raw"),
            }
            for entry in receipts.receipt_log(client, provider, message_id)
        ]
    return record


def _step(event: Event) -> dict[str, Any]:
    step: dict[str, Any] = {
        "at": event.at.isoformat(),
        "status": event.status.value,
        "attempt": event.attempt,
    }
    if event.error is not None:
        step["error"] = event.error.model_dump(mode="json", exclude_none=True)
    if event.possible_duplicate:
        step["possible_duplicate"] = True
    step["tool_message"] = event.tool_message
    return step


def render(trail: list[dict[str, Any]], call_id: str) -> str:
    """The trail as text, one block per job (what `midcall-sms trail` prints)."""
    if not trail:
        return f"call {call_id}: no texts"
    lines = [f"call {call_id}: {len(trail)} text(s)"]
    for job in trail:
        what = f"template {job['template']}" if job.get("template") else "free text"
        size = f"{job['body_chars']} chars" if job.get("body_chars") is not None else ""
        segments = job.get("segments")
        parts = f"{segments} segment{'s' if segments != 1 else ''}" if segments else ""
        via = f"via {job['provider']}" if job.get("provider") else ""
        if job.get("connection"):
            via += f" ({job['connection']})"
        head = "  ".join(
            x for x in (f"job {job['job_id']}", what, size, f"to {job.get('to') or '?'}", via, parts,
                        f"attempts {job['attempts']}", f"→ {job['status']}") if x
        )  # fmt: skip
        lines.append(head)
        if job.get("provider_message_id"):
            lines.append(f"  message id {job['provider_message_id']}")
        if job.get("body") is not None:
            lines.append(f"  body: {job['body']!r}")
        for step in job["timeline"]:
            error = step.get("error") or {}
            reason = f"  {error['code']}" if error else ""
            if error.get("provider_code"):
                reason += f" ({error['provider_code']})"
            lines.append(f"  {step['at']}  {step['status']:<11} attempt {step['attempt']}{reason}")
        for receipt in job["receipts"]:
            error = receipt.get("error") or {}
            code = f"  {error.get('provider_code')}" if error.get("provider_code") else ""
            parked = ", was parked" if receipt.get("was_parked") else ""
            what = f"receipt {receipt['status']} ({receipt['source']}){code}"
            lines.append(f"  {receipt['at']}  {what} → {receipt['result']}{parked}")
    return "\n".join(lines)
