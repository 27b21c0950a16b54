"""The producer side of our pipeline: `SmsClient.send()` one at a time, on a schedule, and flat out.

Each function runs in its own producer process with its own event loop and client, and returns
plain lists: latencies and enqueue times in ms, statuses, and (flat out) monotonic completion times.
Every send is on its own call, as in production, so no reader wakes for another call's events.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
import uuid
from collections import Counter
from typing import Any

from producers.client import SmsClient
from producers.contract import Job, Status
from producers.results import SendResult
from worker.bench import workload

#: a send's result channel shows these in order; the gaps between them are the pipeline's stages
STAGES = ("call→sending", "sending→accepted", "accepted→result")


class TimedClient(SmsClient):
    """An `SmsClient` that records how long each `enqueue` (the producer's push) took, in ms."""

    enqueue_ms: list[float]

    async def enqueue(self, job: Job, message: bytes | None = None) -> str | None:
        start = time.perf_counter()
        queued_id = await super().enqueue(job, message)
        self.enqueue_ms.append((time.perf_counter() - start) * 1000)
        return queued_id


def _client(redis_url: str) -> TimedClient:
    client = TimedClient.from_url(redis_url)
    client.enqueue_ms = []
    return client


class Run:
    """One producer's samples; `as_dict()` is what goes back to the orchestrator."""

    def __init__(self, tag: str) -> None:
        self.tag = f"{tag}-{os.getpid()}"
        self.count = 0
        self.latency: list[float] = []
        self.completed: list[float] = []
        self.statuses: Counter[str] = Counter()
        self.stages: dict[str, list[float]] = {stage: [] for stage in STAGES}

    async def send(self, sms: SmsClient, agent: str, *, timeout: float, stages: bool = False) -> None:
        self.count += 1
        call = workload.call(f"bench-{self.tag}-{self.count}")  # the live call exists before the send
        called_at = time.time()
        start = time.perf_counter()
        result = await sms.send(
            agent_id=agent, call=call, template="booking",
            variables=workload.VARIABLES, timeout=timeout,
        )  # fmt: skip
        elapsed = (time.perf_counter() - start) * 1000
        self.statuses[result.status] += 1
        if result.status != "accepted":
            return
        self.latency.append(elapsed)
        self.completed.append(time.monotonic())
        if stages:
            self._stages(result, called_at, time.time())

    def _stages(self, result: SendResult, called_at: float, returned_at: float) -> None:
        at = {event.status: event.at.timestamp() for event in result.events}
        # send() reads its job's events after its own `queued` one, so the first worker stamp is `sending`.
        marks = [
            called_at,
            at.get(Status.SENDING),
            at.get(Status.ACCEPTED),
            returned_at,
        ]
        for stage, (begin, end) in zip(STAGES, itertools.pairwise(marks), strict=True):
            if begin is not None and end is not None:
                self.stages[stage].append((end - begin) * 1000)

    def as_dict(self, sms: TimedClient, **extra: Any) -> dict[str, Any]:
        return {
            "latency": self.latency,
            "enqueue": sms.enqueue_ms,
            "completed": self.completed,
            "statuses": dict(self.statuses),
            "stages": self.stages,
            **extra,
        }


async def _warm(sms: SmsClient, agent: str, count: int) -> None:
    run = Run(f"warmup-{uuid.uuid4().hex[:8]}")  # fresh calls: the per-call cap must not refuse them
    await asyncio.gather(*(run.send(sms, agent, timeout=10) for _ in range(count)))


def serial(redis_url: str, agent: str, n: int, warmup: int = 10) -> dict[str, Any]:
    """`n` sends, each waiting for the one before; with the stages of each from its events."""
    return asyncio.run(_serial(redis_url, agent, n, warmup))


async def _serial(redis_url: str, agent: str, n: int, warmup: int) -> dict[str, Any]:
    async with _client(redis_url) as sms:
        await _warm(sms, agent, warmup)
        sms.enqueue_ms.clear()
        run = Run("serial")
        for _ in range(n):
            await run.send(sms, agent, timeout=5.0, stages=True)
        return run.as_dict(sms, messages=n + warmup)


async def _probe_lag(stop: asyncio.Event, lags: list[float], interval: float = 0.001) -> None:
    """Sleep `interval` in a loop and record by how much each sleep overshot, in ms."""
    while not stop.is_set():
        start = time.perf_counter()
        await asyncio.sleep(interval)
        lags.append((time.perf_counter() - start - interval) * 1000)


async def _lag_for(seconds: float) -> list[float]:
    lags: list[float] = []
    stop = asyncio.Event()
    probe = asyncio.create_task(_probe_lag(stop, lags))
    await asyncio.sleep(seconds)
    stop.set()
    await probe
    return lags


def open_loop(
    redis_url: str, agent: str, rate: float, start_at: float, duration: float, timeout: float,
    probe_lag: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """Offered load: a send every 1/`rate` s for `duration` s, each started on schedule whether or
    not the earlier ones finished. With `probe_lag`, the event loop's lag is sampled meanwhile
    (and for half a second before, idle, as a control)."""
    return asyncio.run(_open_loop(redis_url, agent, rate, start_at, duration, timeout, probe_lag))


async def _open_loop(
    redis_url: str, agent: str, rate: float, start_at: float, duration: float, timeout: float, probe_lag: bool
) -> dict[str, Any]:
    async with _client(redis_url) as sms:
        await _warm(sms, agent, 5)
        sms.enqueue_ms.clear()
        idle_lag = await _lag_for(0.5) if probe_lag else []
        run = Run(f"rate{rate:g}")
        lags: list[float] = []
        stop = asyncio.Event()
        probe = asyncio.create_task(_probe_lag(stop, lags)) if probe_lag else None
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        began = time.monotonic()
        total = max(1, round(rate * duration))
        late: list[float] = []
        tasks = []
        for i in range(total):
            due = began + i / rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            late.append((time.monotonic() - due) * 1000)
            tasks.append(asyncio.create_task(run.send(sms, agent, timeout=timeout)))
        offered_for = time.monotonic() - began
        await asyncio.gather(*tasks)
        stop.set()
        if probe is not None:
            await probe
        return run.as_dict(
            sms, lag=lags, idle_lag=idle_lag, late=late, sent=total, offered_seconds=offered_for,
            began=began, finished=time.monotonic(),
        )  # fmt: skip


def saturation(
    redis_url: str, agent: str, in_flight: int, start_at: float, stop_at: float, timeout: float
) -> dict[str, Any]:
    """Flat out: `in_flight` sends outstanding (each starts when one ends) until `stop_at`."""
    return asyncio.run(_saturation(redis_url, agent, in_flight, start_at, stop_at, timeout))


async def _saturation(
    redis_url: str, agent: str, in_flight: int, start_at: float, stop_at: float, timeout: float
) -> dict[str, Any]:
    async with _client(redis_url) as sms:
        run = Run("saturation")

        async def loop() -> None:
            while time.monotonic() < stop_at:
                await run.send(sms, agent, timeout=timeout)

        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        await asyncio.gather(*(loop() for _ in range(in_flight)))
        return run.as_dict(sms, failures=sum(n for s, n in run.statuses.items() if s != "accepted"))
