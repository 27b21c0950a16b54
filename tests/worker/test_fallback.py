"""The fallback connection: used when the agent's connection is down or refuses our credentials,
never for the recipient's own errors."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis

from producers.contract import CallContext, Job, utcnow
from worker import metrics
from worker.config.models import SmsConfig
from worker.config.source import StaticConfigSource
from worker.providers import ProviderPool
from worker.service import SmsService
from worker.settings import Settings
from worker.testing.actions import Error
from worker.testing.telnyx import FakeTelnyx
from worker.testing.twilio import FakeTwilio

CALLER = "+14155551234"


@pytest.fixture
def fakes() -> Iterator[tuple[FakeTwilio, FakeTelnyx]]:
    with FakeTwilio() as twilio, FakeTelnyx() as telnyx:
        yield twilio, telnyx
        assert twilio.violations == [] and telnyx.violations == []


@pytest.fixture
def svc(redis_client: redis.Redis, fakes: tuple[FakeTwilio, FakeTelnyx]) -> Iterator[SmsService]:
    twilio, telnyx = fakes
    twilio_connection = {
        "label": "Twilio", "provider": "twilio", "from_number": "+15005550006", "api_base_url": twilio.url,
        "messages_per_second": 1000,
        "credentials": {"account_sid": twilio.account_sid, "auth_token": twilio.auth_token},
    }  # fmt: skip
    telnyx_connection = {
        "label": "Telnyx", "provider": "telnyx", "from_number": "+14155550000", "api_base_url": telnyx.url,
        "messages_per_second": 1000, "credentials": {"api_key": telnyx.api_key},
    }  # fmt: skip
    config = SmsConfig.model_validate(
        {
            "connections": [twilio_connection, telnyx_connection],
            "agents": {"a1": {"voice_tools": {"sms_mid_call": {
                "enabled": True, "connection": "Twilio", "fallback_connection": "Telnyx"}}}},
        }
    )  # fmt: skip
    settings = Settings(max_attempts=2, provider_timeout=1.0)
    pool = ProviderPool(settings, redis_client)
    yield SmsService(settings, redis_client, StaticConfigSource(config), pool)
    pool.close()


def job(caller: str = CALLER, job_id: str = "j1") -> dict[str, Any]:
    now = utcnow()
    return Job(
        job_id=job_id, idempotency_key=job_id, agent_id="a1",
        call=CallContext(call_id="CA1", direction="inbound", from_number=caller, to_number="+14155550000"),
        message="hello", created_at=now, expires_at=now + timedelta(minutes=5),
    ).model_dump(mode="json")  # fmt: skip


def terminal(redis_client: redis.Redis) -> dict[str, Any]:
    from producers.contract import Event

    entries: Any = redis_client.xrange("sms:events:CA1")
    events = [Event.model_validate_json(fields[b"event"]) for _, fields in entries]
    [last] = [e for e in events if e.terminal]
    return last.model_dump(mode="json")


def test_auth_failure_sends_through_the_fallback(
    redis_client: redis.Redis, fakes: tuple[FakeTwilio, FakeTelnyx], svc: SmsService
) -> None:
    """Twilio refusing our credentials: the same delivery sends through Telnyx, from Telnyx's
    number, and `midcall_sms_fallbacks_total{from_provider="twilio", to_provider="telnyx"}` counts it."""
    twilio, telnyx = fakes
    twilio.script(Error(20003, status=401))
    before = metrics.FALLBACKS.labels("twilio", "telnyx")._value.get()
    assert svc.handle(job(), attempt=1, owner="w1") is None
    assert metrics.FALLBACKS.labels("twilio", "telnyx")._value.get() == before + 1
    outcome = terminal(redis_client)
    assert (outcome["status"], outcome["provider"], outcome["from_"]) == (
        "accepted",
        "telnyx",
        "+14155550000",
    )
    assert len(twilio.requests) == 1 and len(telnyx.requests) == 1


def test_exhausted_retries_fall_back(
    redis_client: redis.Redis, fakes: tuple[FakeTwilio, FakeTelnyx], svc: SmsService
) -> None:
    """Twilio unavailable on every attempt: after the last retry the fallback sends it."""
    twilio, telnyx = fakes
    twilio.script(Error(20503, status=503), Error(20503, status=503))
    delay = svc.handle(job(), attempt=1, owner="w1")
    assert delay is not None  # attempt 1 of 2 is retried on the same connection
    assert svc.handle(job(), attempt=2, owner="w1") is None
    assert terminal(redis_client)["provider"] == "telnyx"
    assert len(twilio.requests) == 2 and len(telnyx.requests) == 1


def test_a_recipients_error_never_falls_back(
    redis_client: redis.Redis, fakes: tuple[FakeTwilio, FakeTelnyx], svc: SmsService
) -> None:
    """An opted-out recipient (21610) fails at once: another provider would only repeat the refusal."""
    _twilio, telnyx = fakes
    assert svc.handle(job(caller="+15005550004"), attempt=1, owner="w1") is None
    outcome = terminal(redis_client)
    assert (outcome["status"], outcome["error"]["code"]) == ("failed", "recipient_opted_out")
    assert telnyx.requests == []


def test_the_fallback_gets_retries_of_its_own(
    redis_client: redis.Redis, fakes: tuple[FakeTwilio, FakeTelnyx], svc: SmsService
) -> None:
    """Twilio refuses our credentials, Telnyx is unavailable once: the retry goes to Telnyx again
    (not back to Twilio), and is accepted there."""
    twilio, telnyx = fakes
    twilio.script(Error(20003, status=401))
    telnyx.script(Error(10007, status=503))
    delay = svc.handle(job(), attempt=1, owner="w1")
    assert delay is not None, "the fallback's failure is retried"
    assert svc.handle(job(), attempt=2, owner="w1") is None
    outcome = terminal(redis_client)
    assert (outcome["status"], outcome["provider"], outcome["attempt"]) == ("accepted", "telnyx", 2)
    assert len(twilio.requests) == 1 and len(telnyx.requests) == 2


def test_the_fallbacks_retries_stop_at_max_attempts(
    redis_client: redis.Redis, fakes: tuple[FakeTwilio, FakeTelnyx], svc: SmsService
) -> None:
    """Both connections unavailable: 2 attempts on Twilio, then 2 on Telnyx (SMS_MAX_ATTEMPTS=2
    each), then `failed`."""
    twilio, telnyx = fakes
    twilio.script(Error(20503, status=503), Error(20503, status=503))
    telnyx.script(Error(10007, status=503), Error(10007, status=503))
    assert svc.handle(job(), attempt=1, owner="w1") is not None
    assert svc.handle(job(), attempt=2, owner="w1") is not None  # Twilio exhausted: Telnyx, retried
    assert svc.handle(job(), attempt=3, owner="w1") is None
    outcome = terminal(redis_client)
    assert (outcome["status"], outcome["provider"], outcome["error"]["code"]) == (
        "failed",
        "telnyx",
        "provider_unavailable",
    )
    assert len(twilio.requests) == 2 and len(telnyx.requests) == 2


def test_a_fallback_retry_never_outlives_the_deadline(
    redis_client: redis.Redis, fakes: tuple[FakeTwilio, FakeTelnyx], svc: SmsService
) -> None:
    """A fallback failure whose Retry-After would land after the job's deadline is not retried."""
    twilio, telnyx = fakes
    twilio.script(Error(20003, status=401))
    telnyx.script(Error(10011, status=429, headers={"Retry-After": "600"}))
    assert svc.handle(job(), attempt=1, owner="w1") is None
    outcome = terminal(redis_client)
    assert (outcome["status"], outcome["provider"]) == ("failed", "telnyx")
    assert len(telnyx.requests) == 1
