"""Policies end to end: a real worker, the fake Twilio, sends from a producer.

- 100 texts at once from one number limited to 1/s, each with a 30 s deadline: about 30 leave at
  their slots, the rest fail `rate_limited` at once, and none leaves after its deadline.
- An inbound STOP (through `optout.handle_inbound`, the call the HTTP service makes) stops the
  next send before the provider; START lets the following one through.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from producers import CallContext, SmsClient
from tests.integration.conftest import ACCOUNT_SID, AGENT_NUMBER, CALLER, WorkerFactory
from worker import optout
from worker.config.models import Connection
from worker.settings import Settings
from worker.testing.twilio import FakeTwilio

HASH_KEY = "integration-hash-key"
SENDS = 100
DEADLINE = 30.0


def policy_config(write_config: Callable[..., Path], twilio: FakeTwilio, **connection: Any) -> Path:
    return write_config(
        {
            "connections": [
                {
                    "label": "Twilio - Support",
                    "provider": "twilio",
                    "default": True,
                    "from_number": AGENT_NUMBER,
                    "credentials": {"account_sid": ACCOUNT_SID, "auth_token": "${TWILIO_AUTH_TOKEN}"},
                    "api_base_url": twilio.url,
                    **connection,
                }
            ],
            "agents": {
                "agent_abc123": {
                    "voice_tools": {
                        "sms_mid_call": {
                            "enabled": True,
                            "provider": "twilio",
                            "templates": {"code": "Your code is {code}"},
                            "max_per_recipient": None,
                        }
                    }
                }
            },
        }
    )


def inbound(call_id: str) -> CallContext:
    return CallContext(call_id=call_id, direction="inbound", from_number=CALLER, to_number=AGENT_NUMBER)


async def test_100_sends_at_1_per_second_with_a_30s_deadline_send_about_30_at_their_slots(
    start_worker: WorkerFactory,
    write_config: Callable[..., Path],
    worker_env: dict[str, str],
    redis_url: str,
    twilio: FakeTwilio,
) -> None:
    """100 concurrent sends from one number at 1 message/s (burst 1), 30 s deadline each: about 30
    are accepted, one per second; the rest fail `rate_limited` at once; no provider request comes
    after its job's deadline."""
    config = policy_config(write_config, twilio, messages_per_second=1, burst=1)
    start_worker(config, env=worker_env, concurrency=32)
    started = time.monotonic()
    async with SmsClient.from_url(redis_url) as sms:

        async def send(i: int) -> tuple[Any, float]:
            result = await sms.send(
                agent_id="agent_abc123", call=inbound(f"CA-rate-{i}"), template="code",
                variables={"code": f"{i:04d}"}, expires_in=DEADLINE, timeout=DEADLINE + 10,
            )  # fmt: skip
            return result, time.monotonic() - started

        outcomes = await asyncio.gather(*(send(i) for i in range(SENDS)))
    accepted = [t for r, t in outcomes if r.status == "accepted"]
    limited = [
        (r, t) for r, t in outcomes if r.status == "failed" and r.error and r.error.code == "rate_limited"
    ]
    other = [
        r
        for r, _ in outcomes
        if r.status != "accepted" and (r.error is None or r.error.code != "rate_limited")
    ]
    arrivals = sorted(request.received_at - started for request in twilio.requests)
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    late = [a for a in arrivals if a > DEADLINE]
    slowest_refusal = max((t for _, t in limited), default=0.0)
    print(
        f"\nrate 1/s, deadline {DEADLINE:.0f} s, {SENDS} sends: accepted={len(accepted)} "
        f"failed_rate_limited={len(limited)} other={len(other)} provider_requests={len(arrivals)} "
        f"sent_after_deadline={len(late)} last_request_at={arrivals[-1]:.2f}s "
        f"median_gap={statistics.median(gaps):.3f}s min_gap={min(gaps):.3f}s "
        f"slowest_refusal={slowest_refusal:.2f}s"
    )
    assert other == []
    assert 27 <= len(accepted) <= 31, len(accepted)
    assert len(accepted) + len(limited) == SENDS
    assert len(arrivals) == len(accepted)  # each accepted text reached the provider once, no other did
    assert late == []
    assert statistics.median(gaps) >= 0.9  # one per second, not a burst
    assert arrivals[-1] - arrivals[0] >= len(arrivals) - 3
    # refused at once, not after waiting: far sooner than the deadline (generous for a busy machine)
    assert slowest_refusal < 10.0, slowest_refusal
    for result, _ in limited:
        assert (
            result.tool_message
            == "SMS couldn't be sent: too many texts are waiting on this number right now."
        )


async def test_inbound_stop_refuses_the_next_send_without_a_provider_request_and_start_reopens(
    start_worker: WorkerFactory,
    write_config: Callable[..., Path],
    worker_env: dict[str, str],
    redis_url: str,
    redis_client: Any,
    twilio: FakeTwilio,
) -> None:
    """STOP from the caller (handed to `optout.handle_inbound` as the HTTP service does) makes the
    worker's next send fail `recipient_opted_out` with no request to Twilio; START lets the
    following one through."""
    config = policy_config(write_config, twilio, messages_per_second=100)
    start_worker(config, env={**worker_env, "SMS_NUMBER_HASH_KEY": HASH_KEY})
    settings = Settings(number_hash_key=HASH_KEY, redis_url=redis_url)
    connection = Connection(label="Twilio - Support", provider="twilio", from_number=AGENT_NUMBER,
                            credentials={"account_sid": ACCOUNT_SID, "auth_token": "unused"})  # fmt: skip

    class Text:
        def __init__(self, text: str) -> None:
            self.provider, self.connection_id = "twilio", connection.connection_id
            self.from_number, self.to_number, self.text, self.keyword_hint = CALLER, AGENT_NUMBER, text, None

    async with SmsClient.from_url(redis_url) as sms:
        assert optout.handle_inbound(redis_client, connection, Text("STOP"), settings=settings) == "opt_out"
        refused = await sms.send(agent_id="agent_abc123", call=inbound("CA-stop"), template="code",
                                 variables={"code": "1"})  # fmt: skip
        assert refused.status == "failed" and refused.error is not None
        assert refused.error.code == "recipient_opted_out"
        assert refused.tool_message == (
            "SMS couldn't be sent: that number has opted out of texts; they can text START to opt back in."
        )
        assert twilio.requests == []
        assert optout.handle_inbound(redis_client, connection, Text("START"), settings=settings) == "opt_in"
        allowed = await sms.send(agent_id="agent_abc123", call=inbound("CA-start"), template="code",
                                 variables={"code": "2"})  # fmt: skip
        assert allowed.status == "accepted", allowed
        assert len(twilio.requests) == 1
    print(
        "\ninbound STOP: next send recipient_opted_out, provider_requests=0; after START: accepted, 1 request"
    )
