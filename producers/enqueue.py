"""Putting a job on the queue so that the producer always knows whether it is there.

A push whose answer does not come back in time leaves the producer not knowing whether Redis ran
it (it may have, and only the answer was slow; or it may run it later, from a buffer). So each
push is fenced by a per-job key, `sms:enq:<job_id>`, and one Lua call does all of it:

- `ENQUEUE`: unless the fence exists, add the `queued` event, push the task message and set the
  fence to the event's stream id. A fence already there means an earlier try of this same job was
  queued (its id is returned) or the job was retracted (nothing is pushed).
- `RETRACT`, run when the push timed out: with no fence, set it to `retracted` — a push arriving
  later does nothing — and the job is certainly not queued. With a fence, take the exact task
  message off the list: removed, it is certainly not queued either (a terminal `failed` event
  says so on the call's channel); not on the list any more, a worker already has it, so it is
  queued and its outcome comes as usual.

Either way `send()` answers from a known state: `pending` only for a job in Redis, `failed`
"not queued" only for a job that will never be sent. The one unknown left is a Redis that answers
neither the push nor the retraction within their budgets (README, "Sending from a live call").
Producers in other languages may keep pushing with a plain `LPUSH`: workers never look at fences.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, Literal

from producers.contract import (
    QUEUE,
    ErrorCode,
    ErrorInfo,
    Event,
    Job,
    Status,
    as_text,
    events_key,
    mask_number,
    tool_message,
    utcnow,
)
from producers.events import lua_publish, new_event
from producers.results import SendResult

#: Seconds a fence outlives its job's `expires_at`: a push Redis runs after the fence is gone can
#: only reach a worker after the job expired, and an expired job is never sent (it fails `expired`).
FENCE_MARGIN = 60
RETRACTED = "retracted"
#: Appended to the reason when not even the retraction got an answer: the one unknown left.
UNCONFIRMED = "; Redis did not confirm it, so a push it received late could still be sent"


def retract_budget(enqueue_timeout: float) -> float:
    """Seconds a retraction may take: the enqueue's budget, and at least one second."""
    return max(enqueue_timeout, 1.0)


def fence_ttl(job: Job) -> int:
    """Seconds to keep the job's fence: until it expires, plus `FENCE_MARGIN`."""
    return max(1, math.ceil((job.expires_at - utcnow()).total_seconds())) + FENCE_MARGIN


def fence_key(job_id: str) -> str:
    return f"sms:enq:{job_id}"


def keys(job_id: str, call_id: str) -> list[str]:
    """KEYS of both scripts: the fence, the call's event stream, the queue."""
    return [fence_key(job_id), events_key(call_id), QUEUE]


# ARGV: queued event JSON, task message, fence TTL. Returns {'queued'|'exists', stream id or 'retracted'}.
ENQUEUE = f"""
local fence = redis.call('GET', KEYS[1])
if fence then return {{'exists', fence}} end
{lua_publish("KEYS[2]", "ARGV[1]", id_var="id")}
redis.call('LPUSH', KEYS[3], ARGV[2])
redis.call('SET', KEYS[1], id, 'EX', tonumber(ARGV[3]))
return {{'queued', id}}
"""

#: The SHA1 `EVALSHA` names the script by.
ENQUEUE_SHA = hashlib.sha1(ENQUEUE.encode()).hexdigest()

# ARGV: task message, terminal `failed` event JSON, fence TTL.
# Returns {'fenced'|'retracted'|'taken', stream id of the queued event or ''}.
RETRACT = f"""
local fence = redis.call('GET', KEYS[1])
if not fence or fence == '{RETRACTED}' then
  redis.call('SET', KEYS[1], '{RETRACTED}', 'EX', tonumber(ARGV[3]))
  return {{'fenced', ''}}
end
if redis.call('LREM', KEYS[3], 1, ARGV[1]) == 1 then
  redis.call('SET', KEYS[1], '{RETRACTED}', 'EX', tonumber(ARGV[3]))
{lua_publish("KEYS[2]", "ARGV[2]")}
  return {{'retracted', fence}}
end
return {{'taken', fence}}
"""

Retraction = Literal["fenced", "retracted", "taken"]


def enqueue_answer(reply: Any) -> str | None:
    """The `queued` event's stream id from an `ENQUEUE` reply, or None when the job was retracted."""
    _, value = (as_text(part) for part in reply)
    return None if value == RETRACTED else value


def retract_answer(reply: Any) -> tuple[Retraction, str]:
    kind, value = (as_text(part) for part in reply)
    assert kind in ("fenced", "retracted", "taken"), kind
    return kind, value  # type: ignore[return-value]


def _error(reason: str) -> ErrorInfo:
    return ErrorInfo(
        code=ErrorCode.PROVIDER_UNAVAILABLE, message=f"the SMS was not queued: {reason}", retryable=True
    )


def unreachable(exc: BaseException) -> str:
    return f"the SMS queue (Redis) is unreachable ({type(exc).__name__})"


def not_queued(job: Job, reason: str) -> SendResult:
    """The result for a job that is not queued: `failed` / `provider_unavailable`, nothing sent.

    `reason` says why, without secrets or numbers ("the SMS queue (Redis) did not answer within 1 s").
    """
    return SendResult(
        job_id=job.job_id,
        status="failed",
        tool_message=tool_message(Status.FAILED, ErrorCode.PROVIDER_UNAVAILABLE),
        error=_error(reason),
    )


def not_queued_event(job: Job, reason: str) -> Event:
    """The terminal event a retraction publishes after the job's `queued` event."""
    to = mask_number(job.to)
    return new_event(job.job_id, job.call.call_id, Status.FAILED, error=_error(reason), to=to)


def after_retract(job: Job, reply: Any, reason: str) -> str | SendResult:
    """A retraction's answer: the `queued` event's id when a worker has the job, else `not queued`."""
    kind, queued_id = retract_answer(reply)
    if kind == "taken":
        return queued_id
    return not_queued(job, reason)
