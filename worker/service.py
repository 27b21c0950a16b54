"""The send pipeline for one delivery of one job, independent of Celery.

claim the idempotency key → plan (agent, recipient, template, limits) → provider → one terminal
event, stored under the key in the same transaction. A retryable error returns the delay before
the next attempt; the task turns it into a Celery retry.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import redis
import structlog
from pydantic import ValidationError

from producers.contract import (
    IDENTIFIER_PATTERN,
    QUEUE,
    ErrorCode,
    ErrorInfo,
    Event,
    Job,
    Status,
    call_jobs_key,
    mask_number,
    message_key,
    parked_key,
    tool_message,
    utcnow,
)
from worker import events, metrics, optout, polling, receipts, tracing
from worker.config.source import ConfigSource
from worker.errors import SendError
from worker.hashing import hash_key, hash_number
from worker.idempotency import NO_POLICIES, Claim, IdempotencyStore, Policies
from worker.plan import SendPlan, make_plan
from worker.providers import OutboundSms, ProviderPool, Receipt, SmsProvider
from worker.settings import Settings

log = structlog.get_logger("worker.send")

#: The fields of a terminal event stored under its idempotency key, replayed to later jobs.
_OUTCOME_FIELDS = {
    "status", "attempt", "provider", "provider_message_id", "to", "from_", "segments", "encoding", "error",
    "possible_duplicate",
}  # fmt: skip
#: Errors of a connection (not of the recipient) after which the fallback connection is tried.
_FALLBACK_CODES = frozenset({ErrorCode.PROVIDER_UNAVAILABLE, ErrorCode.AUTH_FAILED, ErrorCode.RATE_LIMITED})
#: How often a job polls an idempotency key that another worker holds.
_BUSY_POLL = (0.01, 0.25)
#: Seconds before its deadline a rate-limited text's slot must come, so that the scheduled attempt
#: still has time to be picked up and sent before the deadline.
RATE_SLOT_MARGIN = 0.5
_OPTED_OUT = "the recipient opted out of texts from this number (local opt-out list)"
_SENDER_BUSY = "too many texts are waiting on this number right now"


def recipient_cap_key(agent_id: str, digest: str) -> str:
    """The sorted set of one agent's recent sends to one recipient (the number's keyed hash)."""
    return f"sms:rcpt:{agent_id}:{digest}"


@dataclass(slots=True)
class Delivery:
    """One delivery of one job: what the canonical log line and the events need."""

    job: Job
    attempt: int
    owner: str
    started: float
    possible_duplicate: bool = False
    plan: SendPlan | None = None
    provider_ms: float | None = None
    #: the primary connection failed for good and this delivery now sends through the fallback
    on_fallback: bool = False
    #: what the claim checked (opt-out, recipient cap, sender rate); released when nothing is sent
    policies: Policies = NO_POLICIES
    #: the outcome of this delivery, for its trace span
    outcome: Event | None = None
    #: the attempt at which the fallback connection took over (its own retries count from there)
    fallback_from: int | None = None


_IDENTIFIER = re.compile(IDENTIFIER_PATTERN)
#: Twilio's ValidityPeriod range, in seconds.
_VALIDITY_RANGE = (1, 36000)


def validity(configured: int | None, expires_at: datetime) -> int:
    """How long the provider may queue the message: the agent's `validity_seconds`, never past the
    job's own deadline, so an in-call text never arrives hours after the call."""
    remaining = int((expires_at - utcnow()).total_seconds())
    seconds = remaining if configured is None else min(configured, remaining)
    return max(_VALIDITY_RANGE[0], min(seconds, _VALIDITY_RANGE[1]))


def _is_identifier(value: Any) -> bool:
    return isinstance(value, str) and _IDENTIFIER.fullmatch(value) is not None


class SmsService:
    def __init__(
        self,
        settings: Settings,
        client: redis.Redis,
        config: ConfigSource,
        providers: ProviderPool,
        rng: random.Random | None = None,
    ) -> None:
        self._settings = settings
        self._redis = client
        self._config = config
        self._providers = providers
        self._idem = IdempotencyStore(
            client,
            ttl=settings.idempotency_ttl,
            lease_seconds=settings.claim_lease,
            heartbeat_ttl=settings.heartbeat_ttl,
        )
        self._rng = rng or random.Random()
        self._number_key: bytes | None = None

    def number_key(self) -> bytes:
        """The key recipients are hashed with (read once: SMS_NUMBER_HASH_KEY or the generated one)."""
        if self._number_key is None:
            self._number_key = hash_key(self._settings, self._redis)
        return self._number_key

    def handle(self, raw_job: Any, *, attempt: int, owner: str) -> float | None:
        """Process one delivery; returns seconds until the next attempt, or None when the job is done."""
        started = time.monotonic()
        try:
            job = Job.model_validate(raw_job)
        except ValidationError as exc:
            self._reject_malformed(raw_job, exc)
            return None
        delivery = Delivery(job=job, attempt=attempt, owner=owner, started=started)
        with tracing.deliver_span(job, attempt) as span:
            try:
                return self._handle(delivery)
            finally:
                if delivery.outcome is not None:
                    outcome = delivery.outcome
                    error = outcome.error.code.value if outcome.error else None
                    tracing.annotate(
                        span, outcome=outcome.status.value, provider=outcome.provider, error_code=error
                    )

    def _handle(self, delivery: Delivery) -> float | None:
        job = delivery.job
        try:
            return self._process(delivery)
        except redis.RedisError:
            raise  # the task hands the message back to the queue
        except Exception as exc:
            # A bug must not leave the caller without an outcome: fail the job, and say so loudly.
            log.exception("sms.internal_error", job_id=job.job_id, call_id=job.call.call_id)
            self._finish_failed(
                delivery, SendError(ErrorCode.PROVIDER_ERROR, f"internal error ({type(exc).__name__})")
            )
            return None

    def _process(self, delivery: Delivery) -> float | None:
        # Plan first: it needs no I/O, and a successful plan lets the claim publish `sending`.
        job = delivery.job
        refusal: SendError | None = None
        try:
            delivery.plan = make_plan(self._config.get(), job)
        except SendError as err:
            refusal = err
        if utcnow() >= job.expires_at:
            refusal = SendError(ErrorCode.EXPIRED, "the job expired before it could be sent")
        plan = delivery.plan if refusal is None else None
        if plan is not None and plan.fallback is not None and delivery.attempt > 1:
            # A retry of a send that had moved to the fallback connection stays there.
            since = self._idem.fallback_since(job.idempotency_key, job_id=job.job_id)
            if since is not None:
                self._use_fallback(delivery, plan, since)
                plan = delivery.plan
        claim = self._claim(delivery, plan)
        if claim.kind == "done":
            self._replay(delivery, claim)
            return None
        delivery.possible_duplicate = claim.ambiguous
        if refusal is not None:
            self._finish_failed(delivery, refusal)
            return None
        assert plan is not None
        refusal = self._claim_refusal(claim, plan)
        if refusal is not None:
            self._finish_failed(delivery, refusal)
            return None
        if claim.kind == "rate_wait":
            return self._wait_for_slot(delivery, claim.wait_ms / 1000)
        return self._send(delivery, plan)

    @staticmethod
    def _claim_refusal(claim: Claim, plan: SendPlan) -> SendError | None:
        """A policy of the claim that refused this send (nothing was sent), or None."""
        if claim.kind == "limit":
            return SendError(ErrorCode.LIMIT_REACHED, f"this call has reached its {plan.max_per_call} texts")
        if claim.kind == "optout":
            return SendError(ErrorCode.RECIPIENT_OPTED_OUT, _OPTED_OUT)
        if claim.kind == "recipient_limit":
            cap = plan.max_per_recipient
            assert cap is not None
            return SendError(
                ErrorCode.LIMIT_REACHED,
                f"this number has had {cap.count} texts from this agent in the last {cap.window_seconds} s",
                cause="recipient",
            )
        if claim.kind == "rate_refused":
            return SendError(
                ErrorCode.RATE_LIMITED,
                f"{_SENDER_BUSY}: its next free slot comes after the text's deadline",
                cause="sender",
            )
        return None

    def _wait_for_slot(self, delivery: Delivery, delay: float) -> float:
        """Over the sending number's rate with a slot before the deadline: the slot is reserved and
        the key held (`waiting`); publish `retrying` and come back at the slot."""
        err = SendError(ErrorCode.RATE_LIMITED, f"{_SENDER_BUSY}: scheduled for its slot", cause="sender")
        event = self._event(
            delivery, Status.RETRYING, terminal=False, error=err.info(),
            next_attempt_at=utcnow() + timedelta(seconds=delay),
        )  # fmt: skip
        with self._redis.pipeline(transaction=False) as pipe:
            events.publish(pipe, event)
            pipe.execute()
        self._log(delivery, event, retry_in_ms=round(delay * 1000))
        return delay

    def _policies(self, job: Job, plan: SendPlan) -> Policies:
        """The opt-out, recipient-cap and sender-rate checks the claim makes for this plan."""
        digest = hash_number(self.number_key(), plan.to)
        connection = plan.connection
        by_sender = optout.field(digest, plan.from_) if plan.from_ else ""
        cap, rate = plan.max_per_recipient, plan.rate
        remaining = (job.expires_at - utcnow()).total_seconds() - RATE_SLOT_MARGIN
        return Policies(
            optout_key=optout.list_key(connection),
            optout_fields=(by_sender, optout.field(digest, None)),
            recipient_key=recipient_cap_key(job.agent_id, digest) if cap is not None else "",
            recipient_member=job.idempotency_key,
            recipient_count=cap.count if cap is not None else -1,
            recipient_window_ms=cap.window_seconds * 1000 if cap is not None else 0,
            rate_key=rate.key if rate is not None else "",
            rate_interval_ms=rate.interval_ms if rate is not None else 0.0,
            rate_tolerance_ms=(rate.burst - 1) * rate.interval_ms if rate is not None else 0.0,
            rate_units=rate.cost if rate is not None else 1,
            deadline_ms=max(int(remaining * 1000), 0),
        )

    # -- claiming -------------------------------------------------------------------------------

    def _claim(self, delivery: Delivery, plan: SendPlan | None) -> Claim:
        """Claim the key (publishing `sending` when there is a plan); while another worker holds
        it, wait for its outcome or for its lease to run out."""
        job = delivery.job
        sending = self._event(delivery, Status.SENDING, terminal=False).dumps() if plan else None
        if plan is not None:
            delivery.policies = self._policies(job, plan)
        poll = _BUSY_POLL[0]
        while True:
            claim = self._idem.claim(
                job.idempotency_key,
                job_id=job.job_id,
                owner=delivery.owner,
                call_id=job.call.call_id,
                cap=plan.max_per_call if plan else None,
                sending=sending,
                policies=delivery.policies,
            )
            if claim.kind != "busy":
                return claim
            time.sleep(min(poll, claim.lease_left_ms / 1000 + 0.005))
            poll = min(poll * 2, _BUSY_POLL[1])

    def _replay(self, delivery: Delivery, claim: Claim) -> None:
        """The key's outcome is known: answer this job with it, and send nothing."""
        job = delivery.job
        if claim.owner_job_id == job.job_id:
            # A redelivery of a job that already ended: its terminal event is on the channel.
            log.info("sms.duplicate_delivery", job_id=job.job_id, call_id=job.call.call_id)
            return
        outcome = claim.outcome or {}
        status = Status(outcome.get("status", Status.FAILED))
        error = ErrorInfo.model_validate(outcome["error"]) if outcome.get("error") else None
        event = Event(
            job_id=job.job_id,
            call_id=job.call.call_id,
            status=status,
            terminal=True,
            at=utcnow(),
            attempt=int(outcome.get("attempt", 0)),
            provider=outcome.get("provider"),
            provider_message_id=outcome.get("provider_message_id"),
            to=outcome.get("to"),
            from_=outcome.get("from_"),
            segments=outcome.get("segments"),
            encoding=outcome.get("encoding"),
            error=error,
            tool_message=tool_message(
                status,
                error.code if error else None,
                error.message if error else None,
                error.cause if error else None,
            ),
            possible_duplicate=bool(outcome.get("possible_duplicate", False)),
        )
        events.publish(self._redis, event)
        self._log(delivery, event, replayed_from=claim.owner_job_id)

    # -- sending --------------------------------------------------------------------------------

    def _send(self, delivery: Delivery, plan: SendPlan) -> float | None:
        """Call the provider (the key is in `calling` and `sending` is published)."""
        job = delivery.job
        provider = self._providers.get(plan.connection)
        sms = OutboundSms(
            to=plan.to,
            from_=plan.from_,
            body=plan.body,
            job_id=job.job_id,
            idempotency_key=job.idempotency_key,
            validity_seconds=validity(plan.validity_seconds, job.expires_at),
            status_callback=self._status_callback(provider, plan),
        )
        sent_at = time.monotonic()
        try:
            with tracing.provider_span(plan.connection.provider, plan.connection.connection_id) as span:
                try:
                    receipt = provider.send(sms)
                except SendError as err:
                    tracing.annotate(span, outcome="error", error_code=err.code.value)
                    raise
                tracing.annotate(span, outcome="accepted")
        except SendError as err:
            delivery.provider_ms = (time.monotonic() - sent_at) * 1000
            metrics.observe_provider_call(plan.connection.provider, delivery.provider_ms)
            return self._after_error(delivery, err)
        delivery.provider_ms = (time.monotonic() - sent_at) * 1000
        metrics.observe_provider_call(plan.connection.provider, delivery.provider_ms)
        self._finish_accepted(delivery, receipt)
        return None

    def _status_callback(self, provider: SmsProvider, plan: SendPlan) -> str | None:
        """The status route of the sending connection, when there is a public URL to call back."""
        public_url = self._settings.public_url
        if not public_url or not provider.callbacks:
            return None
        return receipts.status_callback_url(
            public_url, plan.connection.provider, plan.connection.connection_id
        )

    def _after_error(self, delivery: Delivery, err: SendError) -> float | None:
        job = delivery.job
        if err.code == ErrorCode.RECIPIENT_OPTED_OUT and delivery.plan is not None:
            self._record_opt_out(delivery.plan, err)
        # The primary connection and the fallback each get SMS_MAX_ATTEMPTS attempts, within the deadline.
        tries = delivery.attempt - (delivery.fallback_from or 1) + 1
        if err.retryable and tries < self._settings.max_attempts:
            delay = self.backoff(tries, err.retry_after)
            next_at = utcnow() + timedelta(seconds=delay)
            if next_at < job.expires_at:
                self._idem.mark_waiting(
                    job.idempotency_key,
                    owner=delivery.owner,
                    ambiguous=err.ambiguous,
                    hold_seconds=delay,
                    fallback_from=delivery.fallback_from,
                )
                event = self._event(
                    delivery, Status.RETRYING, terminal=False, error=err.info(), next_attempt_at=next_at
                )
                events.publish(self._redis, event)
                self._log(delivery, event, retry_in_ms=round(delay * 1000))
                return delay
        plan = delivery.plan
        if (
            plan is not None
            and plan.fallback is not None
            and err.code in _FALLBACK_CODES
            and not delivery.on_fallback
        ):
            return self._send_fallback(delivery, plan, err)
        self._finish_failed(delivery, err)
        return None

    def _send_fallback(self, delivery: Delivery, plan: SendPlan, err: SendError) -> float | None:
        """The agent's connection is down or refuses our credentials: send through its fallback
        connection, which gets retries of its own within the deadline (never for a recipient's
        error, which another provider would repeat)."""
        assert plan.fallback is not None
        log.warning(
            "sms.fallback", job_id=delivery.job.job_id, connection=plan.connection.label,
            fallback=plan.fallback.label, error_code=err.code.value,
        )  # fmt: skip
        metrics.observe_fallback(plan.connection.provider, plan.fallback.provider)
        self._use_fallback(delivery, plan, delivery.attempt)
        # A timeout on the primary may still have delivered: the fallback's copy may be a second one.
        delivery.possible_duplicate = delivery.possible_duplicate or err.ambiguous
        assert delivery.plan is not None
        if self._opted_out_on(delivery.plan):
            self._finish_failed(delivery, SendError(ErrorCode.RECIPIENT_OPTED_OUT, _OPTED_OUT))
            return None
        self._idem.mark_calling(delivery.job.idempotency_key, owner=delivery.owner)
        events.publish(self._redis, self._event(delivery, Status.SENDING, terminal=False))
        assert delivery.plan is not None
        return self._send(delivery, delivery.plan)

    def _opted_out_on(self, plan: SendPlan) -> bool:
        """Whether the recipient opted out on the plan's connection. The claim checked the
        primary connection's list; a switch to the fallback checks the fallback's here (one
        HMGET, only on a fallback; its retries are claimed on the fallback's list)."""
        found = optout.check(self._redis, plan.connection, plan.to, sender=plan.from_, key=self.number_key())
        return found is not None

    @staticmethod
    def _use_fallback(delivery: Delivery, plan: SendPlan, since: int) -> None:
        assert plan.fallback is not None
        delivery.on_fallback = True
        delivery.fallback_from = since
        delivery.plan = replace(
            plan, connection=plan.fallback, fallback=None, from_=plan.fallback.from_number or plan.from_
        )

    def _record_opt_out(self, plan: SendPlan, err: SendError) -> None:
        """The provider refused because the recipient opted out (Twilio 21610, Telnyx 40300): put
        the number on the local list, so the next send is refused before any provider call."""
        reason = f"{plan.connection.provider} {err.provider_code}" if err.provider_code else "provider"
        optout.record(
            self._redis, plan.connection, plan.to, reason=reason, sender=plan.from_, key=self.number_key()
        )

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with full jitter; a fast first retry (the caller is waiting), never
        sooner than the provider's Retry-After."""
        ceiling = min(
            self._settings.retry_max_delay, self._settings.retry_first_delay * 2 * 3 ** (attempt - 1)
        )
        delay = self._rng.uniform(0, ceiling)
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay

    # -- outcomes -------------------------------------------------------------------------------

    def _finish_accepted(self, delivery: Delivery, receipt: Receipt) -> None:
        event = self._event(delivery, Status.ACCEPTED, terminal=True, provider_message_id=receipt.message_id)
        self._finish(delivery, event)

    def _finish_failed(self, delivery: Delivery, err: SendError) -> None:
        event = self._event(delivery, Status.FAILED, terminal=True, error=err.info())
        self._finish(delivery, event, release=True)

    def _finish(self, delivery: Delivery, event: Event, *, release: bool = False) -> None:
        """Store the outcome under the key and publish the terminal event, atomically.

        The same transaction records the job for the audit trail and, for an `accepted` with a
        provider message id, the mapping receipts need (`sms:msg:<provider>:<id>`) and a read of
        the receipts parked for that id (a provider may call back before this runs).
        """
        job = delivery.job
        outcome = event.model_dump(mode="json", include=_OUTCOME_FIELDS)
        mapped = bool(event.status == Status.ACCEPTED and event.provider and event.provider_message_id)
        with self._redis.pipeline(transaction=True) as pipe:
            self._idem.finish(pipe, job.idempotency_key, outcome)
            if release:
                self._idem.release_count(pipe, job.call.call_id, delivery.policies)
            events.publish(pipe, event)
            self._record_job(pipe, delivery, event)
            if mapped:
                self._record_message(pipe, delivery, event)
            replies = pipe.execute()
        self._log(delivery, event)
        if mapped and replies[-1]:
            # Receipts that came before the mapping: apply them now, in order.
            assert event.provider and event.provider_message_id
            receipts.apply_parked(self._redis, event.provider, event.provider_message_id, replies[-1])

    def _record_job(self, pipe: Any, delivery: Delivery, event: Event) -> None:
        """The job's audit summary: template name, masked recipient, body as length + hash (the
        text and the full number only with `SMS_AUDIT_BODIES=true`)."""
        job, plan = delivery.job, delivery.plan
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
                body_sha256=hashlib.sha256(plan.body.encode()).hexdigest()[:16],
            )
            if self._settings.audit_bodies:
                summary.update(body=plan.body, to_number=plan.to)
        key = call_jobs_key(job.call.call_id)
        pipe.hset(key, job.job_id, json.dumps(summary, separators=(",", ":")))
        pipe.expire(key, self._settings.idempotency_ttl)

    def _record_message(self, pipe: Any, delivery: Delivery, event: Event) -> None:
        """Which job and call the provider's message id belongs to (queued on the outcome's MULTI;
        the last command reads the receipts parked for it)."""
        assert delivery.plan is not None and event.provider and event.provider_message_id
        connection = delivery.plan.connection
        key = message_key(event.provider, event.provider_message_id)
        pipe.hset(
            key,
            mapping={
                "job_id": delivery.job.job_id,
                "call_id": delivery.job.call.call_id,
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
                "expires_at": delivery.job.expires_at.isoformat(),
                "status": Status.ACCEPTED.value,
                "rank": 0,
                # where a receipt saying "opted out" records it (the number's keyed hash)
                **optout.mapping_fields(
                    connection, delivery.plan.to, delivery.plan.from_, key=self.number_key()
                ),
            },
        )
        pipe.expire(key, self._settings.idempotency_ttl)
        schedule = self._settings.poll_schedule()
        if schedule and polling.can_poll(event.provider):
            due = event.at + timedelta(seconds=schedule[0])
            pipe.lpush(QUEUE, polling.poll_message(event.provider, event.provider_message_id, 0, due))
        pipe.lrange(parked_key(event.provider, event.provider_message_id), 0, -1)

    def _event(self, delivery: Delivery, status: Status, *, terminal: bool, **fields: Any) -> Event:
        plan = delivery.plan
        error: ErrorInfo | None = fields.get("error")
        return Event(
            job_id=delivery.job.job_id,
            call_id=delivery.job.call.call_id,
            status=status,
            terminal=terminal,
            at=utcnow(),
            attempt=delivery.attempt,
            provider=plan.connection.provider if plan else None,
            to=mask_number(plan.to if plan else delivery.job.to),
            from_=plan.from_ if plan else None,
            segments=plan.segments if plan else None,
            encoding=plan.encoding if plan else None,
            tool_message=tool_message(
                status,
                error.code if error else None,
                error.message if error else None,
                error.cause if error else None,
            ),
            possible_duplicate=delivery.possible_duplicate,
            **fields,
        )

    def _reject_malformed(self, raw_job: Any, exc: ValidationError) -> None:
        """A job no worker can read still gets a `failed` event when it names its job and call."""
        problems = (
            "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'job'}: {err['msg']}" for err in exc.errors()[:10]
            )
            .encode("utf-8", "backslashreplace")
            .decode("utf-8")
        )
        raw = raw_job if isinstance(raw_job, dict) else {}
        job_id = raw.get("job_id")
        call = raw.get("call")
        call_id = call.get("call_id") if isinstance(call, dict) else None
        if not (_is_identifier(job_id) and _is_identifier(call_id)):
            log.error(
                "sms.malformed_job",
                detail="no readable job_id and call.call_id to answer on",
                problems=problems,
            )
            return
        assert isinstance(job_id, str) and isinstance(call_id, str)
        error = ErrorInfo(code=ErrorCode.INVALID_REQUEST, message=f"malformed job: {problems}"[:1000])
        event = Event(
            job_id=job_id,
            call_id=call_id,
            status=Status.FAILED,
            terminal=True,
            at=utcnow(),
            error=error,
            tool_message=tool_message(Status.FAILED, ErrorCode.INVALID_REQUEST),
        )
        events.publish(self._redis, event)
        metrics.observe_send(event, None)
        log.warning(
            "sms.send",
            job_id=event.job_id,
            call_id=event.call_id,
            outcome="failed",
            error_code="invalid_request",
            problems=problems,
        )

    def _log(self, delivery: Delivery, event: Event, **extra: Any) -> None:
        """The canonical line: one per outcome of one delivery, with no number and no body."""
        job, plan = delivery.job, delivery.plan
        delivery.outcome = event
        fields: dict[str, Any] = {
            "job_id": job.job_id,
            "call_id": job.call.call_id,
            "agent_id": job.agent_id,
            "attempt": delivery.attempt,
            "outcome": event.status.value,
            "latency_ms": round((time.monotonic() - delivery.started) * 1000, 2),
            "queue_ms": round((utcnow() - job.created_at).total_seconds() * 1000, 1),
            "to": event.to,
        }
        if plan is not None:
            fields.update(
                provider=plan.connection.provider,
                connection=plan.connection.label,
                segments=plan.segments,
                encoding=plan.encoding,
                body_chars=len(plan.body),
                body_sha256=hashlib.sha256(plan.body.encode()).hexdigest()[:16],
            )
        if delivery.provider_ms is not None:
            fields["provider_ms"] = round(delivery.provider_ms, 2)
        if event.error is not None:
            fields.update(error_code=event.error.code.value, provider_code=event.error.provider_code)
        if event.provider_message_id:
            fields["provider_message_id"] = event.provider_message_id
        if event.possible_duplicate:
            fields["possible_duplicate"] = True
        fields.update(extra)
        level = log.warning if event.status == Status.FAILED else log.info
        level("sms.send", **fields)
        metrics.observe_send(event, job.created_at, replayed="replayed_from" in extra)
