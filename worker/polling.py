"""Status polling bounded to the call: receipts for messages whose provider never calls back.

When the worker stores an `accepted` outcome, the same transaction pushes a Celery message for
`sms.poll_receipt` due at the first step of `SMS_RECEIPT_POLL_SCHEDULE` (5, 15, 45 s after
acceptance by default) — no extra round trip. Each run:

1. applies receipts still parked for the message (a worker that died between its outcome
   transaction and applying them leaves them there);
2. stops when the message already has a final status, when the job's deadline (`expires_at`)
   has passed, or when the mapping has expired;
3. asks the provider (`fetch_status`, e.g. Twilio `GET …/Messages/{sid}.json`) and applies the
   answer through `worker.receipts.apply_receipt`, the same ranking callbacks go through;
4. when the answer is not final and steps remain before the deadline, schedules the next step.

With polling alone (no `SMS_PUBLIC_URL`), receipts still reach the call.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import redis
import structlog

from producers.contract import FINAL_DELIVERY_STATUSES, utcnow
from producers.envelope import celery_message
from worker import receipts
from worker.config.source import ConfigSource
from worker.errors import SendError
from worker.providers import PROVIDER_CLASSES, ProviderPool
from worker.settings import Settings

log = structlog.get_logger("worker.polling")

#: The Celery task that polls one message's status (on the queue `sms`, which every worker consumes).
POLL_TASK = "sms.poll_receipt"


def can_poll(provider: str) -> bool:
    cls = PROVIDER_CLASSES.get(provider)
    return cls is not None and cls.polls


def poll_message(provider: str, message_id: str, step: int, due: datetime) -> bytes:
    """The queue entry that runs `sms.poll_receipt` for the message at `due`."""
    kwargs = json.dumps({"provider": provider, "message_id": message_id, "step": step})
    return celery_message(
        POLL_TASK,
        f"poll:{provider}:{message_id}:{step}",
        kwargs,
        kwargsrepr=f"{{'provider': '{provider}', 'message_id': '{message_id}', 'step': {step}}}",
        eta=due.isoformat(),
    )


class ReceiptPoller:
    """One poll step of one message (see the module docstring)."""

    def __init__(
        self, settings: Settings, client: redis.Redis, config: ConfigSource, providers: ProviderPool
    ) -> None:
        self._schedule = settings.poll_schedule()
        self._redis = client
        self._config = config
        self._providers = providers
        self._log_ttl = settings.idempotency_ttl

    def poll(self, provider: str, message_id: str, step: int) -> float | None:
        """Run step `step`; returns seconds until the next step, or None when polling is over."""
        receipts.drain_parked(self._redis, provider, message_id)
        mapping = receipts.read_mapping(self._redis, provider, message_id)
        fields: dict[str, Any] = {"provider": provider, "message_id": message_id, "step": step}
        if not mapping:
            log.info("sms.poll", outcome="unknown_message", **fields)
            return None
        fields.update(job_id=mapping.get("job_id"), call_id=mapping.get("call_id"))
        if mapping.get("status") in FINAL_DELIVERY_STATUSES:
            log.info("sms.poll", outcome="already_final", status=mapping["status"], **fields)
            return None
        deadline = datetime.fromisoformat(mapping["expires_at"])
        if utcnow() >= deadline:
            log.info("sms.poll", outcome="past_deadline", **fields)
            return None
        connection = self._config.get().connection_by_id(provider, mapping.get("connection_id", ""))
        if connection is None:
            log.warning("sms.poll", outcome="connection_gone", **fields)
            return None
        try:
            update = self._providers.get(connection).fetch_status(message_id)
        except SendError as err:
            log.warning("sms.poll", outcome="provider_error", error_code=err.code.value, **fields)
            update = None
        if update is not None:
            result = receipts.apply_receipt(self._redis, update, log_ttl=self._log_ttl)
            log.info("sms.poll", outcome=result, status=update.status, **fields)
            if update.final:
                return None
        return self._next(step, mapping, deadline)

    def _next(self, step: int, mapping: dict[str, str], deadline: datetime) -> float | None:
        if step + 1 >= len(self._schedule):
            return None
        accepted_at = datetime.fromisoformat(mapping["accepted_at"])
        due = accepted_at + timedelta(seconds=self._schedule[step + 1])
        if due >= deadline:
            return None
        return max((due - utcnow()).total_seconds(), 0.0)
