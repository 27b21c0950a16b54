"""Effectively-once sends: an idempotency key claimed in Redis before the provider is called.

One Redis hash per key (`sms:idem:<key>`) walks through these states:

```
            claim (new)                mark_calling              finish
 (absent) ─────────────► claimed ───────────────────► calling ─────────► done (outcome stored)
                            ▲                            │
                            └──── waiting ◄──────────────┘ retryable error: the same job retries
```
- `done`: every later job with the key gets the stored outcome; nothing is sent again.
- `claimed`/`calling` with a live lease: another worker is on it; wait for its outcome.
- a lease that ran out means its worker died. Taking over from `claimed` is safe (the provider
  was never called); taking over from `calling` is the one window where the provider may have
  accepted already, so that send is flagged `possible_duplicate`.

Lease times use the Redis server's clock, so workers' clocks never disagree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import redis

from producers.contract import call_counter_key, idempotency_key

# KEYS: idem hash, per-call counter. ARGV: job id, owner, lease ms, ttl s.
_CLAIM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease_until = now + tonumber(ARGV[3])
local rec = redis.call('HMGET', KEYS[1], 'state', 'job_id', 'lease_until', 'outcome', 'ambiguous', 'counted')
local state = rec[1]
if not state then
  local n = redis.call('INCR', KEYS[2])
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[4]))
  redis.call('HSET', KEYS[1], 'state', 'claimed', 'job_id', ARGV[1], 'owner', ARGV[2],
             'lease_until', lease_until, 'ambiguous', '0', 'counted', '1')
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
  return {'new', tostring(n), '0', ''}
end
if state == 'done' then
  return {'done', rec[2], rec[5] or '0', rec[4] or ''}
end
local expired = tonumber(rec[3] or '0') < now
if (state == 'waiting' and rec[2] == ARGV[1]) or expired then
  redis.call('HSET', KEYS[1], 'state', 'claimed', 'job_id', ARGV[1], 'owner', ARGV[2],
             'lease_until', lease_until)
  if state == 'calling' then
    redis.call('HSET', KEYS[1], 'ambiguous', '1')
    return {'takeover', state, '1', ''}
  end
  return {'takeover', state, rec[5] or '0', ''}
end
return {'busy', tostring(tonumber(rec[3]) - now), rec[5] or '0', ''}
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

ClaimKind = Literal["new", "takeover", "done", "busy"]


@dataclass(frozen=True, slots=True)
class Claim:
    """The answer to a claim: what this job must do with its idempotency key."""

    kind: ClaimKind
    #: `new`: how many distinct sends this call has now (for the per-call cap)
    call_count: int = 0
    #: `takeover`: the state the dead owner left (`claimed`, `calling` or `waiting`)
    previous_state: str | None = None
    #: an earlier attempt may have reached the provider: a send now may duplicate it
    ambiguous: bool = False
    #: `done`: the job that owned the key, and the stored outcome
    owner_job_id: str | None = None
    outcome: dict[str, Any] | None = None
    #: `busy`: milliseconds left on the other worker's lease
    lease_left_ms: int = 0


class IdempotencyStore:
    def __init__(self, client: redis.Redis, *, ttl: int, lease_seconds: float) -> None:
        self._redis = client
        self._ttl = ttl
        self._lease_ms = int(lease_seconds * 1000)
        self._claim = client.register_script(_CLAIM)
        self._transition = client.register_script(_TRANSITION)

    def claim(self, key: str, *, job_id: str, owner: str, call_id: str) -> Claim:
        kind, a, ambiguous, outcome = (
            _text(v) for v in self._claim(
                keys=[idempotency_key(key), call_counter_key(call_id)],
                args=[job_id, owner, self._lease_ms, self._ttl],
            )
        )  # fmt: skip
        flag = ambiguous == "1"
        if kind == "new":
            return Claim("new", call_count=int(a))
        if kind == "done":
            return Claim(
                "done", owner_job_id=a, ambiguous=flag, outcome=json.loads(outcome) if outcome else None
            )
        if kind == "takeover":
            return Claim("takeover", previous_state=a, ambiguous=flag)
        return Claim("busy", lease_left_ms=max(int(a), 0), ambiguous=flag)

    def mark_calling(self, key: str, *, owner: str, pipe: Any = None) -> None:
        """Enter the window where the provider may accept: a takeover from here is flagged."""
        self._transition(
            keys=[idempotency_key(key)], args=[owner, "calling", self._lease_ms, ""], client=pipe
        )

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
