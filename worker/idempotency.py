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
- a lease that ran out means its worker died; so does a `calling`/`claimed` claim whose owner's
  heartbeat (`worker/liveness.py`) is gone, which is taken over at once instead of after the
  lease (not within `SMS_HEARTBEAT_TTL` s of a Redis restart, which loses heartbeats; not for
  `waiting`, whose lease is the retry's own wait). Taking over from `calling` is the one window
  where the provider may have accepted already, so that send is flagged `possible_duplicate`.

The claim also applies the send policies, in the same script: the opt-out list
(`worker/optout.py`), the per-call cap, the per-recipient cap (a sorted set per agent and
recipient hash, sliding window) and the sending number's rate (GCRA: a send over the rate gets its
slot reserved and waits in `waiting` until then, or is refused when the slot comes at or after the
job's deadline). A refused send ends `claimed`; nothing is sent.

A successful send costs two round trips: `claim` (which also counts the caps, checks the opt-out
list and the rate, and publishes the `sending` event) and the outcome (`worker/outcomes.py`: the
key's `done` + the terminal event in one script; `finish`/`release_count` here are the same writes
for a pipeline). Lease times use the Redis server's clock, so workers' clocks never disagree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import redis

from producers.contract import (
    EVENTS_TTL_SECONDS,
    as_text,
    call_counter_key,
    events_key,
    idempotency_key,
)
from worker import events
from worker.liveness import alive_key_of_owner

# KEYS: idem hash, per-call counter, call's event stream, the claiming owner's heartbeat key, then
#       (always the last three) the policy keys: the connection's opt-out hash, the recipient's cap
#       (sorted set), the sender's GCRA state.
# ARGV: job id, owner, lease ms, ttl s, cap (-1: none), `sending` event JSON ('' when the plan failed),
#       heartbeat TTL s, '1' when the call's stream TTL must be refreshed with `sending` ('' : it is
#       fresh), '1' when the owner's heartbeat is known to beat (its key is stored without a check),
#       then (always the last nine, see `Policies`) opt-out field for the sending
#       number, opt-out field for the whole connection, recipient cap member, cap count (-1: none), cap
#       window ms, GCRA interval ms per unit (0: no limit), GCRA tolerance ms, units, ms left before the
#       deadline.
_CLAIM = f"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease_until = now + tonumber(ARGV[3])
local sending = ARGV[6]
local NK, NA = #KEYS, #ARGV
local K_OPTOUT, K_RCPT, K_RATE = KEYS[NK - 2], KEYS[NK - 1], KEYS[NK]
local rec = redis.call('HMGET', KEYS[1], 'state', 'job_id', 'lease_until', 'outcome', 'ambiguous', 'alive',
  'slot')
-- `fresh`: the key is new; its first write also sets its `ambiguous` flag and its TTL.
local fresh = false
local function enter(state, until_ms)
  -- The owner's heartbeat key, when it has one: a claim whose heartbeat goes can be taken over.
  local alive = KEYS[4]
  if ARGV[9] ~= '1' and redis.call('EXISTS', KEYS[4]) == 0 then alive = '' end
  if fresh then
    redis.call('HSET', KEYS[1], 'state', state, 'job_id', ARGV[1], 'owner', ARGV[2],
      'lease_until', until_ms or lease_until, 'alive', alive, 'ambiguous', '0')
    redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
    fresh = false
  else
    redis.call('HSET', KEYS[1], 'state', state, 'job_id', ARGV[1], 'owner', ARGV[2],
      'lease_until', until_ms or lease_until, 'alive', alive)
  end
  if state == 'calling' then
    {events.lua_xadd("KEYS[3]", "sending")}
    if ARGV[8] == '1' then redis.call('EXPIRE', KEYS[3], {EVENTS_TTL_SECONDS}) end
  end
end
-- Policies run only for a job that will send (a plan, so a `sending` event).
local function opted_out()
  if sending == '' then return false end
  local by_sender, by_connection = ARGV[NA - 8], ARGV[NA - 7]
  if by_sender == '' and by_connection == '' then return false end
  -- One read for both fields ('' stands for none: never a field of the list).
  local found = redis.call('HMGET', K_OPTOUT, by_sender, by_connection)
  return (by_sender ~= '' and found[1] ~= false) or (by_connection ~= '' and found[2] ~= false)
end
local function recipient_full()
  local count, window = tonumber(ARGV[NA - 5]), tonumber(ARGV[NA - 4])
  if sending == '' or count < 0 then return false end
  -- Members past the window are removed only when the set looks full (it never holds more than
  -- `count` members in all, so below that no pruning can change the answer).
  if redis.call('ZCARD', K_RCPT) >= count then
    redis.call('ZREMRANGEBYSCORE', K_RCPT, '-inf', now - window)
    if redis.call('ZCARD', K_RCPT) >= count then return true end
  end
  redis.call('ZADD', K_RCPT, now, ARGV[NA - 6])
  redis.call('PEXPIRE', K_RCPT, window)
  return false
end
-- GCRA: ms until this message's slot (0: now), its slot reserved; -1 when the slot would come at or
-- after the job's deadline (nothing reserved).
local function rate_wait()
  local interval = tonumber(ARGV[NA - 3])
  if sending == '' or interval <= 0 then return 0 end
  local tat = tonumber(redis.call('GET', K_RATE) or '0')
  if tat < now then tat = now end
  local wait = tat - tonumber(ARGV[NA - 2]) - now
  if wait < 0 then wait = 0 end
  if wait > 0 and wait >= tonumber(ARGV[NA]) then return -1 end
  local new_tat = tat + interval * tonumber(ARGV[NA - 1])
  redis.call('SET', K_RATE, string.format('%.3f', new_tat), 'PX', math.ceil(new_tat - now) + 1000)
  return math.ceil(wait)
end
-- The last step of a claim that may send: the slot reserved by an earlier attempt, or the GCRA.
local function go(kind, a, ambiguous)
  local slot = tonumber(rec[7] or '')
  local wait
  if slot and sending ~= '' then
    wait = slot - now
    if wait <= 50 then
      wait = 0
      redis.call('HDEL', KEYS[1], 'slot')
    end
  else
    wait = rate_wait()
    if wait > 0 then redis.call('HSET', KEYS[1], 'slot', now + wait) end
  end
  if wait < 0 then
    enter('claimed')
    return {{'rate_refused', '0', ambiguous, ''}}
  end
  if wait > 0 then
    enter('waiting', now + wait + tonumber(ARGV[3]))
    return {{'rate_wait', tostring(wait), ambiguous, ''}}
  end
  enter(sending ~= '' and 'calling' or 'claimed')
  return {{kind, a, ambiguous, ''}}
end
local function owner_dead()
  if (rec[1] ~= 'calling' and rec[1] ~= 'claimed') or not rec[6] or rec[6] == '' then return false end
  if redis.call('EXISTS', rec[6]) == 1 then return false end
  -- After a Redis restart every heartbeat is gone for a moment: no one is dead before they could beat.
  local up = tonumber(string.match(redis.call('INFO', 'server'), 'uptime_in_seconds:(%d+)') or '0')
  return up >= tonumber(ARGV[7])
end
local state = rec[1]
if not state then
  local n = redis.call('INCR', KEYS[2])
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[4]))
  local cap = tonumber(ARGV[5])
  fresh = true
  if opted_out() then
    enter('claimed')
    return {{'optout', tostring(n), '0', ''}}
  end
  if cap >= 0 and n > cap then
    enter('claimed')
    return {{'limit', tostring(n), '0', ''}}
  end
  if recipient_full() then
    enter('claimed')
    return {{'recipient_limit', tostring(n), '0', ''}}
  end
  return go('new', tostring(n), '0')
end
if state == 'done' then
  return {{'done', rec[2], rec[5] or '0', rec[4] or ''}}
end
if (state == 'waiting' and rec[2] == ARGV[1]) or tonumber(rec[3] or '0') < now or owner_dead() then
  local ambiguous = rec[5] or '0'
  if state == 'calling' then
    ambiguous = '1'
    redis.call('HSET', KEYS[1], 'ambiguous', '1')
  end
  if opted_out() then
    enter('claimed')
    return {{'optout', '0', ambiguous, ''}}
  end
  return go('takeover', state, ambiguous)
end
return {{'busy', tostring(tonumber(rec[3]) - now), rec[5] or '0', ''}}
"""

# KEYS: idem hash. ARGV: owner, new state, lease ms, ambiguous ('1' to set, '' to keep),
# fallback_from (the attempt the fallback connection took over at; '' to keep).
_TRANSITION = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'lease_until', now + tonumber(ARGV[3]))
if ARGV[4] == '1' then redis.call('HSET', KEYS[1], 'ambiguous', '1') end
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'fallback_from', ARGV[5]) end
return 1
"""

ClaimKind = Literal[
    "new", "takeover", "limit", "done", "busy", "optout", "recipient_limit", "rate_wait", "rate_refused"
]


@dataclass(frozen=True, slots=True)
class Policies:
    """What the claim checks besides the key, for a job that will send (all in the same script).

    The defaults check nothing: no opt-out list, no recipient cap, no sender limit.
    """

    #: the connection's opt-out hash, and the fields that opt this recipient out of this sender
    #: and of the whole connection ('' : none)
    optout_key: str = ""
    optout_fields: tuple[str, str] = ("", "")
    #: the recipient's cap: its sorted set, this send's member, the count (-1: none), the window
    recipient_key: str = ""
    recipient_member: str = ""
    recipient_count: int = -1
    recipient_window_ms: int = 0
    #: the sending number's GCRA: its key, ms per unit (0: no limit), tolerance ms, this send's units
    rate_key: str = ""
    rate_interval_ms: float = 0.0
    rate_tolerance_ms: float = 0.0
    rate_units: int = 1
    #: ms left before the job's deadline: a slot at or after it is refused, not scheduled
    deadline_ms: int = 0

    def keys(self, placeholder: str) -> list[str]:
        return [k or placeholder for k in (self.optout_key, self.recipient_key, self.rate_key)]

    def args(self) -> list[str | int | float]:
        rate = (f"{self.rate_interval_ms:.3f}", f"{self.rate_tolerance_ms:.3f}", self.rate_units)
        recipient = (self.recipient_member, self.recipient_count, self.recipient_window_ms)
        return [*self.optout_fields, *recipient, *rate, self.deadline_ms]


NO_POLICIES = Policies()


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
    #: `rate_wait`: milliseconds until this message's slot on its sending number (reserved)
    wait_ms: int = 0

    @property
    def owned(self) -> bool:
        """This job now holds the key (and, when `new`/`takeover` with a plan, is `calling`)."""
        return self.kind not in ("done", "busy")


class IdempotencyStore:
    def __init__(
        self, client: redis.Redis, *, ttl: int, lease_seconds: float, heartbeat_ttl: float = 5.0
    ) -> None:
        self._redis = client
        self._ttl = ttl
        self._lease_ms = int(lease_seconds * 1000)
        self._heartbeat_ttl = max(1, int(heartbeat_ttl + 0.999))
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
        policies: Policies = NO_POLICIES,
        stream_ttl_fresh: bool = False,
        owner_beats: bool = False,
    ) -> Claim:
        """Claim `key` for `job_id`. With a `sending` event (the plan succeeded), check `policies`
        (opt-out, recipient cap, sender rate) and enter `calling` and publish it in the same call;
        `cap` is the call's limit of distinct sends (None: none). One round trip.

        `stream_ttl_fresh`: the call's stream was given its TTL recently (the job's `queued`), so
        the `sending` event need not refresh it (the terminal event does). `owner_beats`: this
        process's heartbeat runs, so the owner's heartbeat key is stored without checking it."""
        name = idempotency_key(key)
        alive = alive_key_of_owner(owner)
        kind, a, ambiguous, outcome = (
            as_text(v)
            for v in self._claim(
                keys=[name, call_counter_key(call_id), events_key(call_id), alive, *policies.keys(name)],
                args=[
                    job_id, owner, self._lease_ms, self._ttl, -1 if cap is None else cap, sending or "",
                    self._heartbeat_ttl, "" if stream_ttl_fresh else "1", "1" if owner_beats else "",
                    *policies.args(),
                ],
            )
        )  # fmt: skip
        flag = ambiguous == "1"
        if kind in ("new", "limit", "optout", "recipient_limit"):
            return Claim(kind, call_count=int(a), ambiguous=flag)  # type: ignore[arg-type]
        if kind == "rate_wait":
            return Claim("rate_wait", wait_ms=int(float(a)), ambiguous=flag)
        if kind == "rate_refused":
            return Claim("rate_refused", ambiguous=flag)
        if kind == "done":
            return Claim(
                "done", owner_job_id=a, ambiguous=flag, outcome=json.loads(outcome) if outcome else None
            )
        if kind == "takeover":
            return Claim("takeover", previous_state=a, ambiguous=flag)
        return Claim("busy", lease_left_ms=max(int(a), 0), ambiguous=flag)

    def mark_calling(self, key: str, *, owner: str) -> None:
        """Enter the window where the provider may accept (the fallback's send)."""
        self._transition(keys=[idempotency_key(key)], args=[owner, "calling", self._lease_ms, "", ""])

    def mark_waiting(
        self,
        key: str,
        *,
        owner: str,
        ambiguous: bool,
        hold_seconds: float,
        fallback_from: int | None = None,
    ) -> None:
        """A retryable error: hold the key for this job's next attempt (other jobs keep waiting).
        `fallback_from`: the send moved to the fallback connection at that attempt, and its next
        attempt goes there too."""
        lease_ms = int(hold_seconds * 1000) + self._lease_ms
        since = "" if fallback_from is None else str(fallback_from)
        self._transition(
            keys=[idempotency_key(key)], args=[owner, "waiting", lease_ms, "1" if ambiguous else "", since]
        )

    def fallback_since(self, key: str, *, job_id: str) -> int | None:
        """The attempt at which `job_id`'s send moved to its fallback connection, if it did."""
        owner_job, since = self._redis.hmget(idempotency_key(key), ["job_id", "fallback_from"])
        if owner_job is None or since is None or as_text(owner_job) != job_id:
            return None
        return int(as_text(since))

    def finish(self, pipe: Any, key: str, outcome: str | dict[str, Any], *, refresh_ttl: bool = True) -> None:
        """Store the outcome, JSON (queued on `pipe`, in the same transaction as the terminal event).
        Without `refresh_ttl` the key keeps the TTL its claim gave it moments ago."""
        name = idempotency_key(key)
        data = outcome if isinstance(outcome, str) else json.dumps(outcome, separators=(",", ":"))
        pipe.hset(name, mapping={"state": "done", "outcome": data})
        if refresh_ttl:
            pipe.expire(name, self._ttl)

    def release_count(self, pipe: Any, call_id: str, policies: Policies = NO_POLICIES) -> None:
        """Nothing was sent: give the per-call quota and the recipient's back (queued on `pipe`)."""
        pipe.decr(call_counter_key(call_id))
        if policies.recipient_key and policies.recipient_member:
            pipe.zrem(policies.recipient_key, policies.recipient_member)
