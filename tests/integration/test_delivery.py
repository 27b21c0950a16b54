"""Retries, permanent errors and effectively-once delivery, with real workers and a scripted fake Twilio."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import pytest
import redis

from producers import CallContext, SmsClient, Status
from producers.contract import Event, worker_reserved_key
from tests.integration.conftest import AGENT_NUMBER, CALLER, VARIABLES, WorkerFactory
from worker.metrics import UNACKED_KEY
from worker.testing.actions import Error, Hang
from worker.testing.twilio import FakeTwilio

FAST_RETRIES = {"SMS_PROVIDER_TIMEOUT": "1", "SMS_RETRY_FIRST_DELAY": "0.1", "SMS_RETRY_MAX_DELAY": "1"}


def call(call_id: str, caller: str = CALLER) -> CallContext:
    return CallContext(call_id=call_id, direction="inbound", from_number=caller, to_number=AGENT_NUMBER)


async def job_events(sms: SmsClient, call_id: str, job_id: str) -> list[Event]:
    return [e async for e in sms.events(call_id, idle_timeout=0.3) if e.job_id == job_id]


async def test_two_server_errors_then_accepted_on_the_third_attempt(
    start_worker: WorkerFactory, config: Path, worker_env: dict[str, str], redis_url: str, twilio: FakeTwilio
) -> None:
    """5xx twice then 201: accepted on attempt 3, after two `retrying` events."""
    twilio.script(Error(20500, status=500), Error(20503, status=503))
    start_worker(config, env={**worker_env, **FAST_RETRIES})
    async with SmsClient.from_url(redis_url) as sms:
        result = await sms.send(agent_id="agent_abc123", call=call("CA-5xx"), message="hello", timeout=10)
        events = await job_events(sms, "CA-5xx", result.job_id)
    assert result.status == "accepted"
    assert result.attempts == 3
    assert len(twilio.requests) == 3
    retrying = [e for e in events if e.status == Status.RETRYING]
    assert [e.attempt for e in retrying] == [1, 2]
    assert all(e.error is not None and e.error.code == "provider_unavailable" for e in retrying)
    assert all(e.next_attempt_at is not None and e.next_attempt_at > e.at for e in retrying)
    # A 500 may come after Twilio stored the message: the final send says so.
    assert result.possible_duplicate is True


async def test_retry_after_is_honoured(
    start_worker: WorkerFactory, config: Path, worker_env: dict[str, str], redis_url: str, twilio: FakeTwilio
) -> None:
    """A 429 with `Retry-After: 2` delays the second request by at least 2 s."""
    twilio.script(Error(20429, status=429, headers={"Retry-After": "2"}))
    start_worker(config, env={**worker_env, **FAST_RETRIES})
    async with SmsClient.from_url(redis_url) as sms:
        result = await sms.send(agent_id="agent_abc123", call=call("CA-429"), message="hello", timeout=10)
    assert result.status == "accepted"
    first, second = twilio.requests
    assert second.received_at - first.received_at >= 2.0
    assert result.possible_duplicate is False


@pytest.mark.parametrize(
    ("caller", "script", "code"),
    [
        ("+15005550004", None, "recipient_opted_out"),  # Twilio's magic To: 21610
        (CALLER, Error(20003, status=401), "auth_failed"),
        (CALLER, Error(21614, status=400), "not_mobile"),
        (CALLER, Error(21999, status=400), "provider_error"),  # unknown 4xx: permanent, raw code kept
    ],
    ids=["opted-out", "auth", "not-mobile", "unknown-4xx"],
)
async def test_permanent_errors_fail_after_exactly_one_request(
    start_worker: WorkerFactory,
    config: Path,
    worker_env: dict[str, str],
    redis_url: str,
    twilio: FakeTwilio,
    caller: str,
    script: Error | None,
    code: str,
) -> None:
    """Permanent provider errors end `failed` with their code after one request, never retried."""
    if script is not None:
        twilio.script(script)
    start_worker(config, env={**worker_env, **FAST_RETRIES})
    async with SmsClient.from_url(redis_url) as sms:
        result = await sms.send(
            agent_id="agent_abc123", call=call("CA-perm", caller), message="hello", timeout=10
        )
        events = await job_events(sms, "CA-perm", result.job_id)
    assert result.status == "failed"
    assert result.error is not None and result.error.code == code
    assert result.error.retryable is False
    assert len(twilio.requests) == 1
    assert Status.RETRYING not in [e.status for e in events]
    if code == "provider_error":
        assert result.error.provider_code == "21999"


async def test_a_hanging_provider_is_timed_out_and_retried(
    start_worker: WorkerFactory, config: Path, worker_env: dict[str, str], redis_url: str, twilio: FakeTwilio
) -> None:
    """A provider that never answers is timed out (SMS_PROVIDER_TIMEOUT) and the send retried;
    since the first request may have been taken, the result says `possible_duplicate`."""
    twilio.script(Hang())
    start_worker(config, env={**worker_env, **FAST_RETRIES})
    async with SmsClient.from_url(redis_url) as sms:
        result = await sms.send(agent_id="agent_abc123", call=call("CA-hang"), message="hello", timeout=10)
        events = await job_events(sms, "CA-hang", result.job_id)
    assert result.status == "accepted"
    assert result.attempts == 2
    assert len(twilio.requests) == 2
    assert [e.status for e in events if e.status == Status.RETRYING] == [Status.RETRYING]
    assert result.possible_duplicate is True


async def test_one_idempotency_key_sent_20_times_at_once_makes_one_request(
    start_worker: WorkerFactory, config: Path, worker_env: dict[str, str], redis_url: str, twilio: FakeTwilio
) -> None:
    """20 concurrent jobs with the same idempotency key: one provider request, 20 identical outcomes."""
    twilio.latency = 0.3  # the duplicates arrive while the first send is in flight
    start_worker(config, env=worker_env, concurrency=32)
    async with SmsClient.from_url(redis_url) as sms:
        results = await asyncio.gather(
            *(
                sms.send(
                    agent_id="agent_abc123",
                    call=call("CA-idem"),
                    template="booking_confirmation",
                    variables=VARIABLES,
                    idempotency_key="CA-idem:tool-call-1",
                    timeout=10,
                )
                for _ in range(20)
            )
        )
    assert len(twilio.requests) == 1
    assert {(r.status, r.provider_message_id) for r in results} == {
        ("accepted", results[0].provider_message_id)
    }
    assert len({r.job_id for r in results}) == 20


async def test_a_worker_killed_while_the_provider_holds_its_requests_loses_nothing(
    start_worker: WorkerFactory,
    config: Path,
    worker_env: dict[str, str],
    redis_url: str,
    redis_client: redis.Redis,
    twilio: FakeTwilio,
) -> None:
    """With no `SMS_*` recovery setting changed, SIGKILL a worker while the provider holds its
    requests and a second worker runs: every text the dead worker held is taken over and ends in
    exactly one terminal event within 10 s of the kill; the only extra provider requests are the
    ones in flight at the kill, each flagged `possible_duplicate`."""
    twilio.latency = 1.5
    first = start_worker(config, env=worker_env, concurrency=8)
    second = start_worker(config, env=worker_env, concurrency=8)
    total = 24
    async with SmsClient.from_url(redis_url) as sms:
        jobs = [
            asyncio.ensure_future(
                sms.send(agent_id="agent_abc123", call=call(f"CA-kill-{i}"), message=f"hello {i}", timeout=60)
            )
            for i in range(total)
        ]
        await asyncio.to_thread(twilio.wait_for_requests, 12, 10.0)
        held = held_jobs(redis_client, first.instance())
        first.stop(signal.SIGKILL)
        killed_at = time.time()
        in_flight = len(twilio.requests)
        results = await asyncio.gather(*jobs)
        terminal: dict[str, list[Event]] = {}
        for i in range(total):
            for e in await job_events(sms, f"CA-kill-{i}", results[i].job_id):
                if e.terminal:
                    terminal.setdefault(e.job_id, []).append(e)
    second_alive = second.process.poll() is None
    requests = len(twilio.requests)
    flagged = sum(r.possible_duplicate for r in results)
    bodies = [r.form()["Body"] for r in twilio.requests]
    duplicated = {b for b in bodies if bodies.count(b) > 1}
    recovered = [terminal[j][0] for j in held if j in terminal]
    last = max((e.at.timestamp() for e in recovered), default=killed_at) - killed_at
    unflagged = sum(
        1
        for r, i in zip(results, range(total), strict=True)
        if f"hello {i}" in duplicated and not r.possible_duplicate
    )
    print(
        f"\nSIGKILL (defaults): sent={total} accepted={sum(r.status == 'accepted' for r in results)} "
        f"held_by_killed={len(held)} recovered={len(recovered)} last_terminal_after_kill={last:.1f}s "
        f"provider_requests={requests} in_flight_at_kill={in_flight} duplicates_flagged={flagged} "
        f"unflagged_duplicates={unflagged}"
    )
    assert second_alive
    assert len(held) >= 1
    assert len(recovered) == len(held), "every text the dead worker held reached a terminal event"
    assert last <= 10.0, f"the last held text ended {last:.1f} s after the kill"
    assert [r.status for r in results].count("accepted") == total
    assert all(len(terminal.get(r.job_id, [])) == 1 for r in results), "every job ends in one terminal event"
    assert requests - total <= in_flight
    assert requests - total == len(duplicated)
    for result, i in zip(results, range(total), strict=True):
        if f"hello {i}" in duplicated:
            assert result.possible_duplicate, "a resend inside the window must be flagged"


def held_jobs(client: redis.Redis, instance: str) -> set[str]:
    """The job ids of the messages a worker instance has reserved (started or not)."""
    tags = client.smembers(worker_reserved_key(instance))
    records = [client.hget(UNACKED_KEY, tag) for tag in tags]
    return {json.loads(r)[0]["headers"]["id"] for r in records if r}
