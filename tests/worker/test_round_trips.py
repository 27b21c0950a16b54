"""The send path's Redis cost with every policy on: the claim and the outcome, one script call each.

Counted two ways: a connection that counts what it writes to the socket (one write per command or
per pipeline: a round trip), and Redis's own `INFO commandstats` (commands the server ran).
"""

from __future__ import annotations

import random
from typing import Any, ClassVar

import redis

from producers.contract import CallContext
from producers.jobs import build_job
from worker.config.models import Connection, SmsConfig
from worker.config.source import StaticConfigSource
from worker.providers import OutboundSms, ProviderPool, Receipt, SmsProvider
from worker.service import SmsService
from worker.settings import Settings

CALLER = "+14155551234"
SENDER = "+14155550000"


class CountingConnection(redis.Connection):
    """A redis-py connection that counts round trips (each `send_packed_command` is one request
    written: a command, or a whole pipeline)."""

    round_trips: ClassVar[int] = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.round_trips += 1
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]


class NoRedisProvider(SmsProvider):
    """Accepts every message and touches no Redis (the sandbox writes an outbox)."""

    name: ClassVar[str] = "twilio"

    def _send(self, sms: OutboundSms) -> Receipt:
        return Receipt(message_id="SM" + sms.job_id[-8:])


class StubPool(ProviderPool):
    def get(self, connection: Connection) -> SmsProvider:
        return NoRedisProvider()


def every_policy() -> SmsConfig:
    """Twilio's default sender rate (long code, 1/s, not binding here: one send per sender), the
    opt-out list, a per-recipient cap and a per-call cap, all on."""
    return SmsConfig.model_validate(
        {
            "connections": [
                {
                    "label": "Twilio",
                    "provider": "twilio",
                    "from_number": SENDER,
                    "credentials": {"account_sid": "AC1", "auth_token": "t"},
                }
            ],
            "agents": {
                "a1": {
                    "voice_tools": {
                        "sms_mid_call": {
                            "enabled": True,
                            "connection": "Twilio",
                            "allow_overrides": True,
                            "templates": {"code": "Code {code}"},
                            "max_per_call": 5,
                            "max_per_recipient": {"count": 1000, "window_seconds": 3600},
                        }
                    }
                }
            },
        }
    )


def commandstats(client: redis.Redis) -> dict[str, int]:
    stats: dict[str, Any] = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


def test_a_send_with_every_policy_costs_two_round_trips_and_two_script_calls(redis_url: str) -> None:
    """Opt-out check, per-call cap, per-recipient cap and the sender's GCRA all run inside the
    claim: a send costs exactly 2 Redis round trips and 2 EVALSHAs (the claim, the outcome
    script), and at most 25 commands in all."""
    pool = redis.ConnectionPool.from_url(redis_url, connection_class=CountingConnection)
    client = redis.Redis(connection_pool=pool)
    observer = redis.Redis.from_url(redis_url)
    settings = Settings(redis_url=redis_url, number_hash_key="k")
    service = SmsService(settings, client, StaticConfigSource(every_policy()), StubPool(settings, client),
                         rng=random.Random(1))  # fmt: skip

    def send(i: int) -> None:
        call = CallContext(call_id=f"CA-rt-{i}", direction="inbound", from_number=CALLER, to_number=SENDER)
        # each send from its own sending number, so the 1/s default never holds one back
        job = build_job(agent_id="a1", call=call, template="code", variables={"code": str(i)},
                        from_=f"+1415555{i:04d}")  # fmt: skip
        assert service.handle(job.model_dump(mode="json"), attempt=1, owner="w") is None

    try:
        send(0)  # warm-up: loads the script (EVALSHA, NOSCRIPT, SCRIPT LOAD) once per connection
        sends = 20
        before_trips, before = CountingConnection.round_trips, commandstats(observer)
        for i in range(1, sends + 1):
            send(i)
        trips = CountingConnection.round_trips - before_trips
        after = commandstats(observer)
        ran = {name: after.get(name, 0) - before.get(name, 0) for name in after}
        per_send = {name: count / sends for name, count in sorted(ran.items()) if count and name != "info"}
        print(f"\nround trips per send with every policy: {trips / sends:.2f}; commands per send: {per_send}")
        assert trips == 2 * sends
        assert ran.get("evalsha", 0) == 2 * sends  # the claim, the outcome
        assert ran.get("multi", 0) == 0 and ran.get("exec", 0) == 0
        assert ran.get("eval", 0) == 0 and ran.get("script|load", 0) == 0
        # the policies ran inside the script (the recipient cap's ZADD, the GCRA's SET, the opt-out
        # list's HMGET beside the claim's own read of the key)
        assert ran.get("zadd", 0) == sends and ran.get("hmget", 0) == 2 * sends and ran.get("set", 0) == sends
        # the whole send, the scripts' own commands included: 15 in the claim (was 20), 10 in the
        # outcome's script (was 12 in a MULTI; the status poll's LPUSH included); the recipient's
        # window pruned only when full; 5 EXPIREs: the new key's and the call counter's (the claim),
        # the stream's (the terminal event only: a young job's stream has its TTL from its
        # `queued`), the audit summary's and the message mapping's
        assert ran.get("zremrangebyscore", 0) == 0 and ran.get("hexists", 0) == 0
        assert ran.get("expire", 0) == 5 * sends
        assert sum(per_send.values()) <= 25
    finally:
        client.close()
        observer.close()
