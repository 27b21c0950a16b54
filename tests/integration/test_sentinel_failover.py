"""Redis failover under load: a master, a replica and three sentinels; the master is SIGKILLed."""

from __future__ import annotations

import asyncio
import gc
import json
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from producers import CallContext, SendResult, SmsClient, SyncSmsClient
from producers.contract import QUEUE, Event
from tests.integration.conftest import AGENT_NUMBER, CALLER, WorkerProcess
from worker import redis_client
from worker.settings import Settings
from worker.testing.sentinel import SentinelCluster
from worker.testing.twilio import FakeTwilio

TIMEOUT = 5.0
RATE = 20  # sends per second
DURATION = 12.0
KILL_AT = 3.0


@pytest.fixture
def cluster() -> Iterator[SentinelCluster]:
    with SentinelCluster(down_after_ms=1000) as cluster:
        yield cluster


async def _send(sms: SmsClient, i: int) -> tuple[int, SendResult, float, float]:
    call = CallContext(call_id=f"CA-f{i}", direction="inbound", from_number=CALLER, to_number=AGENT_NUMBER)
    started = time.monotonic()
    result = await sms.send(agent_id="agent_abc123", call=call, message=f"failover {i}", timeout=TIMEOUT)
    return i, result, started, time.monotonic() - started


def _not_queued(result: SendResult) -> bool:
    return result.status == "failed" and result.error is not None and "not queued" in result.error.message


async def test_a_master_killed_under_load_fails_over_without_losing_or_hiding_anything(
    cluster: SentinelCluster, config: Path, worker_env: dict[str, str], twilio: FakeTwilio, tmp_path: Path
) -> None:
    """Steady sends while the master is SIGKILLed: the sentinels promote the replica; the worker
    (broker and state) and the producer follow it through the Sentinel URL. Every send answers
    within its bound; sends made during the failover fail fast ("not queued") or are queued; every
    job that was queued ends in one terminal event on the new master; none reaches the provider
    twice without `possible_duplicate`. What asynchronous replication lost is counted, not hidden."""
    env = {**worker_env, "SMS_VISIBILITY_TIMEOUT": "10", "SMS_RESTORE_INTERVAL": "1"}
    worker = WorkerProcess(cluster.url, config, tmp_path / "worker.log", concurrency=16, env=env).wait_ready()
    kill_time = recovered_after = failover_seconds = 0.0
    try:
        async with SmsClient.from_url(cluster.url) as sms:
            tasks: list[asyncio.Future[tuple[int, SendResult, float, float]]] = []
            started = time.monotonic()
            i = 0
            while (now := time.monotonic()) < started + DURATION:
                tasks.append(asyncio.ensure_future(_send(sms, i)))
                i += 1
                if not kill_time and now >= started + KILL_AT:
                    old = cluster.kill_master()
                    kill_time = time.monotonic()
                    failover = asyncio.ensure_future(asyncio.to_thread(cluster.wait_for_failover, old))
                await asyncio.sleep(1 / RATE)
            outcomes = await asyncio.gather(*tasks)
            failover_seconds = await failover
            # Let redelivered and late jobs finish, then read every queued job's events.
            terminal: dict[str, list[Event]] = {}
            queued_ids: set[str] = set()
            deadline = time.monotonic() + 45
            while time.monotonic() < deadline:
                terminal, queued_ids = {}, set()
                for n, result, _, _ in outcomes:
                    events = [
                        e
                        async for e in sms.events(f"CA-f{n}", idle_timeout=0.02)
                        if e.job_id == result.job_id
                    ]
                    if any(e.status.value == "queued" for e in events):
                        queued_ids.add(result.job_id)
                    if finished := [e for e in events if e.terminal]:
                        terminal[result.job_id] = finished
                if all(job in terminal for job in queued_ids):
                    break
                await asyncio.sleep(1)
        # redis-py's asyncio Sentinel pool drops some connections to the dead master without
        # closing them; collect them here, while the loop runs, and count them (README).
        with warnings.catch_warnings(record=True) as leaked:
            warnings.simplefilter("always", ResourceWarning)
            gc.collect()
    finally:
        worker.stop()
    leaked_sockets = sum("unclosed <socket" in str(w.message) for w in leaked)
    answers = Counter("not_queued" if _not_queued(r) else r.status for _, r, _, _ in outcomes)
    after_kill = sorted((s, r) for _, r, s, _ in outcomes if s >= kill_time)
    first_ok = next((s for s, r in after_kill if r.status == "accepted"), None)
    recovered_after = (first_ok - kill_time) if first_ok is not None else float("inf")
    slowest = max(seconds for *_, seconds in outcomes)
    bodies = Counter(request.form()["Body"] for request in twilio.requests)
    sent_to_provider = {int(body.split()[-1]) for body in bodies}
    # A job the producer was told is queued (pending or an outcome, not "not queued").
    told_queued = [(n, r) for n, r, _, _ in outcomes if not _not_queued(r)]
    lost = [
        (n, r)
        for n, r in told_queued
        if n not in sent_to_provider
        and not any(e.status.value == "failed" for e in terminal.get(r.job_id, []))
    ]
    lost_events = [(n, r) for n, r in told_queued if r.job_id not in terminal]
    duplicated = {int(body.split()[-1]) for body, count in bodies.items() if count > 1}
    flagged = {n for n, r in told_queued if any(e.possible_duplicate for e in terminal.get(r.job_id, []))} | {
        n for n, r, _, _ in outcomes if r.possible_duplicate
    }
    multiple = [job for job, events in terminal.items() if len(events) > 1]
    print(
        f"\nSentinel failover: sent={len(outcomes)} accepted={answers['accepted']} "
        f"pending={answers['pending']} "
        f"failed_fast={answers['not_queued']} failed_other={answers['failed']} "
        f"provider_requests={sum(bodies.values())} distinct_sent={len(bodies)} lost={len(lost)} "
        f"lost_events={len(lost_events)} duplicated={len(duplicated)} "
        f"unflagged_duplicates={len(duplicated - flagged)} multiple_terminal={len(multiple)} "
        f"failover={failover_seconds:.2f}s recovered_after={recovered_after:.2f}s "
        f"slowest_send={slowest:.2f}s (timeout {TIMEOUT:.0f}s) leaked_sockets_to_old_master={leaked_sockets}"
    )
    assert slowest < TIMEOUT + 1.5, "a producer waited past its bound"
    assert recovered_after < 15, "sends did not recover after the failover"
    assert duplicated <= flagged, "a text reached the provider twice without possible_duplicate"
    assert multiple == [], "a job ended twice"
    # Asynchronous replication may lose what the master acknowledged in its last moments; on one
    # machine the replica is a few ms behind, so this is expected to be zero, and is reported.
    assert len(lost) <= 2, f"{len(lost)} queued jobs were lost: {[n for n, _ in lost]}"


def test_the_sync_client_and_the_cli_helper_follow_a_failover(cluster: SentinelCluster) -> None:
    """`SyncSmsClient.from_url` and the worker's `redis_client.connect` on a Sentinel URL: a job
    queued before the master dies and one queued after both end up on the new master."""
    with SyncSmsClient.from_url(cluster.url) as sms:
        call = CallContext(
            call_id="CA-sync-f", direction="inbound", from_number=CALLER, to_number=AGENT_NUMBER
        )
        before = sms.send(agent_id="agent_abc123", call=call, message="before", timeout=0.001)
        old = cluster.kill_master()
        cluster.wait_for_failover(old)
        after = sms.send(agent_id="agent_abc123", call=call, message="after", timeout=0.001)
    client = redis_client.connect(Settings(redis_url=cluster.url), socket_timeout=2.0)
    try:
        queued = {json.loads(entry)["headers"]["id"] for entry in client.lrange(QUEUE, 0, -1)}
        port = client.connection_pool.get_master_address()[1]  # type: ignore[attr-defined]
    finally:
        redis_client.close(client)
    print(
        f"\nsync client across a failover: before={before.status} after={after.status} master {old} -> {port}"
    )
    assert (before.status, after.status) == ("pending", "pending")
    assert port != old
    assert after.job_id in queued
    # `before` was acknowledged by the old master; it is on the new one unless replication lagged.
    assert before.job_id in queued
