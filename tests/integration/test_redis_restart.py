"""Redis restarted under load (AOF on): no accepted job is lost, and producers never hang."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from producers import CallContext, SendResult, SmsClient
from producers.contract import SANDBOX_OUTBOX_KEY, Event
from tests.integration.conftest import WorkerProcess
from worker.redis_server import RedisServer

TIMEOUT = 3.0
CONFIG = """
connections:
  - {label: Sandbox, provider: sandbox, default: true, from_number: "+14155550000"}
agents:
  a1:
    voice_tools:
      sms_mid_call: {enabled: true, provider: sandbox, max_per_call: 100, max_per_recipient: null}
"""


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own, since the test restarts it."""
    with RedisServer(appendonly=True) as server:
        yield server


async def _send(sms: SmsClient, i: int) -> tuple[SendResult, float]:
    call = CallContext(
        call_id=f"CA-r{i}", direction="inbound", from_number="+14155551234", to_number="+14155550000"
    )
    started = time.monotonic()
    result = await sms.send(agent_id="a1", call=call, message=f"hello {i}", timeout=TIMEOUT)
    return result, time.monotonic() - started


async def test_a_redis_restart_under_load_loses_no_accepted_job(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    """Sends keep coming while Redis restarts: every send answers within its timeout, every job that
    was queued ends in exactly one terminal event, `accepted`, and is in the outbox once."""
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    env = {"SMS_VISIBILITY_TIMEOUT": "10", "SMS_RESTORE_INTERVAL": "1"}
    worker = WorkerProcess(
        own_redis.url, config, tmp_path / "worker.log", concurrency=16, env=env
    ).wait_ready()
    total = 60
    try:
        async with SmsClient.from_url(own_redis.url) as sms:
            tasks = []
            for i in range(total):
                tasks.append(asyncio.ensure_future(_send(sms, i)))
                if i == total // 2:
                    await asyncio.to_thread(own_redis.restart)
                await asyncio.sleep(0.02)
            outcomes = await asyncio.gather(*tasks)
            slowest = max(elapsed for _, elapsed in outcomes)
            unqueued = [
                r for r, _ in outcomes if r.status == "failed" and r.error and "queue" in r.error.message
            ]
            queued = [(i, r) for i, (r, _) in enumerate(outcomes) if r not in unqueued]
            terminal: dict[str, list[Event]] = {}
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline and len(terminal) < len(queued):
                terminal = {}
                for i, result in queued:
                    events = [
                        e
                        async for e in sms.events(f"CA-r{i}", idle_timeout=0.05)
                        if e.job_id == result.job_id
                    ]
                    finished = [e for e in events if e.terminal]
                    if finished:
                        terminal[result.job_id] = finished
                await asyncio.sleep(0.5)
        client = redis.Redis.from_url(own_redis.url)
        entries: Any = client.xrange(SANDBOX_OUTBOX_KEY)
        outbox = [fields[b"body"].decode() for _, fields in entries]
        client.close()
    finally:
        worker.stop()
    statuses = [e.status.value for events in terminal.values() for e in events]
    print(
        f"\nRedis restart: sent={total} queued={len(queued)} refused_while_down={len(unqueued)} "
        f"terminal={len(terminal)} accepted={statuses.count('accepted')} outbox={len(outbox)} "
        f"distinct_in_outbox={len(set(outbox))} slowest_send={slowest:.2f}s "
        f"answers={dict(Counter(r.status for r, _ in outcomes))}"
    )
    assert slowest < TIMEOUT + 1.5, "a producer hung past its timeout"
    assert len(terminal) == len(queued), "a queued job never got its outcome"
    assert all(len(events) == 1 for events in terminal.values()), "a job got two terminal events"
    assert set(statuses) == {"accepted"}
    assert sorted(set(outbox)) == sorted(f"hello {i}" for i, _ in queued)
    duplicates = len(outbox) - len(set(outbox))
    flagged = sum(events[0].possible_duplicate for events in terminal.values())
    assert duplicates <= flagged, "a second copy was sent without the possible_duplicate flag"
