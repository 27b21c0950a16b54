"""`wait_delivery()` (async and sync) and the `sms_status` tool, reading a call's channel on the
real redis-server: events are written as the worker writes them (`worker.events`)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis

from producers import DeliveryResult, SmsClient, SyncSmsClient
from producers.contract import CallContext, ErrorCode, ErrorInfo, Event, Status, tool_message, utcnow
from producers.results import SendResult
from producers.tools import SMS_STATUS_TOOL, sms_status
from worker import events

CALL = CallContext(call_id="CA-d1", direction="inbound", from_number="+14155551234", to_number="+14155550000")
FILTERED = ErrorInfo(
    code=ErrorCode.UNDELIVERED,
    provider_code="30007",
    message="the carrier filtered it as spam; offer to read it out or share it another way",
)


def publish(
    client: redis.Redis, status: Status, job_id: str = "job-1", error: ErrorInfo | None = None
) -> None:
    terminal = status in (Status.ACCEPTED, Status.FAILED)
    event = Event(
        job_id=job_id,
        call_id=CALL.call_id,
        status=status,
        terminal=terminal,
        at=utcnow(),
        provider="twilio",
        provider_message_id=f"SM-{job_id}",
        error=error,
        tool_message=tool_message(status, error.code if error else None, error.message if error else None),
    )
    events.publish(client, event)


@pytest.fixture
async def sms(redis_url: str) -> AsyncIterator[SmsClient]:
    async with SmsClient.from_url(redis_url) as client:
        yield client


@pytest.fixture
def sync_sms(redis_url: str) -> Iterator[SyncSmsClient]:
    with SyncSmsClient.from_url(redis_url) as client:
        yield client


async def test_a_receipt_already_on_the_channel_is_returned_at_once(
    sms: SmsClient, redis_client: redis.Redis
) -> None:
    """accepted → sent → delivered already published: `delivered`, "SMS delivered.", without waiting."""
    for status in (Status.QUEUED, Status.SENDING, Status.ACCEPTED, Status.SENT, Status.DELIVERED):
        publish(redis_client, status)
    started = time.monotonic()
    result = await sms.wait_delivery("job-1", call_id=CALL.call_id, timeout=5)
    assert (result.status, result.tool_message) == ("delivered", "SMS delivered.")
    assert result.provider_message_id == "SM-job-1"
    assert time.monotonic() - started < 1.0


async def test_a_late_receipt_ends_the_wait(sms: SmsClient, redis_client: redis.Redis) -> None:
    """`wait_delivery` blocks until the undelivered receipt arrives and returns its error and sentence."""
    publish(redis_client, Status.ACCEPTED)
    timer = threading.Timer(0.3, publish, args=(redis_client, Status.UNDELIVERED), kwargs={"error": FILTERED})
    timer.start()
    result = await sms.wait_delivery("job-1", call_id=CALL.call_id, timeout=5)
    timer.join()
    assert result.status == "undelivered"
    assert result.error == FILTERED
    assert result.tool_message == (
        "SMS wasn't delivered: the carrier filtered it as spam; offer to read it out or share it another way."
    )


async def test_no_receipt_in_time_is_unknown_or_the_best_so_far(
    sms: SmsClient, redis_client: redis.Redis
) -> None:
    """Nothing final within the timeout: `unknown` after a bare `accepted`, `sent` after a `sent`."""
    publish(redis_client, Status.ACCEPTED)
    result = await sms.wait_delivery("job-1", call_id=CALL.call_id, timeout=0.3)
    assert result.status == "unknown"
    assert result.tool_message == "SMS accepted by the provider; delivery not confirmed yet."
    publish(redis_client, Status.SENT)
    result = await sms.wait_delivery("job-1", call_id=CALL.call_id, timeout=0.3)
    assert result.status == "sent"
    assert "not confirmed" in result.tool_message


async def test_other_jobs_of_the_call_are_ignored(sms: SmsClient, redis_client: redis.Redis) -> None:
    """A receipt for another text of the same call does not answer for this one."""
    publish(redis_client, Status.ACCEPTED, job_id="job-1")
    publish(redis_client, Status.ACCEPTED, job_id="job-2")
    publish(redis_client, Status.DELIVERED, job_id="job-2")
    result = await sms.wait_delivery("job-1", call_id=CALL.call_id, timeout=0.2)
    assert result.status == "unknown"


async def test_a_failed_job_is_undelivered_with_its_failure(
    sms: SmsClient, redis_client: redis.Redis
) -> None:
    """A text that was never sent answers at once, with the failure's own sentence."""
    error = ErrorInfo(code=ErrorCode.NOT_MOBILE, message="landline")
    publish(redis_client, Status.FAILED, error=error)
    result = await sms.wait_delivery("job-1", call_id=CALL.call_id, timeout=5)
    assert result.status == "undelivered"
    assert result.tool_message.startswith("SMS couldn't be sent: ")


async def test_a_send_result_carries_its_call(sms: SmsClient, redis_client: redis.Redis) -> None:
    """`wait_delivery(result)` finds the call from the result's events; without events it needs call_id."""
    publish(redis_client, Status.ACCEPTED)
    publish(redis_client, Status.UNCONFIRMED)
    accepted = Event(
        job_id="job-1",
        call_id=CALL.call_id,
        status=Status.ACCEPTED,
        terminal=True,
        at=utcnow(),
        tool_message="SMS sent.",
    )
    result = SendResult(job_id="job-1", status="accepted", tool_message="SMS sent.", events=(accepted,))
    delivery = await sms.wait_delivery(result, timeout=5)
    assert delivery.status == "unconfirmed"
    assert "Don't send it again" in delivery.tool_message
    with pytest.raises(ValueError, match="call_id"):
        await sms.wait_delivery(SendResult(job_id="job-1", status="accepted", tool_message="SMS sent."))


def test_the_sync_client_waits_the_same_way(sync_sms: SyncSmsClient, redis_client: redis.Redis) -> None:
    """`SyncSmsClient.wait_delivery` returns the late `delivered` too, and `unknown` on timeout."""
    publish(redis_client, Status.ACCEPTED)
    assert sync_sms.wait_delivery("job-1", call_id=CALL.call_id, timeout=0.2).status == "unknown"
    timer = threading.Timer(0.3, publish, args=(redis_client, Status.DELIVERED))
    timer.start()
    result = sync_sms.wait_delivery("job-1", call_id=CALL.call_id, timeout=5)
    timer.join()
    assert isinstance(result, DeliveryResult)
    assert (result.status, result.tool_message) == ("delivered", "SMS delivered.")


# -- the sms_status tool ---------------------------------------------------------------------------


def test_the_status_tool_schema_takes_no_required_arguments() -> None:
    """`SMS_STATUS_TOOL` is a function-calling schema named `sms_status` with only optional parameters."""
    function = SMS_STATUS_TOOL["function"]
    assert function["name"] == "sms_status"
    assert function["parameters"]["required"] == []


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([], "No text message has been sent during this call."),
        ([Status.ACCEPTED], "SMS accepted by the provider; delivery not confirmed yet."),
        ([Status.ACCEPTED, Status.SENT], "SMS handed to the carrier; delivery not confirmed yet."),
        ([Status.ACCEPTED, Status.SENT, Status.DELIVERED], "SMS delivered."),
        ([Status.ACCEPTED, Status.UNCONFIRMED], tool_message(Status.UNCONFIRMED)),
    ],
)
async def test_sms_status_says_one_true_sentence_per_state(
    sms: SmsClient, redis_client: redis.Redis, statuses: list[Status], expected: str
) -> None:
    """The tool reports the call's latest text in one sentence per delivery state."""
    for status in statuses:
        publish(redis_client, status)
    assert await sms_status(sms, call=CALL, arguments={"wait_seconds": 0}) == expected


async def test_sms_status_reports_the_latest_text_and_its_reason(
    sms: SmsClient, redis_client: redis.Redis
) -> None:
    """With two texts in the call, the latest one is reported; undelivered says why and what to offer."""
    publish(redis_client, Status.ACCEPTED, job_id="job-1")
    publish(redis_client, Status.DELIVERED, job_id="job-1")
    publish(redis_client, Status.ACCEPTED, job_id="job-2")
    publish(redis_client, Status.UNDELIVERED, job_id="job-2", error=FILTERED)
    text = await sms_status(sms, call=CALL, arguments={})
    assert text.startswith("SMS wasn't delivered: the carrier filtered it as spam")


async def test_sms_status_waits_at_most_its_bound(sms: SmsClient, redis_client: redis.Redis) -> None:
    """A model asking to wait 60 s waits at most 10 s; a bad value falls back to the default."""
    publish(redis_client, Status.ACCEPTED)
    started = time.monotonic()
    args: dict[str, Any] = {"wait_seconds": "soon"}
    assert await sms_status(sms, call=CALL, arguments=args, timeout=0.2) == (
        "SMS accepted by the provider; delivery not confirmed yet."
    )
    assert time.monotonic() - started < 2
    await asyncio.sleep(0)


async def test_a_repeated_tool_call_gets_the_first_sends_receipts(
    sms: SmsClient, redis_client: redis.Redis
) -> None:
    """A replayed job (same idempotency key: accepted with the first job's message id) learns the
    receipt published under the first job's id."""
    publish(redis_client, Status.ACCEPTED, job_id="job-1")
    replay = Event(
        job_id="job-2",
        call_id=CALL.call_id,
        status=Status.ACCEPTED,
        terminal=True,
        at=utcnow(),
        provider="twilio",
        provider_message_id="SM-job-1",
        tool_message="SMS sent.",
    )
    events.publish(redis_client, replay)
    publish(redis_client, Status.DELIVERED, job_id="job-1")
    result = await sms.wait_delivery("job-2", call_id=CALL.call_id, timeout=2)
    assert (result.status, result.tool_message) == ("delivered", "SMS delivered.")
    assert await sms_status(sms, call=CALL, arguments={"wait_seconds": 0}) == "SMS delivered."
