"""The producer side of the floor and the baselines; each function runs in a producer process.

Every function returns plain lists of milliseconds (or monotonic completion times) for the
orchestrator to summarise. `time.monotonic()` is CLOCK_MONOTONIC on Linux, shared by all processes.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from typing import Any

import httpx
import redis
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
    """Baseline A, one at a time: `send_task("bench.noop")` then `.get()` on the Redis backend."""
    app = bare.make_app(redis_url)
    round_trip: list[float] = []
    send: list[float] = []
    try:
        for i in range(-_WARMUP, n):
            start = time.perf_counter()
            result = app.send_task(bare.NOOP)
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
    up with `send_task`, then `.get()`s the oldest; results that arrived meanwhile are already
    cached by the consumer, so reading them in order costs nothing.
    """
    app = bare.make_app(redis_url)
    pending: deque[AsyncResult] = deque()
    completed: list[float] = []
    failures = 0
    _sleep_until(start_at)
    try:
        while True:
            if time.monotonic() < stop_at:
                while len(pending) < in_flight:
                    pending.append(app.send_task(bare.PROVIDER_CALL, args=(base_url,)))
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
