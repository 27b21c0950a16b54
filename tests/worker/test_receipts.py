"""Applying receipts (`worker.receipts.apply_receipt`) on the real redis-server: the mapping written
with the `accepted` outcome, ranking, duplicates, parking of early receipts, the raw audit log."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from typing import Any, cast

import pytest
import redis

from producers.contract import (
    EVENT_FIELD,
    ErrorCode,
    ErrorInfo,
    events_key,
    message_key,
    parked_key,
)
from tests.worker.test_service import Harness, job
from worker import metrics, receipts
from worker.providers.twilio import TwilioProvider
from worker.receipts import ReceiptUpdate, apply_receipt, receipt_log
from worker.settings import Settings

Entries = list[tuple[bytes, dict[bytes, bytes]]]


@pytest.fixture
def sms(redis_client: redis.Redis, redis_url: str) -> Iterator[Harness]:
    harness = Harness(redis_client, Settings(redis_url=redis_url))
    yield harness
    harness.pool.close()


def accepted(sms: Harness, caller: str = "+14155551234") -> dict[str, Any]:
    """Send one job through the service (sandbox) and return its `accepted` event."""
    sms.handle(job(caller=caller))
    event = sms.events()[-1]
    assert event["status"] == "accepted"
    return event


def update(message_id: str, status: str, **fields: Any) -> ReceiptUpdate:
    return ReceiptUpdate(provider="sandbox", message_id=message_id, status=status, **fields)  # type: ignore[arg-type]


def delivery_events(sms: Harness) -> list[dict[str, Any]]:
    return [e for e in sms.events() if e["status"] in ("sent", "unconfirmed", "delivered", "undelivered")]


def test_accepted_outcome_records_which_job_and_call_the_message_id_belongs_to(
    sms: Harness, redis_client: redis.Redis
) -> None:
    """The outcome transaction stores `sms:msg:<provider>:<id>` with the job, call, connection and
    masked number, at delivery status `accepted`, expiring like the idempotency key."""
    event = accepted(sms)
    mapping = receipts.read_mapping(redis_client, "sandbox", event["provider_message_id"])
    assert mapping["job_id"] == event["job_id"]
    assert mapping["call_id"] == "CA42"
    assert mapping["connection"] == "Sandbox"
    assert mapping["connection_id"] == "sandbox"
    assert mapping["to"] == "+1415****234"
    assert (mapping["status"], mapping["rank"]) == ("accepted", "0")
    ttl = redis_client.ttl(message_key("sandbox", event["provider_message_id"]))
    assert 0 < ttl <= Settings().idempotency_ttl
    assert "+14155551234" not in json.dumps(mapping)


def test_a_receipt_publishes_one_delivery_event_after_accepted(sms: Harness) -> None:
    """`delivered` for a mapped message publishes one non-terminal event for the same job, with
    the accepted event's provider, message id and masked number, and "SMS delivered."."""
    event = accepted(sms)
    assert apply_receipt(sms.redis, update(event["provider_message_id"], "delivered")) == "published"
    statuses = sms.statuses()
    assert statuses[-2:] == ["accepted", "delivered"]
    delivered = sms.events()[-1]
    assert delivered["job_id"] == event["job_id"]
    assert delivered["terminal"] is False
    assert delivered["provider_message_id"] == event["provider_message_id"]
    assert delivered["to"] == "+1415****234"
    assert delivered["tool_message"] == "SMS delivered."


def test_receipts_that_change_a_status_are_counted_and_time_to_delivery_observed(sms: Harness) -> None:
    """A published `delivered` counts in `midcall_sms_receipts_total{provider, status}` and observes
    the time since `accepted` in `midcall_sms_delivery_seconds`; its duplicate counts nothing."""

    def counted() -> tuple[float, float]:
        receipts_seen = metrics.RECEIPTS.labels("sandbox", "delivered")._value.get()
        histogram = metrics.DELIVERY_SECONDS.labels("sandbox", "delivered")
        observed = sum(bucket.get() for bucket in histogram._buckets)
        return receipts_seen, observed

    event = accepted(sms)
    before = counted()
    assert apply_receipt(sms.redis, update(event["provider_message_id"], "delivered")) == "published"
    assert apply_receipt(sms.redis, update(event["provider_message_id"], "delivered")) == "duplicate"
    assert counted() == (before[0] + 1, before[1] + 1)


def test_statuses_are_ranked_and_a_final_one_sticks(sms: Harness) -> None:
    """sent → delivered publish; a late `sent`, a second `delivered` and a contradicting
    `undelivered` publish nothing (stale, duplicate, stale)."""
    mid = accepted(sms)["provider_message_id"]
    assert apply_receipt(sms.redis, update(mid, "sent")) == "published"
    assert apply_receipt(sms.redis, update(mid, "delivered")) == "published"
    assert apply_receipt(sms.redis, update(mid, "sent")) == "stale"
    assert apply_receipt(sms.redis, update(mid, "delivered")) == "duplicate"
    assert apply_receipt(sms.redis, update(mid, "undelivered")) == "stale"
    assert [e["status"] for e in delivery_events(sms)] == ["sent", "delivered"]


def test_out_of_order_pair_ends_delivered_with_one_event(sms: Harness) -> None:
    """`delivered` before `sent` (callbacks out of order): one `delivered` event, the `sent` is stale."""
    mid = accepted(sms)["provider_message_id"]
    assert apply_receipt(sms.redis, update(mid, "delivered")) == "published"
    assert apply_receipt(sms.redis, update(mid, "sent")) == "stale"
    assert [e["status"] for e in delivery_events(sms)] == ["delivered"]


def test_unconfirmed_ranks_between_sent_and_final(sms: Harness) -> None:
    """`unconfirmed` replaces `sent` and is replaced by a final status, never the other way round."""
    mid = accepted(sms)["provider_message_id"]
    assert apply_receipt(sms.redis, update(mid, "unconfirmed")) == "published"
    assert apply_receipt(sms.redis, update(mid, "sent")) == "stale"
    assert apply_receipt(sms.redis, update(mid, "delivered")) == "published"
    unconfirmed = delivery_events(sms)[0]
    assert "probably delivered" in unconfirmed["tool_message"]


def test_queued_and_sending_receipts_publish_nothing_but_are_logged(sms: Harness) -> None:
    """A `queued`/`sending` receipt is kept in the audit log and publishes no event."""
    mid = accepted(sms)["provider_message_id"]
    before = sms.statuses()
    assert apply_receipt(sms.redis, update(mid, "queued")) == "stale"
    assert apply_receipt(sms.redis, update(mid, "sending")) == "stale"
    assert sms.statuses() == before
    assert [entry["status"] for entry in receipt_log(sms.redis, "sandbox", mid)] == ["queued", "sending"]


def test_undelivered_carries_the_error_and_speaks_its_reason(sms: Harness) -> None:
    """An `undelivered` receipt's event holds the taxonomy code, the provider's code, and a tool
    message built from the receipt table's speakable reason (Twilio 30007: carrier filtering)."""
    mid = accepted(sms)["provider_message_id"]
    receipt = TwilioProvider.receipt(
        {"MessageSid": mid, "MessageStatus": "undelivered", "ErrorCode": "30007"}
    )
    assert apply_receipt(sms.redis, dataclasses.replace(receipt, provider="sandbox")) == "published"
    event = delivery_events(sms)[-1]
    assert event["status"] == "undelivered"
    assert event["error"]["code"] == "undelivered"
    assert event["error"]["provider_code"] == "30007"
    assert event["tool_message"].startswith("SMS wasn't delivered: the carrier filtered it as spam")
    assert "read it out" in event["tool_message"]


def test_an_early_receipt_is_parked_and_applied_by_the_outcome_transaction(
    sms: Harness, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A receipt for a message id the worker has not stored yet is parked (nothing published);
    when the worker stores the `accepted` outcome for that id, the parked receipt is applied and
    its event follows the `accepted`."""
    fixed = "SBearly0000000000000000000000000"
    monkeypatch.setattr("worker.providers.sandbox.uuid.uuid4", lambda: type("U", (), {"hex": fixed[2:]})())
    assert apply_receipt(redis_client, update(fixed, "delivered")) == "parked"
    assert apply_receipt(redis_client, update(fixed, "sent")) == "parked"
    assert redis_client.llen(parked_key("sandbox", fixed)) == 2
    sms.handle(job())
    assert sms.statuses()[-3:] == ["sending", "accepted", "delivered"]
    assert not redis_client.exists(parked_key("sandbox", fixed))
    results = [entry["result"] for entry in receipt_log(redis_client, "sandbox", fixed)]
    assert results == ["parked", "parked", "published", "stale"]


def test_a_parked_receipt_still_unknown_stays_parked(redis_client: redis.Redis) -> None:
    """Draining parked receipts of a message that still has no mapping keeps them (nothing lost)."""
    assert apply_receipt(redis_client, update("SBnobody", "delivered")) == "parked"
    assert receipts.drain_parked(redis_client, "sandbox", "SBnobody") == ["parked"]
    assert redis_client.llen(parked_key("sandbox", "SBnobody")) == 1


def test_concurrent_duplicates_publish_exactly_one_final_event(sms: Harness, redis_url: str) -> None:
    """Sixteen threads apply `delivered` and `undelivered` receipts for one message at once:
    exactly one final event is published, and every other receipt is a duplicate or stale."""
    mid = accepted(sms)["provider_message_id"]
    results: list[str] = []
    barrier = threading.Barrier(16)

    def apply(index: int) -> None:
        client = redis.Redis.from_url(redis_url)
        status = "delivered" if index % 2 else "undelivered"
        barrier.wait()
        results.append(apply_receipt(client, update(mid, status)))
        client.close()

    threads = [threading.Thread(target=apply, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    finals = [e for e in delivery_events(sms) if e["status"] in ("delivered", "undelivered")]
    print(f"receipts=16 published={results.count('published')} duplicate={results.count('duplicate')} "
          f"stale={results.count('stale')} final_events={len(finals)}")  # fmt: skip
    assert results.count("published") == 1
    assert len(finals) == 1
    assert len(receipt_log(sms.redis, "sandbox", mid)) == 16


def test_the_raw_receipt_log_masks_numbers_and_bodies(sms: Harness) -> None:
    """Every raw receipt is kept, with phone numbers masked and any message text as length + hash."""
    mid = accepted(sms)["provider_message_id"]
    raw = {
        "To": "+14155551234",
        "From": "14155550000",
        "text": "Your code is 1234",
        "nested": [{"phone_number": "+447911123456"}],
    }
    apply_receipt(sms.redis, update(mid, "delivered", raw=raw))
    (entry,) = receipt_log(sms.redis, "sandbox", mid)
    stored = json.dumps(entry)
    for secret in ("4155551234", "4155550000", "Your code", "7911123456"):
        assert secret not in stored
    assert entry["raw"]["To"] == "+1415****234"
    assert entry["raw"]["text"].startswith("<17 chars")
    assert entry["result"] == "published"


def test_a_receipt_roundtrips_through_its_stored_form() -> None:
    """What is parked is read back into an equal update (raw fields masked)."""
    error = ErrorInfo(code=ErrorCode.NOT_MOBILE, provider_code="30006", message="landline")
    original = update("SB1", "undelivered", error=error, source="poll")
    again = ReceiptUpdate.from_json(original.to_json())
    assert again == original


def test_events_for_the_call_are_valid_events(sms: Harness, redis_client: redis.Redis) -> None:
    """Delivery events parse as contract events (what producers read)."""
    from producers.contract import Event

    mid = accepted(sms)["provider_message_id"]
    apply_receipt(redis_client, update(mid, "sent"))
    entries = cast(Entries, redis_client.xrange(events_key("CA42")))
    for _, fields in entries:
        Event.model_validate_json(fields[EVENT_FIELD.encode()])
