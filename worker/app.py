"""The Celery app: the only module that knows Celery's configuration.

Settings that decide loss and duplication (the README's "Delivery guarantee" explains each):
- `task_acks_late` + `task_reject_on_worker_lost`: a message is acknowledged only after its
  outcome is stored, and comes back if the worker dies; the idempotency key makes the second
  delivery send nothing (or flag `possible_duplicate` in the one unavoidable window).
- `worker_prefetch_multiplier=1`: with late acks a worker reserves only as many messages as it
  has threads, so no SMS waits behind a busy thread while another worker is idle.
- crash recovery in seconds (README, "Delivery guarantee"): `broker_transport` is this project's
  hardened Redis transport (`worker.transport`): every worker keeps a heartbeat in Redis
  (`worker.liveness`), the transport records which worker reserved each message, and a sweep every
  `SMS_RESTORE_INTERVAL` s hands a dead worker's messages back at once. Retries wait in a Redis
  sorted set (`worker.delayed`), not in a worker, so the `visibility_timeout` (300 s) is only a
  backstop for messages whose worker is unknown, and it never takes work from a live worker.
- poison entries on the queue (not JSON, undecodable bodies, unknown tasks, …) go to the
  dead-letter list `sms:dead` (`worker.deadletter`): screened by the transport, and by the
  consumer's hooks (`worker_consumer` = `worker.consumer:Consumer`) for what only Celery can tell.
- the `threads` pool: a send waits on the network, so threads give high concurrency in one
  process and small memory; HTTP connection pools are shared by the threads (keep-alive).
- task events only while someone watches (`worker.task_events`): each costs a Redis PUBLISH,
  three per send (received, started, succeeded), so they are off by default
  (`worker_send_task_events=False`) and on while a monitor asks for them — Flower sends
  `enable_events` every 5 s, and a lease (`SMS_TASK_EVENTS_LEASE`) turns them off again when it
  stops. `SMS_TASK_EVENTS=true` keeps them on.
- Celery's `expires` is not used: the task enforces the job's `expires_at` and reports `expired`.

Operations (docs/operations.md):
- SIGTERM is Celery's warm shutdown: the consumer stops fetching, running sends finish, and
  reserved messages not yet started go back to the queue (kombu's restore at shutdown); the
  heartbeat stops, and its key is removed, only after the last task; the worker then exits 0.
- `worker.health` adds a worker bootstep (the /metrics, /healthz, /readyz endpoint on
  `SMS_METRICS_PORT`) and a consumer bootstep (the heartbeat behind /healthz).
- Logging is configured at `celeryd_init`, before Celery's own start-up warnings, and again at
  `setup_logging`, which stops Celery from configuring it; with JSON logs the start-up banner is
  replaced by one `worker.started` line, so every line of output is JSON.
"""

from __future__ import annotations

import sys
from typing import Any

import structlog
from celery import Celery, signals

from producers.contract import QUEUE
from worker import health, liveness, logs, redis_client, runtime, task_events, tasks, tracing, transport
from worker.settings import Settings


def create_app(settings: Settings | None = None) -> Celery:
    settings = settings or Settings()
    broker_url, broker_options = redis_client.broker(settings)
    app = Celery("midcall_sms", broker=broker_url, set_as_current=False)
    hardened = transport.transport_for(broker_url)
    if hardened is not None:
        app.conf.broker_transport = hardened
    app.conf.update(
        worker_consumer="worker.consumer:Consumer",
        task_default_queue=QUEUE,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_pool="threads",
        worker_concurrency=settings.concurrency,
        worker_send_task_events=settings.task_events,
        worker_hijack_root_logger=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        broker_connection_retry_on_startup=True,
        broker_channel_error_retry=True,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            "unacked_restore_interval": settings.restore_interval,
            "unacked_restore_throttle": 1,
            # A sweeper SIGKILLed inside its sweep must not block the others' for long.
            "unacked_mutex_expire": 5,
            "sms_heartbeat_ttl": settings.heartbeat_ttl,
            "sms_dead_letter_max": settings.dead_letter_max,
            "sms_dead_letter_ttl": settings.dead_letter_ttl,
            "socket_keepalive": True,
            "socket_connect_timeout": 2,
            "health_check_interval": 10,
            "retry_on_timeout": True,
            **broker_options,  # Sentinel: master_name (worker/redis_client.py)
        },
    )
    app.midcall_settings = settings
    app.steps["worker"].add(health.WorkerMonitor)
    app.steps["worker"].add(liveness.LivenessStep)
    app.steps["consumer"].add(health.ConsumerHeartbeat)
    app.steps["consumer"].add(task_events.TaskEventsLease)
    tasks.register(app, settings)
    return app


def _setup_logging(**_: Any) -> None:
    # Connecting this signal stops Celery from configuring logging itself: its loggers go
    # through ours.
    logs.configure_logging(Settings(), capture_warnings=True)


def _on_worker_init(instance: Any = None, **_: Any) -> None:
    # Before Celery's first start-up warning, so that it is a log line too.
    settings: Settings = instance.app.midcall_settings
    logs.configure_logging(settings, capture_warnings=True)
    tracing.configure(settings)
    if logs.renders_json(settings, sys.stderr):
        instance.quiet = True  # the multi-line banner is not JSON: `worker.started` says it instead


def _on_worker_setup(sender: str, instance: Any = None, **_: Any) -> None:
    app = instance.app
    settings: Settings = app.midcall_settings
    structlog.get_logger("worker.app").info(
        "worker.started",
        hostname=sender,
        pool=getattr(instance.pool_cls, "__module__", str(instance.pool_cls)),
        concurrency=instance.concurrency,
        queues=sorted(q.name for q in app.amqp.queues.consume_from.values()),
        broker=app.connection_for_read().as_uri(),
        metrics_port=settings.metrics_port or None,
    )


def _after_fork(**_: Any) -> None:
    runtime.reset()


def _at_shutdown(**_: Any) -> None:
    runtime.reset()
    tracing.shutdown()


signals.setup_logging.connect(_setup_logging, weak=False)
signals.celeryd_init.connect(_on_worker_init, weak=False)
signals.celeryd_after_setup.connect(_on_worker_setup, weak=False)
signals.worker_process_init.connect(_after_fork, weak=False)
signals.worker_process_shutdown.connect(_at_shutdown, weak=False)
signals.worker_shutdown.connect(_at_shutdown, weak=False)


app = create_app()
