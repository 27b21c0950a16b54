"""`SyncSmsClient` end to end: the same pipeline tests as the async client, without an event loop."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from producers import Status, SyncSmsClient
from tests.integration.conftest import CALLER, TEMPLATE, VARIABLES, WorkerFactory
from tests.integration.test_pipeline import inbound
from worker.testing.twilio import FakeTwilio


def test_templated_sms_is_accepted_with_twilios_sid(
    start_worker: WorkerFactory, config: Path, worker_env: dict[str, str], redis_url: str, twilio: FakeTwilio
) -> None:
    """A blocking producer sends a templated SMS and gets `accepted`, the provider's SID, and the
    events queued → sending → accepted."""
    start_worker(config, env=worker_env)
    with SyncSmsClient.from_url(redis_url) as sms:
        result = sms.send(
            agent_id="agent_abc123",
            call=inbound("CA-s42"),
            template="booking_confirmation",
            variables=VARIABLES,
        )
        assert result.status == "accepted", result
        assert result.tool_message == "SMS sent."
        assert result.provider_message_id is not None and result.provider_message_id.startswith("SM")
        [request] = twilio.requests
        assert request.form()["To"] == CALLER
        assert request.form()["Body"] == TEMPLATE.format(**VARIABLES)
        statuses = [e.status for e in sms.events("CA-s42", idle_timeout=0.2) if e.job_id == result.job_id]
        assert statuses == [Status.QUEUED, Status.SENDING, Status.ACCEPTED]


def test_100_sends_from_threads_reach_the_provider_exactly_once_each(
    start_worker: WorkerFactory, config: Path, worker_env: dict[str, str], redis_url: str, twilio: FakeTwilio
) -> None:
    """One client shared by 16 threads: 100 sends, 100 provider requests, no message twice."""
    start_worker(config, env=worker_env, concurrency=32)
    with SyncSmsClient.from_url(redis_url) as sms, ThreadPoolExecutor(16) as pool:
        results = list(
            pool.map(
                lambda i: sms.send(
                    agent_id="agent_abc123",
                    call=inbound(f"CA-s{i}"),
                    template="booking_confirmation",
                    variables={**VARIABLES, "link": f"https://acme.example/b/{i}"},
                    timeout=30,
                ),
                range(100),
            )
        )
    assert [r.status for r in results].count("accepted") == 100
    bodies = [r.form()["Body"] for r in twilio.requests]
    assert len(bodies) == 100 and len(set(bodies)) == 100, "a message reached the provider twice"


def test_a_refusal_ends_failed_with_its_code_and_no_provider_call(
    start_worker: WorkerFactory, config: Path, worker_env: dict[str, str], redis_url: str, twilio: FakeTwilio
) -> None:
    """A missing template variable fails `template_error` before any provider call."""
    start_worker(config, env=worker_env)
    with SyncSmsClient.from_url(redis_url) as sms:
        result = sms.send(
            agent_id="agent_abc123", call=inbound("CA-s-var"), template="booking_confirmation",
            variables={"date": "March 10"},
        )  # fmt: skip
    assert result.status == "failed"
    assert result.error is not None and result.error.code == "template_error"
    assert twilio.requests == []


def test_without_a_worker_send_returns_pending_and_a_later_worker_sends_it(
    start_worker: WorkerFactory, config: Path, worker_env: dict[str, str], redis_url: str, twilio: FakeTwilio
) -> None:
    """No worker: `pending` after about the timeout; a worker started later sends it once."""
    with SyncSmsClient.from_url(redis_url) as sms:
        started = time.monotonic()
        result = sms.send(
            agent_id="agent_abc123", call=inbound("CA-s-late"), template="booking_confirmation",
            variables=VARIABLES, timeout=1.0,
        )  # fmt: skip
        elapsed = time.monotonic() - started
        assert result.status == "pending"
        assert 0.9 <= elapsed < 1.6
        start_worker(config, env=worker_env)
        terminal = [
            e for e in sms.events("CA-s-late", idle_timeout=5.0) if e.job_id == result.job_id and e.terminal
        ]
    assert [e.status for e in terminal] == [Status.ACCEPTED]
    assert len(twilio.requests) == 1
