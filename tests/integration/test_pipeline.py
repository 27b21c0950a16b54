"""The send-SMS pipeline end to end: a producer process, real Redis, real workers, a fake Twilio."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from producers import CallContext, SmsClient, Status
from tests.integration.conftest import AGENT_NUMBER, AUTH_TOKEN, CALLER, TEMPLATE, VARIABLES, WorkerFactory
from tests.redis_dump import dump_all
from worker.testing.actions import Error
from worker.testing.twilio import FakeTwilio


def inbound(call_id: str, caller: str = CALLER) -> CallContext:
    return CallContext(call_id=call_id, direction="inbound", from_number=caller, to_number=AGENT_NUMBER)


async def test_templated_sms_for_an_inbound_call_is_accepted_with_twilios_sid(
    start_worker: WorkerFactory, config: Path, worker_env: dict[str, str], redis_url: str, twilio: FakeTwilio
) -> None:
    """A producer sends a templated SMS to the caller and gets `accepted` with the fake's SID."""
    start_worker(config, env=worker_env)
    async with SmsClient.from_url(redis_url) as sms:
        result = await sms.send(
            agent_id="agent_abc123",
            call=inbound("CA42"),
            template="booking_confirmation",
            variables=VARIABLES,
        )
        assert result.status == "accepted", result
        assert result.tool_message == "SMS sent."
        assert result.provider == "twilio"
        assert result.provider_message_id is not None
        assert re.fullmatch(r"SM[0-9a-f]{32}", result.provider_message_id)
        assert result.to == "+1415****234"
        [request] = twilio.requests
        form = request.form()
        assert form["To"] == CALLER
        assert form["From"] == AGENT_NUMBER
        assert form["Body"] == TEMPLATE.format(**VARIABLES)
        statuses = [e.status async for e in sms.events("CA42", idle_timeout=0.2) if e.job_id == result.job_id]
        assert statuses == [Status.QUEUED, Status.SENDING, Status.ACCEPTED]


async def test_200_concurrent_sends_reach_the_provider_exactly_once_each(
    start_worker: WorkerFactory, config: Path, worker_env: dict[str, str], redis_url: str, twilio: FakeTwilio
) -> None:
    """200 sends at once, each on its own call, make exactly 200 provider requests, one per message."""
    start_worker(config, env=worker_env, concurrency=64)
    async with SmsClient.from_url(redis_url) as sms:
        results = await asyncio.gather(
            *(
                sms.send(
                    agent_id="agent_abc123",
                    call=inbound(f"CA-load-{i}"),
                    template="booking_confirmation",
                    variables={**VARIABLES, "link": f"https://acme.example/b/{i}"},
                    timeout=30,
                )
                for i in range(200)
            )
        )
    assert [r.status for r in results].count("accepted") == 200, {r.status: r for r in results}
    assert len({r.provider_message_id for r in results}) == 200
    bodies = [r.form()["Body"] for r in twilio.requests]
    assert len(bodies) == 200
    assert len(set(bodies)) == 200, "a message reached the provider twice"


BOOKING = {"template": "booking_confirmation", "variables": VARIABLES}
REFUSALS = [
    (inbound("CA-bad", caller="+1415555"), BOOKING, "invalid_number"),
    (inbound("CA-var"), {**BOOKING, "variables": {"date": "March 10"}}, "template_error"),
    (
        inbound("CA-inj"),
        {"message": "You won! https://evil.example", "to": "+19005550100"},
        "recipient_not_allowed",
    ),
    (inbound("CA-fmt"), {**BOOKING, "variables": {**VARIABLES, "date": "{0.__class__}"}}, None),
]


@pytest.mark.parametrize(
    ("call", "send", "code"),
    REFUSALS,
    ids=["bad-number", "missing-variable", "injected-recipient", "braces-in-a-value"],
)
async def test_refusals_end_failed_with_their_code_and_no_provider_call(
    start_worker: WorkerFactory,
    config: Path,
    worker_env: dict[str, str],
    redis_url: str,
    twilio: FakeTwilio,
    call: CallContext,
    send: dict[str, Any],
    code: str | None,
) -> None:
    """A bad number, a missing variable and an injected recipient fail with their code before any
    provider call; braces inside a value are sent literally, never evaluated."""
    start_worker(config, env=worker_env)
    async with SmsClient.from_url(redis_url) as sms:
        result = await sms.send(agent_id="agent_abc123", call=call, **send)
    if code is None:
        assert result.status == "accepted"
        assert "{0.__class__}" in twilio.requests[0].form()["Body"]
        return
    assert result.status == "failed"
    assert result.error is not None and result.error.code == code
    assert result.tool_message.startswith("SMS couldn't be sent: ")
    assert twilio.requests == []


async def test_without_a_worker_send_returns_pending_and_a_later_worker_sends_it(
    start_worker: WorkerFactory, config: Path, worker_env: dict[str, str], redis_url: str, twilio: FakeTwilio
) -> None:
    """With no worker, send(timeout=1) answers `pending` in about a second; nothing is lost: a
    worker started afterwards sends the message once."""
    async with SmsClient.from_url(redis_url) as sms:
        started = time.monotonic()
        result = await sms.send(
            agent_id="agent_abc123", call=inbound("CA-late"), template="booking_confirmation",
            variables=VARIABLES, timeout=1.0,
        )  # fmt: skip
        elapsed = time.monotonic() - started
        assert result.status == "pending"
        assert result.tool_message.startswith("SMS not confirmed yet")
        assert 0.9 <= elapsed < 1.6
        assert twilio.requests == []

        start_worker(config, env=worker_env)
        terminal = [
            e
            async for e in sms.events("CA-late", idle_timeout=5.0)
            if e.job_id == result.job_id and e.terminal
        ]
        assert [e.status for e in terminal] == [Status.ACCEPTED]
        assert len(twilio.requests) == 1


async def test_no_secret_reaches_worker_output_or_redis(
    start_worker: WorkerFactory,
    config: Path,
    worker_env: dict[str, str],
    redis_url: str,
    redis_client: redis.Redis,
    twilio: FakeTwilio,
) -> None:
    """The auth token from the config is in neither the worker's output nor any Redis key, and the
    caller's full number is not in the worker's output."""
    worker = start_worker(config, env=worker_env)
    async with SmsClient.from_url(redis_url) as sms:
        ok = await sms.send(agent_id="agent_abc123", call=inbound("CA-s1"), template="booking_confirmation",
                            variables=VARIABLES)  # fmt: skip
        bad = await sms.send(agent_id="agent_abc123", call=inbound("CA-s2"), template="nope")
    assert (ok.status, bad.status) == ("accepted", "failed")
    twilio.script(Error(20003, status=401))
    async with SmsClient.from_url(redis_url) as sms:
        denied = await sms.send(agent_id="agent_abc123", call=inbound("CA-s3"), message="hello")
    assert denied.error is not None and denied.error.code == "auth_failed"

    output = worker.output()
    assert "sms.send" in output  # the canonical lines are there, so the check below is meaningful
    assert AUTH_TOKEN not in output
    assert CALLER not in output
    dump = dump_all(redis_client)
    assert dump, "expected keys in Redis"
    assert AUTH_TOKEN.encode() not in dump
