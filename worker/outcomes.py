"""Outcome persistence: a delivery's terminal event and everything stored with it, in one MULTI.

The transaction stores the outcome under the idempotency key (the terminal event's own JSON, which
later jobs with the key replay), publishes the terminal event, gives the per-call and
per-recipient quota back when nothing was sent, records the job's audit summary
(`sms:calljobs:<call>`), and for an `accepted` with a provider message id the mapping receipts
need (`sms:msg:<provider>:<id>`), the first status poll, and a read of the receipts parked for
that id (a provider may call back before this runs), which are then applied in order.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import redis

from producers.contract import QUEUE, Event, Job, Status, call_jobs_key, message_key, parked_key
from worker import events, optout, polling, receipts, tracing
from worker.idempotency import NO_POLICIES, IdempotencyStore, Policies
from worker.plan import SendPlan
from worker.settings import Settings


def body_digest(body: str) -> str:
    """A body as the logs and the audit summary show it: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(body.encode()).hexdigest()[:16]


class OutcomeWriter:
    def __init__(
        self,
        settings: Settings,
        client: redis.Redis,
        idem: IdempotencyStore,
        *,
        number_key: Callable[[], bytes],
    ) -> None:
        self._settings = settings
        self._redis = client
        self._idem = idem
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
        with self._redis.pipeline(transaction=True) as pipe:
            self._idem.finish(pipe, job.idempotency_key, payload, refresh_ttl=not key_ttl_fresh)
            if release:
                self._idem.release_count(pipe, job.call.call_id, policies)
            events.publish(pipe, event, payload=payload)
            self._record_job(pipe, job, plan, event)
            if mapped:
                self._record_message(pipe, job, plan, event)
            replies = pipe.execute()
        if mapped and replies[-1]:
            # Receipts that came before the mapping: apply them now, in order.
            assert event.provider and event.provider_message_id
            receipts.apply_parked(self._redis, event.provider, event.provider_message_id, replies[-1])

    def _record_job(self, pipe: Any, job: Job, plan: SendPlan | None, event: Event) -> None:
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
        key = call_jobs_key(job.call.call_id)
        pipe.hset(key, job.job_id, json.dumps(summary, separators=(",", ":")))
        pipe.expire(key, self._settings.idempotency_ttl)

    def _record_message(self, pipe: Any, job: Job, plan: SendPlan | None, event: Event) -> None:
        """Which job and call the provider's message id belongs to (queued on the outcome's MULTI;
        the last command reads the receipts parked for it)."""
        assert plan is not None and event.provider and event.provider_message_id
        connection = plan.connection
        key = message_key(event.provider, event.provider_message_id)
        pipe.hset(
            key,
            mapping={
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
            },
        )
        pipe.expire(key, self._settings.idempotency_ttl)
        schedule = self._settings.poll_schedule()
        if schedule and polling.can_poll(event.provider):
            due = event.at + timedelta(seconds=schedule[0])
            pipe.lpush(QUEUE, polling.poll_message(event.provider, event.provider_message_id, 0, due))
        pipe.lrange(parked_key(event.provider, event.provider_message_id), 0, -1)
