"""What `wait_delivery()` returns: whether one SMS reached the phone, as the agent can say it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from producers.contract import (
    DELIVERY_RANK,
    DELIVERY_STATUSES,
    PENDING_MESSAGE,
    ErrorInfo,
    Event,
    Status,
)

DeliveryState = Literal["delivered", "undelivered", "sent", "unconfirmed", "unknown"]
#: Said when a provider accepted the message and no receipt has come in yet.
ACCEPTED_NOT_CONFIRMED_MESSAGE = "SMS accepted by the provider; delivery not confirmed yet."
#: Statuses after which waiting longer learns nothing more (`unconfirmed` is Telnyx's final word).
_SETTLED = frozenset({Status.DELIVERED, Status.UNDELIVERED, Status.UNCONFIRMED})


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """Where one SMS stands after its receipts so far.

    `status`: `delivered`; `undelivered` (the carrier refused it, or it was never sent: `error`
    says why); `sent` (handed to the carrier, nothing final yet); `unconfirmed` (the carrier never
    confirmed: probably delivered, don't resend); `unknown` (no receipt in time). `tool_message` is
    one short true sentence for the model.
    """

    job_id: str
    status: DeliveryState
    tool_message: str
    error: ErrorInfo | None = None
    provider_message_id: str | None = None
    events: tuple[Event, ...] = field(default=(), repr=False)

    @property
    def delivered(self) -> bool:
        return self.status == "delivered"

    @property
    def settled(self) -> bool:
        """Nothing more will be learned by waiting (a final status, or the job failed)."""
        return self.status in ("delivered", "undelivered", "unconfirmed")

    @classmethod
    def from_events(cls, job_id: str, events: list[Event]) -> DeliveryResult:
        """The job's delivery state given the call's events so far (the highest-ranked receipt
        decides; a failed job is `undelivered` with its failure's error and sentence).

        Receipts count when they are the job's own, or of the message the job's `accepted` names:
        a repeated tool call is answered with the first send's outcome (same message id) under its
        own job id, and its receipts are published under the first job's.
        """
        mine = [e for e in events if e.job_id == job_id]
        failed = next((e for e in mine if e.status == Status.FAILED), None)
        if failed is not None:
            return cls(job_id, "undelivered", failed.tool_message, failed.error, events=tuple(mine))
        accepted = next((e for e in mine if e.status == Status.ACCEPTED), None)
        message_id = accepted.provider_message_id if accepted is not None else None
        receipts = [
            e
            for e in events
            if e.status in DELIVERY_STATUSES
            and (e.job_id == job_id or (message_id is not None and e.provider_message_id == message_id))
        ]
        if not receipts:
            message = ACCEPTED_NOT_CONFIRMED_MESSAGE if accepted is not None else PENDING_MESSAGE
            return cls(job_id, "unknown", message, provider_message_id=message_id, events=tuple(mine))
        best = max(receipts, key=lambda e: DELIVERY_RANK[e.status])  # the first of the highest rank
        state: DeliveryState = best.status.value  # type: ignore[assignment]
        return cls(
            job_id, state, best.tool_message, best.error, best.provider_message_id, tuple(mine + receipts)
        )

    @staticmethod
    def relevant(job_id: str, event: Event) -> bool:
        """Whether a wait for `job_id` keeps this event (its own, or any receipt of the call)."""
        return event.job_id == job_id or event.status in DELIVERY_STATUSES

    @staticmethod
    def settled_by(job_id: str, seen: list[Event]) -> bool:
        """Whether the events seen end a wait for `job_id` (a failure, or a settling receipt)."""
        return DeliveryResult.from_events(job_id, seen).settled
