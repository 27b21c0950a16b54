"""Effectively-once sends: an idempotency key claimed in Redis before the provider is called.

One Redis hash per key (`sms:idem:<key>`) walks through these states:

```
            claim (new)                                  finish
 (absent) ─────────────► calling ──── provider call ────────────► done (outcome stored)
            │               │  ▲
            │               │  └── takeover: the same job's retry, or a dead owner's lease ran out
            │               └─────► waiting   a retryable error: held for this job's next attempt
            └─► claimed     nothing will be sent (the plan failed, or the call's cap is reached)
```
- `done`: every later job with the key gets the stored outcome; nothing is sent again.
- `calling`/`claimed`/`waiting` with a live lease: another worker is on it; wait for its outcome.
- a lease that ran out means its worker died. Taking over from `calling` is the one window where
  the provider may have accepted already, so that send is flagged `possible_duplicate`.

A successful send costs two round trips here: `claim` (which also counts the per-call cap and
publishes the `sending` event) and `finish` (outcome + terminal event, one transaction). Lease
times use the Redis server's clock, so workers' clocks never disagree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import redis

from producers.contract import (
    EVENT_FIELD,
    EVENTS_MAXLEN,
    EVENTS_TTL_SECONDS,
    call_counter_key,
    events_key,
    idempotency_key,
)

# KEYS: idem hash, per-call counter, call's event stream.
# ARGV: job id, owner, lease ms, ttl s, cap (-1: none), `sending` event JSON ('' when the plan failed).
_CLAIM = f"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease_until = now + tonumber(ARGV[3])
local sending = ARGV[6]
local function enter(state)
  redis.call('HSET', KEYS[1], 'state', state, 'job_id', ARGV[1], 'owner', ARGV[2], 'lease_until', lease_until)
  if state == 'calling' then
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', {EVENTS_MAXLEN}, '*', '{EVENT_FIELD}', sending)
    redis.call('EXPIRE', KEYS[3], {EVENTS_TTL_SECONDS})
  end
end
local rec = redis.call('HMGET', KEYS[1], 'state', 'job_id', 'lease_until', 'outcome', 'ambiguous')
local state = rec[1]
if not state then
  local n = redis.call('INCR', KEYS[2])
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[4]))
  local cap = tonumber(ARGV[5])
  redis.call('HSET', KEYS[1], 'ambiguous', '0')
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
  if cap >= 0 and n > cap then
    enter('claimed')
    return {{'limit', tostring(n), '0', ''}}
  end
  enter(sending ~= '' and 'calling' or 'claimed')
  return {{'new', tostring(n), '0', ''}}
end
if state == 'done' then
  return {{'done', rec[2], rec[5] or '0', rec[4] or ''}}
end
if (state == 'waiting' and rec[2] == ARGV[1]) or tonumber(rec[3] or '0') < now then
  if state == 'calling' then redis.call('HSET', KEYS[1], 'ambiguous', '1') end
  local ambiguous = redis.call('HGET', KEYS[1], 'ambiguous') or '0'
  enter(sending ~= '' and 'calling' or 'claimed')
  return {{'takeover', state, ambiguous, ''}}
end
return {{'busy', tostring(tonumber(rec[3]) - now), rec[5] or '0', ''}}
"""

# KEYS: idem hash. ARGV: owner, new state, lease ms, ambiguous ('1' to set, '' to keep).
_TRANSITION = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'lease_until', now + tonumber(ARGV[3]))
if ARGV[4] == '1' then redis.call('HSET', KEYS[1], 'ambiguous', '1') end
return 1
"""

ClaimKind = Literal["new", "takeover", "limit", "done", "busy"]


@dataclass(frozen=True, slots=True)
class Claim:
    """The answer to a claim: what this job must do with its idempotency key."""

    kind: ClaimKind
    #: `new`/`limit`: how many distinct sends this call has now (for the per-call cap)
    call_count: int = 0
    #: `takeover`: the state the previous owner left (`calling`, `claimed` or `waiting`)
    previous_state: str | None = None
    #: an earlier attempt may have reached the provider: a send now may duplicate it
    ambiguous: bool = False
    #: `done`: the job that owned the key, and the stored outcome
    owner_job_id: str | None = None
    outcome: dict[str, Any] | None = None
    #: `busy`: milliseconds left on the other worker's lease
    lease_left_ms: int = 0

    @property
    def owned(self) -> bool:
        """This job now holds the key (and, with a plan, is in the `calling` state)."""
        return self.kind in ("new", "takeover", "limit")


class IdempotencyStore:
    def __init__(self, client: redis.Redis, *, ttl: int, lease_seconds: float) -> None:
        self._redis = client
        self._ttl = ttl
        self._lease_ms = int(lease_seconds * 1000)
        self._claim = client.register_script(_CLAIM)
        self._transition = client.register_script(_TRANSITION)

    def claim(
        self,
        key: str,
        *,
        job_id: str,
        owner: str,
        call_id: str,
        cap: int | None = None,
        sending: str | None = None,
    ) -> Claim:
        """Claim `key` for `job_id`. With a `sending` event (the plan succeeded), enter `calling`
        and publish it in the same call; `cap` is the call's limit of distinct sends (None: none)."""
        kind, a, ambiguous, outcome = (
            _text(v)
            for v in self._claim(
                keys=[idempotency_key(key), call_counter_key(call_id), events_key(call_id)],
                args=[job_id, owner, self._lease_ms, self._ttl, -1 if cap is None else cap, sending or ""],
            )
        )
        flag = ambiguous == "1"
        if kind in ("new", "limit"):
            return Claim(kind, call_count=int(a))  # type: ignore[arg-type]
        if kind == "done":
            return Claim(
                "done", owner_job_id=a, ambiguous=flag, outcome=json.loads(outcome) if outcome else None
            )
        if kind == "takeover":
            return Claim("takeover", previous_state=a, ambiguous=flag)
        return Claim("busy", lease_left_ms=max(int(a), 0), ambiguous=flag)

    def mark_calling(self, key: str, *, owner: str) -> None:
        """Enter the window where the provider may accept (the fallback's send)."""
        self._transition(keys=[idempotency_key(key)], args=[owner, "calling", self._lease_ms, ""])

    def mark_waiting(self, key: str, *, owner: str, ambiguous: bool, hold_seconds: float) -> None:
        """A retryable error: hold the key for this job's next attempt (other jobs keep waiting)."""
        lease_ms = int(hold_seconds * 1000) + self._lease_ms
        self._transition(
            keys=[idempotency_key(key)], args=[owner, "waiting", lease_ms, "1" if ambiguous else ""]
        )

    def finish(self, pipe: Any, key: str, outcome: dict[str, Any]) -> None:
        """Store the outcome (queued on `pipe`, in the same transaction as the terminal event)."""
        name = idempotency_key(key)
        pipe.hset(name, mapping={"state": "done", "outcome": json.dumps(outcome, separators=(",", ":"))})
        pipe.expire(name, self._ttl)

    def release_count(self, pipe: Any, call_id: str) -> None:
        """Nothing was sent: give the per-call quota back (queued on `pipe`)."""
        pipe.decr(call_counter_key(call_id))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
