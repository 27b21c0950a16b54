"""The producer side of the floor and the baselines; each function runs in a producer process.

Every function returns plain lists of milliseconds (or monotonic completion times) for the
orchestrator to summarise. `time.monotonic()` is CLOCK_MONOTONIC on Linux, shared by all processes.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter, deque
from typing import Any

import httpx
import redis
from celery.exceptions import TimeoutError as CeleryTimeout
from celery.result import AsyncResult

from worker.bench import bare, workload
from worker.bench.rawworker import JOBS

_WARMUP = 5


def _ms(since: float) -> float:
    return (time.perf_counter() - since) * 1000


def _sleep_until(at: float) -> None:
    time.sleep(max(0.0, at - time.monotonic()))


def floor(redis_url: str, n: int) -> dict[str, Any]:
    """Raw Redis, one at a time: LPUSH a job, the raw worker BRPOPs it and LPUSHes the reply, BLPOP."""
    client = redis.Redis.from_url(redis_url)
    round_trip: list[float] = []
    push: list[float] = []
    try:
        for i in range(-_WARMUP, n):
            reply = f"bench:raw:reply:{os.getpid()}:{i}"
            start = time.perf_counter()
            client.lpush(JOBS, reply)
            pushed = _ms(start)
            if client.blpop([reply], timeout=5) is None:
                raise TimeoutError("the raw worker did not reply within 5 s")
            if i >= 0:
                round_trip.append(_ms(start))
                push.append(pushed)
    finally:
        client.close()
    return {"round_trip": round_trip, "push": push, "messages": n + _WARMUP}


def direct(base_url: str, n: int, concurrency: int = 1) -> dict[str, list[float]]:
    """Baseline B: the provider request made from an asyncio producer with httpx, no queue."""
    return asyncio.run(_direct(base_url, n, concurrency))


async def _direct(base_url: str, n: int, concurrency: int) -> dict[str, list[float]]:
    url, data, auth = (
        workload.messages_url(base_url),
        workload.form(),
        (workload.ACCOUNT_SID, workload.AUTH_TOKEN),
    )
    samples: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=10.0) as client:

        async def calls(count: int, record: bool) -> None:
            for _ in range(count):
                start = time.perf_counter()
                answer = await client.post(url, data=data, auth=auth)
                answer.raise_for_status()
                if record:
                    samples.append(_ms(start))

        await asyncio.gather(*(calls(_WARMUP, False) for _ in range(concurrency)))
        share, extra = divmod(n, concurrency)
        await asyncio.gather(*(calls(share + (i < extra), True) for i in range(concurrency)))
    return {"round_trip": samples}


def bare_serial(redis_url: str, n: int) -> dict[str, Any]:
    """Baseline A, one at a time: `noop.delay()` then `.get()` on the Redis backend."""
    app = bare.make_app(redis_url)
    task = app.tasks[bare.NOOP]
    round_trip: list[float] = []
    send: list[float] = []
    try:
        for i in range(-_WARMUP, n):
            start = time.perf_counter()
            result = task.delay()
            sent = _ms(start)
            result.get(timeout=10)
            if i >= 0:
                round_trip.append(_ms(start))
                send.append(sent)
    finally:
        app.close()
    return {"round_trip": round_trip, "send": send, "messages": n + _WARMUP}


def bare_saturation(
    redis_url: str, base_url: str, in_flight: int, start_at: float, stop_at: float, timeout: float
) -> dict[str, Any]:
    """Baseline A under load: `in_flight` provider calls outstanding until `stop_at`.

    One thread does everything (Celery's result consumer is not thread-safe): it tops the window
    up with `delay()`, then `.get()`s the oldest; results that arrived meanwhile are already
    cached by the consumer, so reading them in order costs nothing.
    """
    app = bare.make_app(redis_url)
    task = app.tasks[bare.PROVIDER_CALL]
    pending: deque[AsyncResult] = deque()
    completed: list[float] = []
    failures = 0
    _sleep_until(start_at)
    try:
        while True:
            if time.monotonic() < stop_at:
                while len(pending) < in_flight:
                    pending.append(task.delay(base_url))
            if not pending:
                break
            try:
                pending.popleft().get(timeout=timeout)
                completed.append(time.monotonic())
            except Exception:
                failures += 1
    finally:
        app.close()
    return {"completed": completed, "failures": failures}


def bare_open_loop(
    redis_url: str, base_url: str, rate: float, start_at: float, duration: float, timeout: float
) -> dict[str, Any]:
    """Baseline A at an offered load: a `delay()` every 1/`rate` s for `duration` s, on schedule.

    One thread (Celery's result consumer is not thread-safe): between two due sends it waits on the
    oldest pending result with `.get(timeout=…)` until the next send is due. When one returns, every
    later result already cached by the consumer is taken too, at the same instant, so a result is
    counted at most one wait late (a wait is at most 1/`rate` s); the latencies are an upper bound.
    """
    app = bare.make_app(redis_url)
    task = app.tasks[bare.PROVIDER_CALL]
    pending: deque[tuple[float, AsyncResult]] = deque()
    latency: list[float] = []
    enqueue: list[float] = []
    statuses: Counter[str] = Counter()
    total = max(1, round(rate * duration))
    _sleep_until(start_at)
    began = time.monotonic()
    sent = 0

    def done(started: float, result: AsyncResult, now: float) -> None:
        ok = result.successful()
        statuses["accepted" if ok else "failed"] += 1
        if ok:
            latency.append((now - started) * 1000)

    try:
        while sent < total or pending:
            now = time.perf_counter()
            due = began + sent / rate
            if sent < total and time.monotonic() >= due:
                pending.append((now, task.delay(base_url)))
                enqueue.append(_ms(now))
                sent += 1
                continue
            if not pending:
                _sleep_until(due)
                continue
            started, result = pending[0]
            wait = max(0.0005, due - time.monotonic()) if sent < total else timeout
            try:
                result.get(timeout=wait, propagate=False)
            except CeleryTimeout:
                if time.perf_counter() - started > timeout:
                    pending.popleft()
                    statuses["timeout"] += 1
                continue
            now = time.perf_counter()
            done(*pending.popleft(), now)
            while pending and getattr(pending[0][1], "_cache", None) is not None:  # cached meanwhile
                done(*pending.popleft(), now)
    finally:
        app.close()
    return {
        "latency": latency, "enqueue": enqueue, "statuses": dict(statuses), "sent": total,
        "began": began, "finished": time.monotonic(), "completed": [],
    }  # fmt: skip
