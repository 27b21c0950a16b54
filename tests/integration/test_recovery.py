"""Crash recovery in call time, with the default recovery settings: a slow worker keeps its work,
a worker killed while its retries wait loses none, a Redis restart during recovery, and a
Retry-After longer than the visibility timeout never makes a copy send early."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from producers import CallContext, SendResult, SmsClient
from producers.contract import DELAYED_KEY, Event, worker_reserved_key
from tests.integration.conftest import AGENT_NUMBER, CALLER, WorkerFactory, WorkerProcess
from worker.metrics import UNACKED_KEY
from worker.redis_server import RedisServer
from worker.testing.actions import Error
from worker.testing.twilio import FakeTwilio


def call(call_id: str) -> CallContext:
    return CallContext(call_id=call_id, direction="inbound", from_number=CALLER, to_number=AGENT_NUMBER)


async def send_all(
    sms: SmsClient, prefix: str, total: int, timeout: float
) -> list[asyncio.Future[SendResult]]:
    return [
        asyncio.ensure_future(
            sms.send(
                agent_id="agent_abc123", call=call(f"{prefix}-{i}"), message=f"hello {i}", timeout=timeout
            )
        )
        for i in range(total)
    ]


async def terminal_events(sms: SmsClient, prefix: str, results: list[SendResult]) -> dict[str, list[Event]]:
    terminal: dict[str, list[Event]] = {}
    for i, result in enumerate(results):
        async for event in sms.events(f"{prefix}-{i}", idle_timeout=0.3):
            if event.job_id == result.job_id and event.terminal:
                terminal.setdefault(event.job_id, []).append(event)
    return terminal


def takeovers(*workers: WorkerProcess) -> int:
    return sum(
        w.output().count('"queue.worker_dead"') + w.output().count('"queue.visibility_restore"')
        for w in workers
    )


async def test_a_slow_worker_keeps_its_work(
    start_worker: WorkerFactory, config: Path, worker_env: dict[str, str], redis_url: str, twilio: FakeTwilio
) -> None:
    """The provider takes 20 s to answer (the provider timeout raised to let it): the worker that
    sent is alive and keeps its texts while a second worker idles; nothing is taken over or sent
    twice."""
    twilio.latency = 20.0
    env = {**worker_env, "SMS_PROVIDER_TIMEOUT": "30"}
    first = start_worker(config, env=env, concurrency=4)
    total = 4
    async with SmsClient.from_url(redis_url) as sms:
        jobs = await send_all(sms, "CA-slow", total, 60)
        await asyncio.to_thread(twilio.wait_for_requests, total, 10.0)
        second = await asyncio.to_thread(start_worker, config, env=env, concurrency=4)
        started = time.monotonic()
        results = await asyncio.gather(*jobs)
        waited = time.monotonic() - started
        terminal = await terminal_events(sms, "CA-slow", results)
    taken = takeovers(first, second)
    print(
        f"\nslow worker: texts={total} provider_answer=20s provider_requests={len(twilio.requests)} "
        f"accepted={sum(r.status == 'accepted' for r in results)} takeovers={taken} "
        f"duplicates_flagged={sum(r.possible_duplicate for r in results)} waited={waited:.1f}s"
    )
    assert [r.status for r in results] == ["accepted"] * total
    assert len(twilio.requests) == total, "no second request: the slow worker kept its work"
    assert taken == 0
    assert not any(r.possible_duplicate for r in results)
    assert all(len(v) == 1 for v in terminal.values()) and len(terminal) == total


async def test_a_worker_killed_while_its_retries_wait_loses_none(
    start_worker: WorkerFactory,
    config: Path,
    worker_env: dict[str, str],
    redis_url: str,
    redis_client: redis.Redis,
    twilio: FakeTwilio,
) -> None:
    """Four texts get a 429 with Retry-After: 4, then their worker is SIGKILLed during the wait:
    the retries wait in Redis, not in the dead worker, and a second worker sends each once when
    due, within 10 s of the kill."""
    early = 4
    twilio.script(*[Error(20429, status=429, headers={"Retry-After": "4"})] * early)
    first = start_worker(config, env=worker_env, concurrency=4)
    async with SmsClient.from_url(redis_url) as sms:
        jobs = await send_all(sms, "CA-wait", early, 60)
        deadline = time.monotonic() + 10
        while not (redis_client.zcard(DELAYED_KEY) == early and redis_client.hlen(UNACKED_KEY) == 0):
            assert time.monotonic() < deadline, "the retries should be waiting in the delayed set"
            await asyncio.sleep(0.05)
        second = await asyncio.to_thread(start_worker, config, env=worker_env, concurrency=4)
        waiting = int(redis_client.zcard(DELAYED_KEY))
        first.stop(signal.SIGKILL)
        killed_at = time.time()
        results = await asyncio.gather(*jobs)
        terminal = await terminal_events(sms, "CA-wait", results)
    last = max(e.at.timestamp() for v in terminal.values() for e in v) - killed_at
    bodies = [m.text or "" for m in twilio.accepted]
    flagged = sum(r.possible_duplicate for r in results)
    print(
        f"\nSIGKILL during retry wait: texts={early} waiting_at_kill={waiting} "
        f"accepted={sum(r.status == 'accepted' for r in results)} provider_requests={len(twilio.requests)} "
        f"last_terminal_after_kill={last:.1f}s duplicates_flagged={flagged} "
        f"second_worker_alive={second.process.poll() is None}"
    )
    assert waiting == early
    assert [r.status for r in results] == ["accepted"] * early
    assert len(twilio.requests) == 2 * early and sorted(bodies) == sorted(f"hello {i}" for i in range(early))
    assert last <= 10.0
    assert not any(r.possible_duplicate for r in results), "a 429 was never processed: no duplicate"
    assert all(len(v) == 1 for v in terminal.values()) and len(terminal) == early


async def test_retry_after_longer_than_the_visibility_timeout_never_sends_early(
    start_worker: WorkerFactory, config: Path, worker_env: dict[str, str], redis_url: str, twilio: FakeTwilio
) -> None:
    """A Retry-After of 15 s against a 10 s visibility timeout, two workers: the second request
    comes no earlier than 15 s after the first, and there is no third."""
    twilio.script(Error(20429, status=429, headers={"Retry-After": "15"}))
    env = {**worker_env, "SMS_VISIBILITY_TIMEOUT": "10"}
    workers = [start_worker(config, env=env, concurrency=4) for _ in range(2)]
    async with SmsClient.from_url(redis_url) as sms:
        result = await sms.send(agent_id="agent_abc123", call=call("CA-ra"), message="hello", timeout=40)
    await asyncio.sleep(1.0)  # a redelivered copy would show up as a third request
    gaps = [b.received_at - a.received_at for a, b in zip(twilio.requests, twilio.requests[1:], strict=False)]
    print(
        f"\nRetry-After 15 s > visibility timeout 10 s: provider_requests={len(twilio.requests)} "
        f"gap={gaps[0] if gaps else 0:.1f}s status={result.status} takeovers={takeovers(*workers)}"
    )
    assert result.status == "accepted"
    assert len(twilio.requests) == 2
    assert gaps[0] >= 15.0


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own, since the test restarts it."""
    with RedisServer(appendonly=True) as server:
        yield server


async def test_a_redis_restart_during_recovery(
    own_redis: RedisServer, config: Path, worker_env: dict[str, str], tmp_path: Path, twilio: FakeTwilio
) -> None:
    """A worker is SIGKILLed while the provider holds its requests, and Redis restarts right after:
    the surviving worker still takes over every text the dead one held, each ends in exactly one
    terminal event, and a resend is always flagged."""
    twilio.latency = 1.5
    workers = [
        WorkerProcess(
            own_redis.url, config, tmp_path / f"w{i}.log", concurrency=8, env=worker_env
        ).wait_ready()
        for i in range(2)
    ]
    first = workers[0]
    total = 16
    try:
        async with SmsClient.from_url(own_redis.url) as sms:
            jobs = await send_all(sms, "CA-rr", total, 90)
            await asyncio.to_thread(twilio.wait_for_requests, 12, 10.0)
            client = redis.Redis.from_url(own_redis.url)
            tags = client.smembers(worker_reserved_key(first.instance()))
            records = [client.hget(UNACKED_KEY, t) for t in tags]
            held = {json.loads(r)[0]["headers"]["id"] for r in records if r}
            client.close()
            first.stop(signal.SIGKILL)
            killed_at = time.time()
            in_flight = len(twilio.requests)
            await asyncio.to_thread(own_redis.restart)
            restarted_in = time.time() - killed_at
            results = await asyncio.gather(*jobs)
            terminal = await terminal_events(sms, "CA-rr", results)
    finally:
        for worker in workers:
            worker.stop()
    recovered = [terminal[j][0] for j in held if j in terminal]
    last = max((e.at.timestamp() for e in recovered), default=killed_at) - killed_at
    bodies = [r.form()["Body"] for r in twilio.requests]
    duplicated = {b for b in bodies if bodies.count(b) > 1}
    unflagged = sum(
        1 for i, r in enumerate(results) if f"hello {i}" in duplicated and not r.possible_duplicate
    )
    print(
        f"\nSIGKILL + Redis restart: sent={total} held_by_killed={len(held)} recovered={len(recovered)} "
        f"redis_back_after={restarted_in:.1f}s last_terminal_after_kill={last:.1f}s "
        f"accepted={sum(r.status == 'accepted' for r in results)} provider_requests={len(twilio.requests)} "
        f"in_flight_at_kill={in_flight} duplicates_flagged={sum(r.possible_duplicate for r in results)} "
        f"unflagged_duplicates={unflagged}"
    )
    assert len(held) >= 1 and len(recovered) == len(held)
    assert [r.status for r in results].count("accepted") == total
    assert all(len(terminal.get(r.job_id, [])) == 1 for r in results)
    assert unflagged == 0
    # The sweep waits out one heartbeat TTL after Redis starts, so the bound is looser than 10 s.
    assert last <= restarted_in + 15.0
