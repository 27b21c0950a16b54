"""What `SmsClient` and `SyncSmsClient` share: construction, the enqueue budget, the arguments of
the fenced scripts, and the target of `wait_delivery` — the I/O stays in each client."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from producers.channel import queued_event
from producers.contract import Job
from producers.enqueue import fence_ttl, keys, not_queued_event
from producers.results import SendResult

#: Seconds one enqueue may take (connecting included) before the job counts as not queued. It is
#: the enqueue's own budget, independent of `send(timeout=...)`: a send returns `pending` only
#: after its job is in Redis, so `send()` takes at most max(timeout, ENQUEUE_TIMEOUT) + a grace.
ENQUEUE_TIMEOUT = 1.0

R = TypeVar("R")


class ClientBase(Generic[R]):
    """The state both clients start from: a redis-py client (async or not), whether closing the
    client closes it, and the enqueue budget."""

    def __init__(
        self, redis: R, *, owns_redis: bool = False, enqueue_timeout: float = ENQUEUE_TIMEOUT
    ) -> None:
        if enqueue_timeout <= 0:
            raise ValueError("enqueue_timeout must be positive")
        self._redis = redis
        self._owns_redis = owns_redis
        self._enqueue_timeout = enqueue_timeout

    @property
    def redis(self) -> R:
        """The client's Redis connection (for reading a call's channel directly)."""
        return self._redis

    def _budget_reason(self) -> str:
        return f"the SMS queue (Redis) did not answer within {self._enqueue_timeout:g} s"


def enqueue_args(job: Job, message: bytes) -> tuple[Any, ...]:
    """KEYS and ARGV of the `ENQUEUE` script for `job` (`producers/enqueue.py`)."""
    return (*keys(job.job_id, job.call.call_id), queued_event(job).dumps(), message, fence_ttl(job))


def retract_args(job: Job, message: bytes, reason: str) -> tuple[Any, ...]:
    """KEYS and ARGV of the `RETRACT` script for `job`, whose failed push said `reason`."""
    return (
        *keys(job.job_id, job.call.call_id),
        message,
        not_queued_event(job, reason).dumps(),
        fence_ttl(job),
    )


def delivery_target(result_or_job_id: SendResult | str, call_id: str | None) -> tuple[str, str]:
    """The job id and call id `wait_delivery` reads (a `SendResult` knows its call from its events)."""
    if isinstance(result_or_job_id, SendResult):
        job_id = result_or_job_id.job_id
        call_id = call_id or next((e.call_id for e in result_or_job_id.events), None)
    else:
        job_id = result_or_job_id
    if not isinstance(job_id, str) or not job_id:
        raise TypeError("wait_delivery() takes a SendResult or a job id")
    if not call_id:
        raise ValueError("wait_delivery() needs call_id= for this result")
    return job_id, call_id
