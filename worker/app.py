"""The Celery app: the only module that knows Celery's configuration.

Settings that decide loss and duplication (see shared/reference/celery-redis.md):
- `task_acks_late` + `task_reject_on_worker_lost`: a message is acknowledged only after its
  outcome is stored, and comes back if the worker dies; the idempotency key makes the second
  delivery send nothing (or flag `possible_duplicate` in the one unavoidable window).
- `worker_prefetch_multiplier=1`: with late acks a worker reserves only as many messages as it
  has threads, so no SMS waits behind a busy thread while another worker is idle.
- `visibility_timeout` (300 s) is longer than any retry countdown (bounded by
  `SMS_RETRY_MAX_DELAY` and the job's deadline), so a retry waiting for its ETA is never handed
  to a second worker. Restores of dead workers' messages are swept every `SMS_RESTORE_INTERVAL` s.
- the `threads` pool: a send waits on the network, so threads give high concurrency in one
  process and small memory; HTTP connection pools are shared by the threads (keep-alive).
- Celery's `expires` is not used: the task enforces the job's `expires_at` and reports `expired`.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, signals

from producers.contract import QUEUE
from worker import logs, runtime, tasks
from worker.settings import Settings


def create_app(settings: Settings | None = None) -> Celery:
    settings = settings or Settings()
    app = Celery("midcall_sms", broker=settings.redis_url, set_as_current=False)
    app.conf.update(
        task_default_queue=QUEUE,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_pool="threads",
        worker_concurrency=settings.concurrency,
        worker_send_task_events=True,
        worker_hijack_root_logger=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        broker_connection_retry_on_startup=True,
        broker_channel_error_retry=True,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            "unacked_restore_interval": settings.restore_interval,
            "unacked_restore_throttle": 1,
            "socket_keepalive": True,
            "socket_connect_timeout": 2,
            "health_check_interval": 10,
            "retry_on_timeout": True,
        },
    )
    app.midcall_settings = settings
    tasks.register(app, settings)
    return app


def _setup_logging(**_: Any) -> None:
    # Connecting this signal stops Celery from configuring logging itself: its loggers go
    # through ours.
    logs.configure_logging(Settings())


def _after_fork(**_: Any) -> None:
    runtime.reset()


def _at_shutdown(**_: Any) -> None:
    runtime.reset()


signals.setup_logging.connect(_setup_logging, weak=False)
signals.worker_process_init.connect(_after_fork, weak=False)
signals.worker_process_shutdown.connect(_at_shutdown, weak=False)
signals.worker_shutdown.connect(_at_shutdown, weak=False)


app = create_app()
