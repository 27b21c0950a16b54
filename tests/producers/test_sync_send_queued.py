"""`SyncSmsClient.send()`: the same guarantees as the async client, bounded by socket timeouts."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis

from producers import SendResult, SyncSmsClient
from producers.contract import QUEUE
from producers.envelope import task_message
from producers.jobs import build_job
from tests.netfaults import FreezingProxy, HungServer
from tests.producers.test_send_queued import CALL, call, check_pending_means_queued, cpu_load, queued_job_ids
from worker.redis_server import RedisServer, free_port

__all__ = ["cpu_load"]  # the fixture, used by name below


def test_a_tiny_timeout_still_queues_the_job_and_answers_pending(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """`send(timeout=0.001)` finishes its enqueue first: `pending`, and the job is in Redis."""
    with SyncSmsClient.from_url(redis_url) as sms:
        result = sms.send(agent_id="a1", call=CALL, message="hi", timeout=0.001)
    assert result.status == "pending"
    assert queued_job_ids(redis_client) == {result.job_id}


def _send_many(url: str, count: int, *, enqueue_timeout: float) -> list[SendResult]:
    with SyncSmsClient.from_url(url, enqueue_timeout=enqueue_timeout) as sms, ThreadPoolExecutor(32) as pool:
        return list(
            pool.map(
                lambda i: sms.send(agent_id="a1", call=call(i), message="hi", timeout=0.001), range(count)
            )
        )


def test_many_threads_with_tiny_timeouts_under_cpu_load_are_all_queued(
    redis_url: str, redis_client: redis.Redis, cpu_load: None
) -> None:
    """500 sends from 32 threads, timeout=0.001, both cores busy: every `pending` job is in Redis,
    and with a budget long enough for the load every job is queued."""
    results = _send_many(redis_url, 500, enqueue_timeout=20)
    counts = check_pending_means_queued(results, queued_job_ids(redis_client), "sync, 20 s budget")
    assert counts["pending"] == 500


def test_a_redis_that_stalls_now_and_then_gets_not_queued_answers_never_false_pendings(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    """Redis stalls for 100 ms every 200 ms (a proxy stops forwarding) while 16 threads send with
    a 50 ms budget: sends caught by a stall fail "not queued" and are not in Redis (retracted or
    fenced once it answers again); every `pending` one is in Redis."""
    with FreezingProxy(redis_server.port) as proxy:
        stop = threading.Event()

        def stall() -> None:
            while not stop.is_set():
                proxy.freeze()
                time.sleep(0.1)
                proxy.thaw()
                time.sleep(0.1)

        staller = threading.Thread(target=stall, daemon=True)
        staller.start()
        try:
            with (
                SyncSmsClient.from_url(proxy.url, enqueue_timeout=0.05) as sms,
                ThreadPoolExecutor(16) as pool,
            ):
                results = list(
                    pool.map(
                        lambda i: sms.send(agent_id="a1", call=call(i), message="hi", timeout=0.001),
                        range(300),
                    )
                )
        finally:
            stop.set()
            staller.join()
            proxy.thaw()
    time.sleep(0.5)
    counts = check_pending_means_queued(
        results, queued_job_ids(redis_client), "sync, stalling Redis, 50 ms budget"
    )
    assert counts["failed"] > 0, "no send met a stall: the test did not exercise the timeout path"


def test_redis_down_fails_not_queued_within_the_budget() -> None:
    """Nothing listens on the port: `failed` / `provider_unavailable`, "not queued", in bounded time."""
    with SyncSmsClient.from_url(f"redis://127.0.0.1:{free_port()}/0", enqueue_timeout=0.5) as sms:
        started = time.monotonic()
        result = sms.send(agent_id="a1", call=CALL, message="hi", timeout=5)
        elapsed = time.monotonic() - started
    print(f"\nsync, Redis down: status={result.status} elapsed={elapsed:.2f}s")
    assert result.status == "failed"
    assert result.error is not None and result.error.code == "provider_unavailable"
    assert "not queued" in result.error.message
    assert elapsed < 0.5 + 1.0 + 0.5


@pytest.mark.parametrize("timeout", [0.001, 5.0])
def test_a_hung_redis_cannot_block_send_past_its_bound(timeout: float) -> None:
    """A server that accepts and never answers: the socket timeouts end the send `failed` / "not
    queued" after the push's budget and the retraction's, whatever the send's own timeout."""
    with HungServer() as hung, SyncSmsClient.from_url(hung.url, enqueue_timeout=0.4) as sms:
        started = time.monotonic()
        result = sms.send(agent_id="a1", call=CALL, message="hi", timeout=timeout)
        elapsed = time.monotonic() - started
        accepted = hung.accepted
    print(f"\nsync, hung Redis, timeout={timeout}: status={result.status} elapsed={elapsed:.2f}s")
    assert accepted >= 1, "the client never reached the hung server"
    assert result.status == "failed"
    assert result.error is not None and "not queued" in result.error.message
    assert elapsed < 0.4 + 1.0 + 0.6


def test_redis_freezing_during_the_wait_answers_pending_on_time(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    """Redis stops answering after the job is queued: the wait's own read timeout ends it at its
    timeout plus the grace, `pending`, for a job that is in Redis."""
    job = build_job(agent_id="a1", call=CALL, message="hi")
    with FreezingProxy(redis_server.port) as proxy, SyncSmsClient.from_url(proxy.url) as sms:
        queued_id = sms.enqueue(job)
        assert queued_id is not None
        proxy.freeze()
        started = time.monotonic()
        result = sms.wait(job, timeout=0.3, since=queued_id)
        elapsed = time.monotonic() - started
        proxy.thaw()
    print(f"\nsync, Redis frozen during the wait: status={result.status} elapsed={elapsed:.2f}s")
    assert result.status == "pending"
    assert job.job_id in queued_job_ids(redis_client)
    assert elapsed < 0.3 + 0.8


def test_events_on_a_frozen_redis_raise_instead_of_hanging(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    """`events()` reads with the same bounded timeout: a frozen Redis raises a Redis timeout."""
    with FreezingProxy(redis_server.port) as proxy, SyncSmsClient.from_url(proxy.url) as sms:
        sms.enqueue(build_job(agent_id="a1", call=CALL, message="hi"))
        proxy.freeze()
        started = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            list(sms.events(CALL.call_id, idle_timeout=0.2))
        elapsed = time.monotonic() - started
        proxy.thaw()
    assert elapsed < 0.2 + 0.8


def test_the_retraction_protocol_matches_the_async_client(redis_url: str, redis_client: redis.Redis) -> None:
    """Retracting a waiting push removes it and ends the job `failed`; a popped one stays queued;
    a push after a retraction does nothing."""
    with SyncSmsClient.from_url(redis_url) as sms:
        waiting = build_job(agent_id="a1", call=CALL, message="hi")
        message = task_message(waiting)
        sms.enqueue(waiting, message)
        retracted = sms._retract(waiting, message, "test")
        assert isinstance(retracted, SendResult) and retracted.status == "failed"
        assert queued_job_ids(redis_client) == set()
        statuses = [(e.status.value, e.terminal) for e in sms.events(CALL.call_id, idle_timeout=0.05)]
        assert statuses == [("queued", False), ("failed", True)]

        taken = build_job(agent_id="a1", call=call(2), message="hi")
        message = task_message(taken)
        queued_id = sms.enqueue(taken, message)
        redis_client.rpop(QUEUE)
        assert sms._retract(taken, message, "test") == queued_id

        late = build_job(agent_id="a1", call=call(3), message="hi")
        message = task_message(late)
        fenced: Any = sms._retract(late, message, "test")
        assert fenced.status == "failed"
        assert sms.enqueue(late, message) is None
    assert queued_job_ids(redis_client) == set()
