"""One reader for many waits (`producers/reader.py`): a handful of connections for 1,000 waiting
sends, a newcomer wakes the blocked read, nothing is missed across a Redis restart."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from typing import Any, cast

import pytest
import redis
from redis.asyncio import Redis

from producers import CallContext, SmsClient, Status
from producers.contract import EVENT_FIELD, Event, events_key, utcnow
from producers.jobs import build_job
from producers.reader import MAX_BLOCK, Reader, Subscription
from tests.producers.responder import Responder
from worker.redis_server import RedisServer

NAME = "producer-under-test"


def call(i: int | str) -> CallContext:
    return CallContext(
        call_id=f"CA-m{i}", direction="inbound", from_number="+14155551234", to_number="+14155550000"
    )


def publish(client: redis.Redis, call_id: str, job_id: str, status: Status) -> None:
    event = Event(
        job_id=job_id,
        call_id=call_id,
        status=status,
        terminal=status in (Status.ACCEPTED, Status.FAILED),
        at=utcnow(),
        tool_message="SMS sent." if status == Status.ACCEPTED else "SMS is being sent.",
    )
    client.xadd(events_key(call_id), {EVENT_FIELD: event.dumps()})


def producer_connections(client: redis.Redis) -> int:
    """The server's open connections named by the client under test (`CLIENT LIST`)."""
    return sum(entry.get("name") == NAME for entry in client.client_list())


async def test_a_thousand_sends_at_once_all_complete_through_a_handful_of_connections(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """1,000 concurrent sends, each held 0.3 s by the responder: every one is `accepted`, and
    while they wait the producer holds a handful of connections (`CLIENT LIST` on the server),
    not one per waiting send."""
    peak = Counter[str]()
    with Responder(redis_url, hold=0.3):
        async with SmsClient.from_url(redis_url, client_name=NAME) as sms:
            done = asyncio.Event()

            async def sample() -> None:
                while not done.is_set():
                    held = await asyncio.to_thread(producer_connections, redis_client)
                    peak["connections"] = max(peak["connections"], held)
                    peak["waiting"] = max(peak["waiting"], sms._reader.waiting)
                    await asyncio.sleep(0.02)

            sampler = asyncio.ensure_future(sample())
            results = await asyncio.gather(
                *(sms.send(agent_id="a1", call=call(i), message="hi", timeout=30) for i in range(1000))
            )
            done.set()
            await sampler
            reads, wakes = sms._reader.reads, sms._reader.wakes
    statuses = Counter(r.status for r in results)
    print(
        f"\n1,000-send burst: {dict(statuses)} peak_waiting={peak['waiting']} "
        f"peak_connections={peak['connections']} reads={reads} wakes={wakes}"
    )
    assert statuses["accepted"] == 1000
    assert peak["waiting"] >= 100, "the sends never waited together: the test measured nothing"
    assert 1 <= peak["connections"] <= 5


async def test_a_newcomer_wakes_a_read_blocked_on_other_streams(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """One send waits on a call nobody answers (the read blocks on its stream); a second send on
    another call is answered at once and gets `accepted` well before the blocked read would have
    timed out on its own."""
    async with SmsClient.from_url(redis_url) as sms:
        quiet = build_job(agent_id="a1", call=call("quiet"), message="hi")
        queued = await sms.enqueue(quiet)
        assert queued is not None
        redis_client.delete("sms")  # nobody will ever answer it
        blocked = asyncio.ensure_future(sms.wait(quiet, timeout=10, since=queued))
        await asyncio.sleep(0.2)  # the reader is now blocked on the quiet call's stream
        with Responder(redis_url):
            result = await sms.send(agent_id="a1", call=call("loud"), message="hi", timeout=MAX_BLOCK * 0.75)
        wakes = sms._reader.wakes
        blocked.cancel()
    assert result.status == "accepted", result
    assert wakes >= 1


async def test_waits_on_one_call_each_hear_their_own_job(redis_url: str, redis_client: redis.Redis) -> None:
    """Three jobs of one call waited on at once (one stream, one cursor for all): each wait ends
    with its own job's terminal event, whatever the order they come in."""
    async with SmsClient.from_url(redis_url) as sms:
        jobs = [build_job(agent_id="a1", call=call("shared"), message=f"hi {i}") for i in range(3)]
        ids = [await sms.enqueue(job) for job in jobs]
        waits = [
            asyncio.ensure_future(sms.wait(job, timeout=10, since=str(queued)))
            for job, queued in zip(jobs, ids, strict=True)
        ]
        await asyncio.sleep(0.05)
        answers = (Status.ACCEPTED, Status.FAILED, Status.ACCEPTED)
        for job, status in zip(reversed(jobs), answers, strict=True):
            publish(redis_client, "CA-mshared", job.job_id, status)
        results = await asyncio.gather(*waits)
    assert [r.job_id for r in results] == [job.job_id for job in jobs]
    assert [r.status for r in results] == ["accepted", "failed", "accepted"]


async def test_an_older_since_on_a_stream_already_being_read_gets_the_older_events(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """While a wait reads a call's stream from its latest entry, `events(since="0-0")` on the same
    call still gets every event from the start (the read is woken and moves its cursor back)."""
    for status in (Status.QUEUED, Status.SENDING):
        publish(redis_client, "CA-mold", "job-old", status)
    async with SmsClient.from_url(redis_url) as sms:
        job = build_job(agent_id="a1", call=call("old"), message="hi")
        queued = await sms.enqueue(job)
        waiting = asyncio.ensure_future(sms.wait(job, timeout=10, since=str(queued)))
        await asyncio.sleep(0.1)
        statuses = [(e.job_id, e.status.value) async for e in sms.events("CA-mold", idle_timeout=0.2)]
        publish(redis_client, "CA-mold", job.job_id, Status.ACCEPTED)
        result = await waiting
    assert statuses == [("job-old", "queued"), ("job-old", "sending"), (job.job_id, "queued")]
    assert result.status == "accepted"


async def test_entries_that_are_not_events_are_passed_over(redis_url: str, redis_client: redis.Redis) -> None:
    """A foreign entry (another field) and an invalid event on the call's stream neither end the
    wait nor break the reader: the job's own terminal event after them is still heard."""
    async with SmsClient.from_url(redis_url) as sms:
        job = build_job(agent_id="a1", call=call("junk"), message="hi")
        queued = await sms.enqueue(job)
        waiting = asyncio.ensure_future(sms.wait(job, timeout=10, since=str(queued)))
        await asyncio.sleep(0.05)
        redis_client.xadd("sms:events:CA-mjunk", {"note": "not an event"})
        redis_client.xadd("sms:events:CA-mjunk", {EVENT_FIELD: '{"status": "bogus"}'})
        publish(redis_client, "CA-mjunk", job.job_id, Status.ACCEPTED)
        result = await waiting
    assert result.status == "accepted"


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own (AOF on), since the test restarts it."""
    with RedisServer(appendonly=True) as server:
        yield server


async def test_waits_blocked_across_a_redis_restart_still_hear_their_outcome(own_redis: RedisServer) -> None:
    """Ten waits are blocked in the reader when Redis restarts; the outcomes published after the
    restart all reach them (the reader reconnects and reads on from each stream's last id)."""
    async with SmsClient.from_url(own_redis.url) as sms:
        jobs = [build_job(agent_id="a1", call=call(f"r{i}"), message="hi") for i in range(10)]
        ids = [await sms.enqueue(job) for job in jobs]
        waits = [
            asyncio.ensure_future(sms.wait(job, timeout=20, since=str(queued)))
            for job, queued in zip(jobs, ids, strict=True)
        ]
        await asyncio.sleep(0.2)
        await asyncio.to_thread(own_redis.restart)
        client: Any = redis.Redis.from_url(own_redis.url)
        for job in jobs:
            publish(client, job.call.call_id, job.job_id, Status.ACCEPTED)
        client.close()
        results = await asyncio.gather(*waits)
    assert [r.status for r in results] == ["accepted"] * 10


def _raw_reply(shape: str, key: str, entries: list[tuple[str, str]]) -> Any:
    """A raw XREAD reply as a connection reads it: RESP2 or RESP3, bytes or decoded."""

    def enc(value: str) -> Any:
        return value.encode() if shape.endswith("bytes") else value

    raw_entries = [[enc(entry_id), [enc(EVENT_FIELD), enc(json)]] for entry_id, json in entries]
    if shape.startswith("resp3"):
        return {enc(key): raw_entries}
    return [[enc(key), raw_entries]]


@pytest.mark.parametrize("shape", ["resp2-bytes", "resp2-str", "resp3-bytes", "resp3-str"])
def test_a_read_serves_only_the_subscribers_it_covered(shape: str) -> None:
    """A reply read from cursor 4-0 goes to the subscriber that had seen 4-0; one that joined
    meanwhile from 1-0 gets nothing from it (entries 2-0..4-0 are not in it) and keeps its id, so
    the next read starts from 1-0 and brings them all."""
    reader = Reader(cast(Any, None), cast(Any, None))
    key = events_key("CA-d")
    covered, newcomer = Subscription(key, "4-0"), Subscription(key, "1-0")
    reader._subs[key] = [covered, newcomer]
    event = Event(
        job_id="j", call_id="CA-d", status=Status.SENDING, terminal=False, at=utcnow(), tool_message="x"
    )
    reply = _raw_reply(shape, key, [("5-0", event.dumps()), ("6-0", '{"not": "an event"}')])
    reader._dispatch(reply, {key: (4, 0)}, [covered])
    assert [(entry_id, e.status) for entry_id, e in covered.entries] == [("5-0", Status.SENDING)]
    assert covered.last_id == "6-0" and covered.read
    assert newcomer.entries == [] and newcomer.last_id == "1-0" and not newcomer.read


async def test_a_client_closed_and_used_again_still_hears_outcomes(redis_url: str) -> None:
    """`aclose()` on a client over the caller's own Redis client, then more sends: the reader
    starts again and the sends are `accepted`, as before the close."""
    client = Redis.from_url(redis_url)
    sms = SmsClient(client)
    try:
        with Responder(redis_url):
            first = await sms.send(agent_id="a1", call=call("again1"), message="hi", timeout=10)
            await sms.aclose()
            second = await sms.send(agent_id="a1", call=call("again2"), message="hi", timeout=10)
            await sms.aclose()
    finally:
        await client.aclose()
    assert (first.status, second.status) == ("accepted", "accepted")
