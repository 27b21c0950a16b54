"""The Celery task `sms.send`: decode, hand to the service, turn "retry in N s" into a Celery retry."""

from __future__ import annotations

from typing import Any

from celery import Celery, Task
from celery.exceptions import Reject
from redis.exceptions import RedisError

from producers.contract import TASK_NAME
from worker import liveness, logs, metrics, runtime
from worker.polling import POLL_TASK
from worker.settings import Settings


def _summary(job: Any) -> str:
    """What Celery shows for the job (Flower, its logs): no number, no text."""
    if not isinstance(job, dict):
        return "{'job': <malformed>}"
    return f"{{'job': '<job {job.get('job_id')} agent={job.get('agent_id')}>'}}"


def send(self: Task, job: Any = None, **unexpected: Any) -> None:
    """`sms.send(job=...)`: one delivery of one job (see `worker.service`)."""
    settings: Settings = self.app.midcall_settings
    if unexpected:
        job = {"__unexpected_arguments__": sorted(unexpected), **(job if isinstance(job, dict) else {})}
    attempt = int(self.request.retries or 0) + 1
    owner = liveness.new_owner()  # `<instance>:<random>`: its heartbeat key is derivable
    logs.bind(job_id=self.request.id, attempt=attempt)
    try:
        with metrics.IN_FLIGHT.track_inprogress():
            delay = runtime.get(settings).service.handle(job, attempt=attempt, owner=owner)
    except RedisError as exc:
        # Redis is unreachable mid-send: hand the message back rather than drop it. If even that
        # fails, it stays in Redis's unacked set and is restored after the visibility timeout.
        raise Reject(f"redis unavailable: {type(exc).__name__}", requeue=True) from exc
    finally:
        logs.clear()
    if delay is not None:
        try:
            raise self.retry(countdown=delay, kwargsrepr=_summary(job))
        except Reject as exc:
            # Celery could not publish the retry (Redis went away) and would drop the message;
            # hand it back instead: the key is held for this job, so the redelivery takes over.
            raise Reject(f"retry not published: {exc.reason!r}", requeue=True) from exc


def poll_receipt(self: Task, provider: str = "", message_id: str = "", step: int = 0, **_: Any) -> None:
    """`sms.poll_receipt(provider, message_id, step)`: one status poll (see `worker.polling`);
    schedules the next step itself while the message has no final status."""
    settings: Settings = self.app.midcall_settings
    logs.bind(provider=provider, provider_message_id=message_id, poll_step=step)
    try:
        delay = runtime.get(settings).poller.poll(provider, message_id, int(step))
        if delay is not None:
            self.apply_async(
                kwargs={"provider": provider, "message_id": message_id, "step": int(step) + 1},
                countdown=delay,
                task_id=f"poll:{provider}:{message_id}:{int(step) + 1}",
            )
    except RedisError as exc:
        raise Reject(f"redis unavailable: {type(exc).__name__}", requeue=True) from exc
    finally:
        logs.clear()


def register(app: Celery, settings: Settings) -> None:
    app.task(name=TASK_NAME, bind=True, ignore_result=True, max_retries=None, typing=False)(send)
    app.task(name=POLL_TASK, bind=True, ignore_result=True, max_retries=0, typing=False)(poll_receipt)
