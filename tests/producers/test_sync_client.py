"""`SyncSmsClient` against a real redis-server and a quick responder: the same answers as the
async client, from threads, across a script flush and a Redis restart, and nothing left open."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis

from producers import CallContext, SmsClient, Status, SyncSmsClient
from producers.jobs import build_job
from tests.producers.responder import Responder
from tests.producers.test_reader import producer_connections, publish
from worker.redis_server import RedisServer

NAME = "producer-under-test"


def call(i: int | str) -> CallContext:
    return CallContext(
        call_id=f"CA-y{i}", direction="inbound", from_number="+14155551234", to_number="+14155550000"
    )


def test_a_send_is_accepted_and_its_events_read_back_in_order(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """`send` answers `accepted` with the responder's message id; `events` gives the job's
    queued → sending → accepted and stops after its idle timeout."""
    with Responder(redis_url), SyncSmsClient.from_url(redis_url) as sms:
        result = sms.send(agent_id="a1", call=call(1), message="hi", timeout=10)
        statuses = [e.status for e in sms.events("CA-y1", idle_timeout=0.2) if e.job_id == result.job_id]
    assert result.status == "accepted", result
    assert result.tool_message == "SMS sent."
    assert result.provider_message_id == f"SB{result.job_id}"
    assert statuses == [Status.QUEUED, Status.SENDING, Status.ACCEPTED]


def test_sends_from_sixteen_threads_all_get_their_own_outcome(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """One client shared by 16 threads, 200 sends: every one is `accepted` with its own job's id."""
    with Responder(redis_url), SyncSmsClient.from_url(redis_url) as sms, ThreadPoolExecutor(16) as pool:
        results = list(
            pool.map(
                lambda i: sms.send(agent_id="a1", call=call(f"t{i}"), message="hi", timeout=20), range(200)
            )
        )
    assert [r.status for r in results].count("accepted") == 200
    assert all(r.provider_message_id == f"SB{r.job_id}" for r in results)


@pytest.mark.parametrize("client", ["sync", "async"])
async def test_a_flushed_script_cache_still_queues_the_job(
    redis_url: str, redis_client: redis.Redis, client: str
) -> None:
    """After `SCRIPT FLUSH` (what a restarted Redis has), the enqueue's EVALSHA gets NOSCRIPT and
    the job is pushed by EVAL: `pending`, and on the queue."""
    job = build_job(agent_id="a1", call=call("flush"), message="hi")
    if client == "sync":
        with SyncSmsClient.from_url(redis_url) as sms:
            assert sms.enqueue(job) is not None
            redis_client.script_flush()
            second = build_job(agent_id="a1", call=call("flush"), message="hi")
            assert sms.enqueue(second) is not None
    else:
        async with SmsClient.from_url(redis_url) as asms:
            assert await asms.enqueue(job) is not None
            redis_client.script_flush()
            second = build_job(agent_id="a1", call=call("flush"), message="hi")
            assert await asms.enqueue(second) is not None
    assert redis_client.llen("sms") == 2


def test_closing_a_client_closes_its_connections(redis_url: str, redis_client: redis.Redis) -> None:
    """A client made by `from_url` leaves no connection open on the server once closed."""
    with Responder(redis_url), SyncSmsClient.from_url(redis_url, client_name=NAME) as sms:
        assert sms.send(agent_id="a1", call=call("close"), message="hi", timeout=10).status == "accepted"
        assert producer_connections(redis_client) >= 1
    assert producer_connections(redis_client) == 0


def test_wait_delivery_returns_the_receipt_and_a_zero_timeout_just_looks(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """A `delivered` receipt already on the channel settles `wait_delivery` at once; with
    `timeout=0` it still reads what is there; with nothing, `unknown`."""
    publish(redis_client, "CA-yd", "job-d", Status.ACCEPTED)
    with SyncSmsClient.from_url(redis_url) as sms:
        assert sms.wait_delivery("job-d", call_id="CA-yd", timeout=0).status == "unknown"
        publish(redis_client, "CA-yd", "job-d", Status.DELIVERED)
        assert sms.wait_delivery("job-d", call_id="CA-yd", timeout=0).status == "delivered"
        assert sms.wait_delivery("job-d", call_id="CA-yd", timeout=5).status == "delivered"
        with pytest.raises(ValueError, match="call_id"):
            sms.wait_delivery("job-d")


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own (AOF on), since the test restarts it."""
    with RedisServer(appendonly=True) as server:
        yield server


def test_a_wait_blocked_across_a_redis_restart_still_hears_its_outcome(own_redis: RedisServer) -> None:
    """A thread waits on its job while Redis restarts; the outcome published after the restart
    reaches it (the wait reads again from its last id until its deadline)."""
    with SyncSmsClient.from_url(own_redis.url) as sms:
        job = build_job(agent_id="a1", call=call("restart"), message="hi")
        queued = sms.enqueue(job)
        assert queued is not None
        answer: dict[str, Any] = {}
        waiter = threading.Thread(target=lambda: answer.update(r=sms.wait(job, timeout=20, since=queued)))
        waiter.start()
        time.sleep(0.2)
        own_redis.restart()
        client = redis.Redis.from_url(own_redis.url)
        publish(client, job.call.call_id, job.job_id, Status.ACCEPTED)
        client.close()
        waiter.join(25)
    assert answer["r"].status == "accepted"
