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
        """The job's delivery state given its events so far (the highest-ranked receipt decides;
        a failed job is `undelivered` with its failure's error and sentence)."""
        mine = [e for e in events if e.job_id == job_id]
        failed = next((e for e in mine if e.status == Status.FAILED), None)
        if failed is not None:
            return cls(job_id, "undelivered", failed.tool_message, failed.error, events=tuple(mine))
        receipts = [e for e in mine if e.status in DELIVERY_STATUSES]
        accepted = next((e for e in mine if e.status == Status.ACCEPTED), None)
        if not receipts:
            message = ACCEPTED_NOT_CONFIRMED_MESSAGE if accepted is not None else PENDING_MESSAGE
            message_id = accepted.provider_message_id if accepted is not None else None
            return cls(job_id, "unknown", message, provider_message_id=message_id, events=tuple(mine))
        best = max(receipts, key=lambda e: DELIVERY_RANK[e.status])  # the first of the highest rank
        state: DeliveryState = best.status.value  # type: ignore[assignment]
        return cls(job_id, state, best.tool_message, best.error, best.provider_message_id, tuple(mine))

    @staticmethod
    def settles(event: Event) -> bool:
        """Whether this event ends a wait for its job."""
        return event.status in _SETTLED or event.status == Status.FAILED
