"""Baseline A: a bare Celery app — the Redis broker, the Redis result backend, late acks.

`celery -A worker.bench.bare worker -P threads -c C` runs it with the pool and concurrency of our
workers, prefetch multiplier 4 (Celery's default), late acks (`acks_late=True`, as ours: a message
is acknowledged when its task ended) and no task events (Celery's default). The producer side is
Celery's own `delay()` and `AsyncResult.get()`. `bench.noop` measures Celery's own round trip;
`bench.provider_call` makes the same request to the fake Twilio as our pipeline, with one shared
httpx client (keep-alive), for throughput, CPU per text and Redis commands per text. The broker
URL comes from `BENCH_REDIS_URL`; when the worker is ready it touches `BENCH_READY_FILE`, since
at log level WARNING it prints nothing to wait for.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import httpx
from celery import Celery, signals

from worker.bench import workload

QUEUE = "bench-bare"
NOOP = "bench.noop"
PROVIDER_CALL = "bench.provider_call"

_lock = threading.Lock()
_http: httpx.Client | None = None


def http() -> httpx.Client:
    """One client per process, shared by the threads, with a connection per thread."""
    global _http
    with _lock:
        if _http is None:
            size = int(os.environ.get("BENCH_HTTP_POOL", "1000"))
            limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
            _http = httpx.Client(limits=limits, timeout=10.0)
        return _http


def noop() -> None:
    return None


def provider_call(base_url: str) -> str:
    answer = http().post(
        workload.messages_url(base_url),
        data=workload.form(),
        auth=(workload.ACCOUNT_SID, workload.AUTH_TOKEN),
    )
    answer.raise_for_status()
    sid: str = answer.json()["sid"]
    return sid


def make_app(redis_url: str) -> Celery:
    app = Celery("bench_bare", broker=redis_url, backend=redis_url, set_as_current=False)
    app.conf.update(
        task_default_queue=QUEUE,
        result_expires=3600,
        broker_connection_retry_on_startup=True,
        task_acks_late=True,
        worker_prefetch_multiplier=4,
        worker_send_task_events=False,
        task_send_sent_event=False,
    )
    app.task(name=NOOP, acks_late=True)(noop)
    app.task(name=PROVIDER_CALL, acks_late=True)(provider_call)
    return app


def _on_ready(**_: Any) -> None:
    path = os.environ.get("BENCH_READY_FILE")
    if path:
        Path(path).touch()


signals.worker_ready.connect(_on_ready, weak=False)

#: what `celery -A worker.bench.bare` loads
app = make_app(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
