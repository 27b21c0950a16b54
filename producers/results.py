"""What `send()` returns: the outcome of one SMS, as the agent needs it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from producers.contract import ErrorInfo, Event, Job, Status, tool_message

ResultStatus = Literal["accepted", "failed", "pending", "delivered", "undelivered"]


@dataclass(frozen=True, slots=True)
class SendResult:
    """The outcome of `send()`.

    `status` is `accepted` (a provider took it), `failed` (it was not sent; `error` says why) or
    `pending` (no outcome within the timeout: it stays queued and will still be sent).
    """

    job_id: str
    status: ResultStatus
    tool_message: str
    error: ErrorInfo | None = None
    provider: str | None = None
    provider_message_id: str | None = None
    to: str | None = None
    from_: str | None = None
    segments: int | None = None
    attempts: int = 0
    possible_duplicate: bool = False
    events: tuple[Event, ...] = field(default=(), repr=False)

    @property
    def sent(self) -> bool:
        """True only when a provider accepted (or delivered) the message."""
        return self.status in ("accepted", "delivered")

    @classmethod
    def from_events(cls, job: Job, events: list[Event]) -> SendResult:
        """The result for `job` given the events seen so far (the last terminal one decides)."""
        last = next((e for e in reversed(events) if e.terminal), None)
        if last is None:
            latest = events[-1] if events else None
            return cls(
                job_id=job.job_id,
                status="pending",
                tool_message=tool_message("pending"),
                error=latest.error if latest else None,
                attempts=latest.attempt if latest else 0,
                events=tuple(events),
            )
        status: ResultStatus = "accepted" if last.status == Status.ACCEPTED else "failed"
        return cls(
            job_id=job.job_id,
            status=status,
            tool_message=last.tool_message,
            error=last.error,
            provider=last.provider,
            provider_message_id=last.provider_message_id,
            to=last.to,
            from_=last.from_,
            segments=last.segments,
            attempts=last.attempt,
            possible_duplicate=last.possible_duplicate,
            events=tuple(events),
        )
