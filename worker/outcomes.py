"""Outcome persistence: a delivery's terminal event and everything stored with it, in one Lua call.

The script (atomic, like the MULTI it replaces, one command fewer) stores the outcome under the
idempotency key (the terminal event's own JSON, which later jobs with the key replay), publishes
the terminal event, gives the per-call and per-recipient quota back when nothing was sent, records
the job's audit summary (`sms:calljobs:<call>`), and for an `accepted` with a provider message id
the mapping receipts need (`sms:msg:<provider>:<id>`), the first status poll, and a read of the
receipts parked for that id (a provider may call back before this runs), which are then applied in
order.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import redis

from producers.contract import (
    QUEUE,
    Event,
    Job,
    Status,
    call_counter_key,
    call_jobs_key,
    events_key,
    idempotency_key,
    message_key,
    parked_key,
)
from worker import events, optout, polling, receipts, tracing
from worker.idempotency import NO_POLICIES, Policies
from worker.plan import SendPlan
from worker.settings import Settings

# KEYS: idem hash, the call's stream, the call's job summaries, the call's counter, the recipient's
#       cap (sorted set), the message mapping, its parked receipts, the queue (the mapping's three
#       are the idem hash when there is no mapping: never written then).
# ARGV: the terminal event's JSON, the TTL s, '1' to refresh the key's TTL, '1' to release the
#       quotas, the recipient cap member ('' : none), job id, the job's summary JSON, '1' when there
#       is a mapping, the first poll's message ('' : none), then the mapping's field/value pairs.
_FINISH = f"""
local ttl = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'state', 'done', 'outcome', ARGV[1])
if ARGV[3] == '1' then redis.call('EXPIRE', KEYS[1], ttl) end
if ARGV[4] == '1' then
  redis.call('DECR', KEYS[4])
  if ARGV[5] ~= '' then redis.call('ZREM', KEYS[5], ARGV[5]) end
end
{events.lua_publish("KEYS[2]", "ARGV[1]")}
redis.call('HSET', KEYS[3], ARGV[6], ARGV[7])
redis.call('EXPIRE', KEYS[3], ttl)
if ARGV[8] ~= '1' then return {{}} end
redis.call('HSET', KEYS[6], unpack(ARGV, 10, #ARGV))
redis.call('EXPIRE', KEYS[6], ttl)
if ARGV[9] ~= '' then redis.call('LPUSH', KEYS[8], ARGV[9]) end
return redis.call('LRANGE', KEYS[7], 0, -1)
"""


def body_digest(body: str) -> str:
    """A body as the logs and the audit summary show it: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(body.encode()).hexdigest()[:16]


class OutcomeWriter:
    def __init__(self, settings: Settings, client: redis.Redis, *, number_key: Callable[[], bytes]) -> None:
        self._settings = settings
        self._redis = client
        self._finish = client.register_script(_FINISH)
        #: the key numbers are hashed with (the opt-out field a receipt may set)
        self._number_key = number_key

    def write(
        self,
        job: Job,
        plan: SendPlan | None,
        event: Event,
        *,
        release: bool = False,
        policies: Policies = NO_POLICIES,
        key_ttl_fresh: bool = False,
    ) -> None:
        """Store `event` as the job's outcome and publish it, atomically (see the module).

        `release`: nothing was sent, so the quotas the claim counted are given back.
        `key_ttl_fresh`: this delivery created the key moments ago (its TTL is still whole).
        """
        payload = event.dumps()
        mapped = bool(event.status == Status.ACCEPTED and event.provider and event.provider_message_id)
        idem = idempotency_key(job.idempotency_key)
        call_id = job.call.call_id
        keys = [idem, events_key(call_id), call_jobs_key(call_id), call_counter_key(call_id),
                policies.recipient_key or idem, idem, idem, QUEUE]  # fmt: skip
        member = policies.recipient_member if policies.recipient_key else ""
        args: list[Any] = [
            payload, self._settings.idempotency_ttl, "" if key_ttl_fresh else "1", "1" if release else "",
            member, job.job_id, self._summary(job, plan, event), "1" if mapped else "", "",
        ]  # fmt: skip
        if mapped:
            assert event.provider and event.provider_message_id
            keys[5] = message_key(event.provider, event.provider_message_id)
            keys[6] = parked_key(event.provider, event.provider_message_id)
            args[8] = self._first_poll(event)
            for field, value in self._mapping(job, plan, event).items():
                args += [field, value]
        parked = self._finish(keys=keys, args=args)
        if mapped and parked:
            # Receipts that came before the mapping: apply them now, in order.
            assert event.provider and event.provider_message_id
            receipts.apply_parked(self._redis, event.provider, event.provider_message_id, parked)

    def _summary(self, job: Job, plan: SendPlan | None, event: Event) -> str:
        """The job's audit summary: template name, masked recipient, body as length + hash (the
        text and the full number only with `SMS_AUDIT_BODIES=true`)."""
        summary: dict[str, Any] = {
            "job_id": job.job_id,
            "agent_id": job.agent_id,
            "template": job.template,
            "free_text": job.message is not None,
            "to": event.to,
            "created_at": job.created_at.isoformat(),
        }
        if plan is not None:
            summary.update(
                connection=plan.connection.label,
                body_chars=len(plan.body),
                body_sha256=body_digest(plan.body),
            )
            if self._settings.audit_bodies:
                summary.update(body=plan.body, to_number=plan.to)
        return json.dumps(summary, separators=(",", ":"))

    def _mapping(self, job: Job, plan: SendPlan | None, event: Event) -> dict[str, str | int]:
        """Which job and call the provider's message id belongs to."""
        assert plan is not None and event.provider and event.provider_message_id
        connection = plan.connection
        return {
            "job_id": job.job_id,
            "call_id": job.call.call_id,
            "provider": event.provider,
            "message_id": event.provider_message_id,
            "connection": connection.label,
            "connection_id": connection.connection_id,
            "to": event.to or "",
            "from_": event.from_ or "",
            "attempt": event.attempt,
            "segments": event.segments or 0,
            "accepted_at": event.at.isoformat(),
            # the delivery's span: a receipt's span continues its trace (worker/tracing.py)
            "traceparent": tracing.current_traceparent() or "",
            "expires_at": job.expires_at.isoformat(),
            "status": Status.ACCEPTED.value,
            "rank": 0,
            # where a receipt saying "opted out" records it (the number's keyed hash)
            **optout.mapping_fields(connection, plan.to, plan.from_, key=self._number_key()),
        }

    def _first_poll(self, event: Event) -> str | bytes:
        """The first status poll's task message ('' : no polling for this provider or at all)."""
        assert event.provider and event.provider_message_id
        schedule = self._settings.poll_schedule()
        if not schedule or not polling.can_poll(event.provider):
            return ""
        due = event.at + timedelta(seconds=schedule[0])
        return polling.poll_message(event.provider, event.provider_message_id, 0, due)
