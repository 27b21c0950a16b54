"""The send pipeline for one delivery of one job, independent of Celery: orchestration only.

plan (agent, recipient, template, limits; no I/O) → claim the idempotency key (with the policies,
publishing `sending`) → provider → after an error, what `worker.retries` decides (retry at, fall
back, give up) → one terminal event, stored with everything that goes with it by
`worker.outcomes`. Events are made by `worker.events`; the canonical log line is `worker.logs`'.
A retryable error returns the delay before the next attempt; the task turns it into a Celery retry.

A delivery's state is a frozen `Delivery`: each step that changes it (the plan, the claim's
`possible_duplicate`, the move to the fallback connection) makes a new one.
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import redis
import structlog
from pydantic import ValidationError

from producers.contract import IDENTIFIER_PATTERN, ErrorCode, Event, Job, Status, utcnow, validation_problems
from worker import events, liveness, logs, metrics, optout, receipts, retries, tracing
from worker.config.source import ConfigSource
from worker.errors import SendError
from worker.hashing import hash_key, hash_number
from worker.idempotency import NO_POLICIES, Claim, IdempotencyStore, Policies
from worker.outcomes import OutcomeWriter
from worker.plan import SendPlan, make_plan
from worker.providers import OutboundSms, ProviderPool, SmsProvider
from worker.settings import Settings

log = structlog.get_logger("worker.send")

#: How often a job polls an idempotency key that another worker holds.
_BUSY_POLL = (0.01, 0.25)
#: Seconds before its deadline a rate-limited text's slot must come, so that the scheduled attempt
#: still has time to be picked up and sent before the deadline.
RATE_SLOT_MARGIN = 0.5
#: A job this young was queued with its call's stream TTL just set (24 h): its `sending` event need
#: not refresh it (the terminal event does). Generous against clocks that disagree.
_STREAM_TTL_FRESH_S = 6 * 3600
_OPTED_OUT = "the recipient opted out of texts from this number (local opt-out list)"
_SENDER_BUSY = "too many texts are waiting on this number right now"
_IDENTIFIER = re.compile(IDENTIFIER_PATTERN)
#: Twilio's ValidityPeriod range, in seconds.
_VALIDITY_RANGE = (1, 36000)


def recipient_cap_key(agent_id: str, digest: str) -> str:
    """The sorted set of one agent's recent sends to one recipient (the number's keyed hash)."""
    return f"sms:rcpt:{agent_id}:{digest}"


def validity(configured: int | None, expires_at: datetime) -> int:
    """How long the provider may queue the message: the agent's `validity_seconds`, never past the
    job's own deadline, so an in-call text never arrives hours after the call."""
    remaining = int((expires_at - utcnow()).total_seconds())
    seconds = remaining if configured is None else min(configured, remaining)
    return max(_VALIDITY_RANGE[0], min(seconds, _VALIDITY_RANGE[1]))


@dataclass(frozen=True, slots=True)
class Delivery:
    """One delivery of one job, as far as it has come."""

    job: Job
    attempt: int
    owner: str
    started: float
    plan: SendPlan | None = None
    possible_duplicate: bool = False
    #: what the claim checked (opt-out, recipient cap, sender rate); released when nothing is sent
    policies: Policies = NO_POLICIES
    #: the attempt at which the fallback connection took over (None: on the primary)
    fallback_from: int | None = None
    #: this delivery created the idempotency key (its TTL is whole)
    new_key: bool = False

    def event(self, status: Status, **fields: Any) -> Event:
        return events.job_event(
            self.job, self.plan, status, attempt=self.attempt, possible_duplicate=self.possible_duplicate,
            **fields,
        )  # fmt: skip

    def on_fallback(self, since: int) -> Delivery:
        """The same delivery, sending through the plan's fallback connection from attempt `since`."""
        plan = self.plan
        assert plan is not None and plan.fallback is not None
        moved = replace(
            plan, connection=plan.fallback, fallback=None, from_=plan.fallback.from_number or plan.from_
        )
        return replace(self, plan=moved, fallback_from=since)


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
        self._outcomes = OutcomeWriter(settings, client, number_key=self.number_key)
        self._retry = retries.RetryPolicy(
            settings.max_attempts, settings.retry_first_delay, settings.retry_max_delay
        )
        self._rng = rng or random.Random()
        self._number_key: bytes | None = None

    def number_key(self) -> bytes:
        """The key recipients are hashed with (read once: SMS_NUMBER_HASH_KEY or the generated one)."""
        if self._number_key is None:
            self._number_key = hash_key(self._settings, self._redis)
        return self._number_key

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        """Seconds before the attempt after `attempt` (see `worker.retries.backoff`)."""
        return retries.backoff(self._retry, attempt, retry_after, self._rng)

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
            delay, outcome = self._process(delivery)
            if outcome is not None:
                error = outcome.error.code.value if outcome.error else None
                tracing.annotate(
                    span, outcome=outcome.status.value, provider=outcome.provider, error_code=error
                )
            return delay

    def _process(self, delivery: Delivery) -> tuple[float | None, Event | None]:
        # Plan first: it needs no I/O, and a successful plan lets the claim publish `sending`.
        job = delivery.job
        try:
            refusal: SendError | None = None
            try:
                delivery = replace(delivery, plan=make_plan(self._config.get(), job))
            except SendError as err:
                refusal = err
            if utcnow() >= job.expires_at:
                refusal = SendError(ErrorCode.EXPIRED, "the job expired before it could be sent")
            sends = refusal is None
            if sends and delivery.attempt > 1 and delivery.plan and delivery.plan.fallback is not None:
                # A retry of a send that had moved to the fallback connection stays there.
                since = self._idem.fallback_since(job.idempotency_key, job_id=job.job_id)
                if since is not None:
                    delivery = delivery.on_fallback(since)
            if sends:
                delivery = replace(delivery, policies=self._policies(delivery))
            claim = self._claim(delivery, sends=sends)
            if claim.kind == "done":
                return None, self._replay(delivery, claim)
            delivery = replace(delivery, possible_duplicate=claim.ambiguous, new_key=claim.kind == "new")
            if refusal is None:
                assert delivery.plan is not None
                refusal = self._claim_refusal(claim, delivery.plan)
            if refusal is not None:
                return None, self._fail(delivery, refusal)
            if claim.kind == "rate_wait":
                return self._wait_for_slot(delivery, claim.wait_ms / 1000)
            return self._send(delivery)
        except redis.RedisError:
            raise  # the task hands the message back to the queue
        except Exception as exc:
            # A bug must not leave the caller without an outcome: fail the job, and say so loudly.
            log.exception("sms.internal_error", job_id=job.job_id, call_id=job.call.call_id)
            bug = SendError(ErrorCode.PROVIDER_ERROR, f"internal error ({type(exc).__name__})")
            return None, self._fail(delivery, bug)

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

    def _policies(self, delivery: Delivery) -> Policies:
        """The opt-out, recipient-cap and sender-rate checks the claim makes for this plan."""
        job, plan = delivery.job, delivery.plan
        assert plan is not None
        digest = hash_number(self.number_key(), plan.to)
        by_sender = optout.field(digest, plan.from_) if plan.from_ else ""
        cap, rate = plan.max_per_recipient, plan.rate
        remaining = (job.expires_at - utcnow()).total_seconds() - RATE_SLOT_MARGIN
        return Policies(
            optout_key=optout.list_key(plan.connection),
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

    def _claim(self, delivery: Delivery, *, sends: bool) -> Claim:
        """Claim the key (publishing `sending` when the job `sends`: a plan, no refusal); while
        another worker holds it, wait for its outcome or for its lease to run out."""
        job = delivery.job
        plan = delivery.plan if sends else None
        sending = delivery.event(Status.SENDING).dumps() if plan is not None else None
        fresh = (utcnow() - job.created_at).total_seconds() < _STREAM_TTL_FRESH_S
        beats = liveness.beating()
        poll = _BUSY_POLL[0]
        while True:
            claim = self._idem.claim(
                job.idempotency_key, job_id=job.job_id, owner=delivery.owner, call_id=job.call.call_id,
                cap=plan.max_per_call if plan else None, sending=sending, policies=delivery.policies,
                stream_ttl_fresh=fresh, owner_beats=beats,
            )  # fmt: skip
            if claim.kind != "busy":
                return claim
            time.sleep(min(poll, claim.lease_left_ms / 1000 + 0.005))
            poll = min(poll * 2, _BUSY_POLL[1])

    def _replay(self, delivery: Delivery, claim: Claim) -> Event | None:
        """The key's outcome is known: answer this job with it, and send nothing."""
        job = delivery.job
        if claim.owner_job_id == job.job_id:
            # A redelivery of a job that already ended: its terminal event is on the channel.
            log.info("sms.duplicate_delivery", job_id=job.job_id, call_id=job.call.call_id)
            return None
        event = events.replay_event(job, claim.outcome or {})
        events.publish(self._redis, event)
        self._report(delivery, event, replayed_from=claim.owner_job_id)
        return event

    # -- sending --------------------------------------------------------------------------------

    def _send(self, delivery: Delivery) -> tuple[float | None, Event | None]:
        """Call the provider (the key is in `calling` and `sending` is published)."""
        job, plan = delivery.job, delivery.plan
        assert plan is not None
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
            provider_ms = (time.monotonic() - sent_at) * 1000
            metrics.observe_provider_call(plan.connection.provider, provider_ms)
            return self._after_error(delivery, err, provider_ms)
        provider_ms = (time.monotonic() - sent_at) * 1000
        metrics.observe_provider_call(plan.connection.provider, provider_ms)
        event = delivery.event(Status.ACCEPTED, provider_message_id=receipt.message_id)
        self._outcomes.write(job, plan, event, policies=delivery.policies, key_ttl_fresh=delivery.new_key)
        self._report(delivery, event, provider_ms=provider_ms)
        return None, event

    def _status_callback(self, provider: SmsProvider, plan: SendPlan) -> str | None:
        """The status route of the sending connection, when there is a public URL to call back."""
        public_url = self._settings.public_url
        if not public_url or not provider.callbacks:
            return None
        return receipts.status_callback_url(
            public_url, plan.connection.provider, plan.connection.connection_id
        )

    def _after_error(
        self, delivery: Delivery, err: SendError, provider_ms: float
    ) -> tuple[float | None, Event | None]:
        job, plan = delivery.job, delivery.plan
        assert plan is not None
        if err.code == ErrorCode.RECIPIENT_OPTED_OUT:
            self._record_opt_out(plan, err)
        decision = retries.decide(
            err, attempt=delivery.attempt, fallback_from=delivery.fallback_from,
            has_fallback=plan.fallback is not None, expires_at=job.expires_at, now=utcnow(),
            policy=self._retry, rng=self._rng,
        )  # fmt: skip
        if isinstance(decision, retries.RetryAt):
            self._idem.mark_waiting(
                job.idempotency_key, owner=delivery.owner, ambiguous=err.ambiguous,
                hold_seconds=decision.delay, fallback_from=delivery.fallback_from,
            )  # fmt: skip
            event = delivery.event(Status.RETRYING, error=err.info(), next_attempt_at=decision.at)
            events.publish(self._redis, event)
            self._report(delivery, event, provider_ms=provider_ms, retry_in_ms=round(decision.delay * 1000))
            return decision.delay, event
        if isinstance(decision, retries.FallBack):
            return self._send_fallback(delivery, err)
        return None, self._fail(delivery, err, provider_ms=provider_ms)

    def _send_fallback(self, delivery: Delivery, err: SendError) -> tuple[float | None, Event | None]:
        """The agent's connection is down or refuses our credentials: send through its fallback
        connection, which gets retries of its own within the deadline (never for a recipient's
        error, which another provider would repeat)."""
        plan = delivery.plan
        assert plan is not None and plan.fallback is not None
        log.warning(
            "sms.fallback", job_id=delivery.job.job_id, connection=plan.connection.label,
            fallback=plan.fallback.label, error_code=err.code.value,
        )  # fmt: skip
        metrics.observe_fallback(plan.connection.provider, plan.fallback.provider)
        # A timeout on the primary may still have delivered: the fallback's copy may be a second one.
        moved = delivery.on_fallback(delivery.attempt)
        moved = replace(moved, possible_duplicate=delivery.possible_duplicate or err.ambiguous)
        assert moved.plan is not None
        if self._opted_out_on(moved.plan):
            return None, self._fail(moved, SendError(ErrorCode.RECIPIENT_OPTED_OUT, _OPTED_OUT))
        self._idem.mark_calling(moved.job.idempotency_key, owner=moved.owner)
        events.publish(self._redis, moved.event(Status.SENDING))
        return self._send(moved)

    def _opted_out_on(self, plan: SendPlan) -> bool:
        """Whether the recipient opted out on the plan's connection. The claim checked the
        primary connection's list; a switch to the fallback checks the fallback's here (one
        HMGET, only on a fallback; its retries are claimed on the fallback's list)."""
        found = optout.check(self._redis, plan.connection, plan.to, sender=plan.from_, key=self.number_key())
        return found is not None

    def _record_opt_out(self, plan: SendPlan, err: SendError) -> None:
        """The provider refused because the recipient opted out (Twilio 21610, Telnyx 40300): put
        the number on the local list, so the next send is refused before any provider call."""
        reason = f"{plan.connection.provider} {err.provider_code}" if err.provider_code else "provider"
        optout.record(
            self._redis, plan.connection, plan.to, reason=reason, sender=plan.from_, key=self.number_key()
        )

    def _wait_for_slot(self, delivery: Delivery, delay: float) -> tuple[float, Event]:
        """Over the sending number's rate with a slot before the deadline: the slot is reserved and
        the key held (`waiting`); publish `retrying` and come back at the slot."""
        err = SendError(ErrorCode.RATE_LIMITED, f"{_SENDER_BUSY}: scheduled for its slot", cause="sender")
        next_at = utcnow() + timedelta(seconds=delay)
        event = delivery.event(Status.RETRYING, error=err.info(), next_attempt_at=next_at)
        events.publish(self._redis, event)
        self._report(delivery, event, retry_in_ms=round(delay * 1000))
        return delay, event

    # -- outcomes -------------------------------------------------------------------------------

    def _fail(self, delivery: Delivery, err: SendError, *, provider_ms: float | None = None) -> Event:
        """The terminal `failed`: stored, published, the quotas given back (nothing was sent)."""
        event = delivery.event(Status.FAILED, error=err.info())
        self._outcomes.write(
            delivery.job, delivery.plan, event, release=True, policies=delivery.policies,
            key_ttl_fresh=delivery.new_key,
        )  # fmt: skip
        self._report(delivery, event, provider_ms=provider_ms)
        return event

    def _report(
        self, delivery: Delivery, event: Event, *, provider_ms: float | None = None, **extra: Any
    ) -> None:
        """The canonical log line and the metrics of one outcome of one delivery."""
        logs.send_line(
            delivery.job, delivery.plan, event, attempt=delivery.attempt, started=delivery.started,
            provider_ms=provider_ms, **extra,
        )  # fmt: skip
        metrics.observe_send(event, delivery.job.created_at, replayed="replayed_from" in extra)

    def _reject_malformed(self, raw_job: Any, exc: ValidationError) -> None:
        """A job no worker can read still gets a `failed` event when it names its job and call."""
        # the one formatter (no input value); a lone surrogate in a field name must not escape
        problems = (
            validation_problems(exc, root="job", limit=10).encode("utf-8", "backslashreplace").decode("utf-8")
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
        event = events.malformed_event(job_id, call_id, problems)
        events.publish(self._redis, event)
        metrics.observe_send(event, None)
        log.warning(
            "sms.send", job_id=job_id, call_id=call_id, outcome="failed", error_code="invalid_request",
            problems=problems,
        )  # fmt: skip


def _is_identifier(value: Any) -> bool:
    return isinstance(value, str) and _IDENTIFIER.fullmatch(value) is not None
