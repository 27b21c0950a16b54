"""Prometheus metrics: what one outcome of one send counts, and the queue-depth sampler."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import fakeredis
import pytest
import redis
from prometheus_client import CollectorRegistry
from redis.backoff import NoBackoff
from redis.retry import Retry

from producers.contract import QUEUE, CallContext, ErrorCode, ErrorInfo, Event, Status
from producers.jobs import build_job
from worker import metrics
from worker.config.models import SmsConfig
from worker.config.source import StaticConfigSource
from worker.providers import ProviderPool
from worker.redis_server import free_port
from worker.service import SmsService
from worker.settings import Settings

CREATED = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def value(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def delta(name: str, **labels: str) -> Callable[[], float]:
    """The change of one sample since this call."""
    before = value(name, **labels)
    return lambda: value(name, **labels) - before


def event(status: Status, *, provider: str | None = "twilio", attempt: int = 1, **fields: object) -> Event:
    return Event(
        job_id="job-1",
        call_id="CA1",
        status=status,
        terminal=status in (Status.ACCEPTED, Status.FAILED),
        at=CREATED + timedelta(seconds=1.5),
        attempt=attempt,
        provider=provider,
        tool_message="",
        **fields,
    )


def test_an_accepted_send_counts_its_outcome_attempts_and_end_to_end_latency() -> None:
    """An accepted send on its second attempt counts once by provider and outcome, observes 2
    attempts, and 1.5 s from the job's created_at to its terminal event."""
    sends = delta("midcall_sms_sends_total", provider="twilio", outcome="accepted", error_code="")
    attempts = delta("midcall_sms_attempts_sum", provider="twilio", outcome="accepted")
    e2e_sum = delta("midcall_sms_end_to_end_seconds_sum", outcome="accepted")
    e2e_fast = delta("midcall_sms_end_to_end_seconds_bucket", outcome="accepted", le="1.0")
    e2e_slow = delta("midcall_sms_end_to_end_seconds_bucket", outcome="accepted", le="2.5")
    metrics.observe_send(event(Status.ACCEPTED, attempt=2), CREATED)
    assert sends() == 1
    assert attempts() == 2
    assert e2e_sum() == pytest.approx(1.5)
    assert (e2e_fast(), e2e_slow()) == (0, 1)


def test_a_retry_counts_with_its_error_but_is_not_an_end() -> None:
    """A `retrying` outcome counts with its error code and observes neither attempts nor latency."""
    error = ErrorInfo(code=ErrorCode.RATE_LIMITED, message="slow down", retryable=True)
    retrying = delta(
        "midcall_sms_sends_total", provider="twilio", outcome="retrying", error_code="rate_limited"
    )
    ends = delta("midcall_sms_end_to_end_seconds_count", outcome="retrying")
    tries = delta("midcall_sms_attempts_count", provider="twilio", outcome="retrying")
    metrics.observe_send(event(Status.RETRYING, error=error), CREATED)
    assert (retrying(), ends(), tries()) == (1, 0, 0)


def test_a_replayed_outcome_counts_only_as_a_replay() -> None:
    """A job answered from its idempotency key counts as a replay, not as a send."""
    replays = delta("midcall_sms_replays_total", outcome="accepted")
    sends = delta("midcall_sms_sends_total", provider="twilio", outcome="accepted", error_code="")
    metrics.observe_send(event(Status.ACCEPTED), CREATED, replayed=True)
    assert (replays(), sends()) == (1, 0)


def test_a_malformed_job_counts_as_failed_without_a_provider() -> None:
    """A job no worker can read counts as failed/invalid_request under provider `none`."""
    error = ErrorInfo(code=ErrorCode.INVALID_REQUEST, message="malformed job")
    failed = delta("midcall_sms_sends_total", provider="none", outcome="failed", error_code="invalid_request")
    tries = delta("midcall_sms_attempts_count", provider="none", outcome="failed")
    metrics.observe_send(event(Status.FAILED, provider=None, attempt=0, error=error), None)
    assert (failed(), tries()) == (1, 0)


def test_provider_requests_are_observed_in_seconds() -> None:
    """A 250 ms provider request adds 0.25 s to the histogram of its provider."""
    total = delta("midcall_sms_provider_request_seconds_sum", provider="plivo")
    within = delta("midcall_sms_provider_request_seconds_bucket", provider="plivo", le="0.25")
    below = delta("midcall_sms_provider_request_seconds_bucket", provider="plivo", le="0.1")
    metrics.observe_provider_call("plivo", 250.0)
    assert total() == pytest.approx(0.25)
    assert (within(), below()) == (1, 0)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def gauges(registry: CollectorRegistry) -> dict[str, float | None]:
    return {
        name: registry.get_sample_value(name)
        for name in ("midcall_sms_queue_depth", "midcall_sms_queue_unacked", "midcall_sms_dead_letter_depth")
    }


def test_queue_depth_is_read_at_most_once_per_interval() -> None:
    """Scrapes within the interval reuse the last LLEN/HLEN sample; the next one reads Redis again."""
    client = fakeredis.FakeRedis()
    client.lpush(QUEUE, "a", "b", "c")
    client.hset(metrics.UNACKED_KEY, "tag", "message")
    clock = Clock()
    registry = CollectorRegistry()
    registry.register(metrics.QueueDepthCollector(client, interval=5.0, clock=clock))
    assert gauges(registry) == {
        "midcall_sms_queue_depth": 3,
        "midcall_sms_queue_unacked": 1,
        "midcall_sms_dead_letter_depth": 0,
    }
    client.lpush(QUEUE, "d", "e")
    clock.now += 4.9
    assert gauges(registry)["midcall_sms_queue_depth"] == 3
    clock.now += 0.2
    assert gauges(registry)["midcall_sms_queue_depth"] == 5


def test_queue_depth_is_left_out_while_redis_is_unreachable() -> None:
    """No Redis, no queue-depth sample (rather than a stale one); registering never calls Redis."""
    client = redis.Redis(port=free_port(), socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    registry = CollectorRegistry()
    registry.register(metrics.QueueDepthCollector(client, interval=5.0))
    assert gauges(registry) == {
        "midcall_sms_queue_depth": None,
        "midcall_sms_queue_unacked": None,
        "midcall_sms_dead_letter_depth": None,
    }


def test_the_send_pipeline_reports_its_outcomes_and_provider_requests(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """Through `SmsService` with the sandbox: an accepted send, a send that is retried, and a
    refused template each count once, and only provider calls are timed."""
    settings = Settings(redis_url=redis_url)
    config = SmsConfig.model_validate(
        {
            "connections": [{"label": "Sandbox", "provider": "sandbox", "default": True}],
            "agents": {
                "agent_m": {
                    "voice_tools": {
                        "sms_mid_call": {"enabled": True, "provider": "sandbox", "recipient_policy": "any"}
                    }
                }
            },
        }
    )
    pool = ProviderPool(settings, redis_client)
    service = SmsService(settings, redis_client, StaticConfigSource(config), pool, rng=random.Random(3))
    call = CallContext(
        call_id="CA-m", direction="inbound", from_number="+14155551234", to_number="+14155550000"
    )
    accepted = delta("midcall_sms_sends_total", provider="sandbox", outcome="accepted", error_code="")
    retrying = delta(
        "midcall_sms_sends_total", provider="sandbox", outcome="retrying", error_code="provider_unavailable"
    )
    refused = delta("midcall_sms_sends_total", provider="none", outcome="failed", error_code="template_error")
    requests = delta("midcall_sms_provider_request_seconds_count", provider="sandbox")
    two_attempts = delta("midcall_sms_attempts_bucket", provider="sandbox", outcome="accepted", le="2.0")
    try:
        ok = build_job(agent_id="agent_m", call=call, message="hi")
        assert service.handle(ok.model_dump(mode="json"), attempt=1, owner="w") is None
        flaky = build_job(agent_id="agent_m", call=call, message="hi again", to="+15005550010")
        assert service.handle(flaky.model_dump(mode="json"), attempt=1, owner="w") is not None
        assert service.handle(flaky.model_dump(mode="json"), attempt=2, owner="w") is None
        bad = build_job(agent_id="agent_m", call=call, template="missing")
        assert service.handle(bad.model_dump(mode="json"), attempt=1, owner="w") is None
    finally:
        pool.close()
    assert (accepted(), retrying(), refused()) == (2, 1, 1)
    assert requests() == 3
    assert two_attempts() == 2
