"""`SmsClient.send()`: `pending` only for a job that is in Redis; the enqueue has its own budget."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from producers import CallContext, SendResult, SmsClient
from producers.contract import QUEUE
from producers.enqueue import UNCONFIRMED
from producers.envelope import task_message
from producers.jobs import build_job
from tests.netfaults import FreezingProxy, HungServer
from worker.redis_server import RedisServer, free_port

CALL = CallContext(call_id="CA-q", direction="inbound", from_number="+14155551234", to_number="+14155550000")


def queued_job_ids(client: redis.Redis) -> set[str]:
    """The job ids of every task message waiting on the `sms` list."""
    entries: list[bytes] = client.lrange(QUEUE, 0, -1)  # type: ignore[assignment]
    return {json.loads(entry)["headers"]["id"] for entry in entries}


def call(i: int) -> CallContext:
    return CALL.model_copy(update={"call_id": f"CA-q{i}"})


def _burn(stop_at: float) -> None:
    while time.monotonic() < stop_at:
        pass


@pytest.fixture
def cpu_load() -> Iterator[None]:
    """Two processes spinning on the CPU (this machine has two cores) while the test runs."""
    stop_at = time.monotonic() + 60
    burners = [multiprocessing.get_context("spawn").Process(target=_burn, args=(stop_at,)) for _ in range(2)]
    for burner in burners:
        burner.start()
    yield
    for burner in burners:
        burner.terminate()
        burner.join()


def check_pending_means_queued(results: list[SendResult], in_redis: set[str], label: str) -> Counter[str]:
    """Print the counts and return them; every `pending` job is in Redis, every failure says "not queued"."""
    counts: Counter[str] = Counter(r.status for r in results)
    pending_not_in_redis = [r.job_id for r in results if r.status == "pending" and r.job_id not in in_redis]
    failed = [r for r in results if r.status == "failed"]
    unconfirmed = [r for r in failed if r.error and UNCONFIRMED in r.error.message]
    failed_but_queued = sum(r.job_id in in_redis for r in failed)
    print(
        f"\n{label}: sent={len(results)} pending={counts['pending']} in_redis={len(in_redis)} "
        f"pending_not_in_redis={len(pending_not_in_redis)} failed_not_queued={len(failed)} "
        f"failed_but_in_redis={failed_but_queued} unconfirmed={len(unconfirmed)}"
    )
    assert pending_not_in_redis == [], "send() answered pending for a job that is not in Redis"
    assert failed_but_queued <= len(unconfirmed), "a job said not queued (and confirmed) is in Redis"
    assert all(r.error and "not queued" in r.error.message for r in failed), failed[:3]
    return counts


async def test_a_tiny_timeout_still_queues_the_job_and_answers_pending(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """`send(timeout=0.001)` waits for its enqueue (its own budget), so the job is in Redis and the
    answer is `pending`, never a `pending` for a job that was cut off before reaching Redis."""
    async with SmsClient.from_url(redis_url) as sms:
        result = await sms.send(agent_id="a1", call=CALL, message="hi", timeout=0.001)
    assert result.status == "pending"
    assert queued_job_ids(redis_client) == {result.job_id}


async def test_a_thousand_concurrent_tiny_timeouts_under_cpu_load_are_all_queued(
    redis_url: str, redis_client: redis.Redis, cpu_load: None
) -> None:
    """1,000 sends at once with timeout=0.001 while both cores are busy: every `pending` job is in
    Redis (with a budget long enough for the load, all of them are queued)."""
    async with SmsClient.from_url(redis_url, enqueue_timeout=20) as sms:
        results = await asyncio.gather(
            *(sms.send(agent_id="a1", call=call(i), message="hi", timeout=0.001) for i in range(1000))
        )
    counts = check_pending_means_queued(
        list(results), queued_job_ids(redis_client), "tiny timeouts, 20 s budget"
    )
    assert counts["pending"] == 1000


async def test_a_budget_too_short_for_the_load_fails_not_queued_instead_of_pending(
    redis_url: str, redis_client: redis.Redis, cpu_load: None
) -> None:
    """With a 5 ms enqueue budget, 1,000 concurrent sends under CPU load cannot all be queued in
    time: those that were not end `failed` / "not queued" and are not in Redis (retracted or
    fenced); every `pending` one is in Redis."""
    async with SmsClient.from_url(redis_url, enqueue_timeout=0.005) as sms:
        results = await asyncio.gather(
            *(sms.send(agent_id="a1", call=call(i), message="hi", timeout=0.001) for i in range(1000))
        )
    await asyncio.sleep(0.5)  # let Redis finish anything it had already read
    counts = check_pending_means_queued(
        list(results), queued_job_ids(redis_client), "tiny timeouts, 5 ms budget"
    )
    assert counts["failed"] > 0, "the budget never ran out: the test did not exercise the timeout path"


async def test_a_cancelled_send_still_finishes_its_enqueue(redis_url: str, redis_client: redis.Redis) -> None:
    """Cancelling `send()` (the caller's own `wait_for`) does not cut the enqueue half-way: the job
    is queued, with its `queued` event, by the time the client is closed."""
    async with SmsClient.from_url(redis_url) as sms:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(sms.send(agent_id="a1", call=CALL, message="hi", timeout=5), 0.0001)
    [job_id] = queued_job_ids(redis_client)
    entries: Any = redis_client.xrange("sms:events:CA-q")
    assert [json.loads(fields[b"event"])["job_id"] for _, fields in entries] == [job_id]


async def test_redis_down_fails_not_queued_within_the_budget() -> None:
    """Nothing listens on the port: `failed` / `provider_unavailable`, "not queued", once the
    push's budget and the retraction's are spent (connection errors are tried again until then)."""
    async with SmsClient.from_url(f"redis://127.0.0.1:{free_port()}/0", enqueue_timeout=0.5) as sms:
        started = time.monotonic()
        result = await sms.send(agent_id="a1", call=CALL, message="hi", timeout=5)
        elapsed = time.monotonic() - started
    print(f"\nRedis down: status={result.status} elapsed={elapsed:.2f}s")
    assert result.status == "failed"
    assert result.error is not None and result.error.code == "provider_unavailable"
    assert "not queued" in result.error.message
    assert elapsed < 0.5 + 1.0 + 0.5  # the push's budget, then the retraction's


@pytest.mark.parametrize("timeout", [0.001, 5.0])
async def test_a_hung_redis_fails_not_queued_within_the_budget(timeout: float) -> None:
    """A server that accepts connections and never answers: the send ends `failed` / "not
    queued" once the enqueue budget is spent, whatever the send's own timeout."""
    with HungServer() as hung:
        async with SmsClient.from_url(hung.url, enqueue_timeout=0.4) as sms:
            started = time.monotonic()
            result = await sms.send(agent_id="a1", call=CALL, message="hi", timeout=timeout)
            elapsed = time.monotonic() - started
    print(f"\nhung Redis, timeout={timeout}: status={result.status} elapsed={elapsed:.2f}s")
    assert result.status == "failed"
    assert result.error is not None and "did not answer" in result.error.message
    # the push's budget, then the retraction's (at least 1 s), which gets no answer either
    assert 0.35 < elapsed < 0.4 + 1.0 + 0.5


async def test_redis_freezing_after_the_enqueue_leaves_a_pending_answer_on_time(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    """Redis stops answering after the job is queued: the wait gives up at its timeout (plus the
    read grace) and answers `pending` for a job that is in Redis."""
    job = build_job(agent_id="a1", call=CALL, message="hi")
    with FreezingProxy(redis_server.port) as proxy:
        async with SmsClient.from_url(proxy.url) as sms:
            queued_id = await sms.enqueue(job)
            assert queued_id is not None
            proxy.freeze()
            started = time.monotonic()
            result = await sms.wait(job, timeout=0.3, since=queued_id)
            elapsed = time.monotonic() - started
            proxy.thaw()
    print(f"\nRedis frozen during the wait: status={result.status} elapsed={elapsed:.2f}s")
    assert result.status == "pending"
    assert job.job_id in queued_job_ids(redis_client)
    assert elapsed < 0.3 + 0.6


async def test_a_retracted_push_is_off_the_queue_with_a_terminal_event(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """A push that landed but whose answer came too late is taken back off the list, and the call's
    channel ends the job with `failed` "not queued" after its `queued` event."""
    job = build_job(agent_id="a1", call=CALL, message="hi")
    async with SmsClient.from_url(redis_url) as sms:
        message = task_message(job)
        assert await sms.enqueue(job, message) is not None
        result = await sms._retract(job, message, "test")
        events = [e async for e in sms.events("CA-q", idle_timeout=0.05)]
    assert isinstance(result, SendResult) and result.status == "failed"
    assert queued_job_ids(redis_client) == set()
    assert [(e.status.value, e.terminal) for e in events] == [("queued", False), ("failed", True)]


async def test_a_push_a_worker_already_took_stays_queued(redis_url: str, redis_client: redis.Redis) -> None:
    """When a worker has already popped the message, the retraction answers with the `queued`
    event's id: the job is queued and its outcome is awaited as usual."""
    job = build_job(agent_id="a1", call=CALL, message="hi")
    async with SmsClient.from_url(redis_url) as sms:
        message = task_message(job)
        queued_id = await sms.enqueue(job, message)
        redis_client.rpop(QUEUE)  # what a worker's BRPOP does
        assert await sms._retract(job, message, "test") == queued_id


async def test_a_push_arriving_after_its_retraction_does_nothing(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """The retraction fences the job first: a push Redis runs afterwards (from a buffer) pushes
    nothing and publishes nothing."""
    job = build_job(agent_id="a1", call=CALL, message="hi")
    async with SmsClient.from_url(redis_url) as sms:
        message = task_message(job)
        result = await sms._retract(job, message, "test")
        assert isinstance(result, SendResult) and result.status == "failed"
        assert await sms.enqueue(job, message) is None
    assert queued_job_ids(redis_client) == set()
    assert redis_client.exists("sms:events:CA-q") == 0
