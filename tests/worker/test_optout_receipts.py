"""Opt-outs learnt from receipts, and the fallback connection's own opt-out list.

A receipt whose error the provider's table maps to `recipient_opted_out` (Plivo `ErrorCode` 200,
Telnyx 40300, Twilio 21610) puts the recipient on the sending connection's list, from the fields
the message's mapping kept (the keyed hash, never the number). A send that falls back to another
connection checks that connection's list before its provider is called."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis

from producers.contract import CallContext, ErrorCode, ErrorInfo, Event, Job, message_key, utcnow
from tests.redis_dump import dump_all
from tests.worker.test_service import CALLER, Harness, job
from worker import optout, receipts
from worker.config.models import SmsConfig
from worker.config.source import StaticConfigSource
from worker.providers import ProviderPool
from worker.providers.plivo import PlivoProvider
from worker.receipts import ReceiptUpdate, apply_receipt
from worker.service import SmsService
from worker.settings import Settings
from worker.testing.actions import Error
from worker.testing.telnyx import FakeTelnyx
from worker.testing.twilio import FakeTwilio

KEY = b"test-number-hash-key"


@pytest.fixture
def sms(redis_client: redis.Redis, redis_url: str) -> Iterator[Harness]:
    harness = Harness(redis_client, Settings(redis_url=redis_url, number_hash_key=KEY.decode()))
    yield harness
    harness.pool.close()


def sandbox(sms: Harness) -> Any:
    return sms.service._config.get().connections[0]


def accepted_message_id(sms: Harness) -> str:
    sms.handle(job())
    event = sms.events()[-1]
    assert event["status"] == "accepted"
    return str(event["provider_message_id"])


def opted_out_receipt(message_id: str) -> ReceiptUpdate:
    """Plivo's `undelivered` with ErrorCode 200, as the Plivo module parses it (sandbox ids)."""
    receipt = PlivoProvider.receipt({"MessageUUID": message_id, "Status": "undelivered", "ErrorCode": "200"})
    assert receipt.error is not None and receipt.error.code == ErrorCode.RECIPIENT_OPTED_OUT
    return dataclasses.replace(receipt, provider="sandbox")


def test_the_mapping_keeps_the_opt_out_field_not_the_number(sms: Harness, redis_client: redis.Redis) -> None:
    """The `accepted` outcome's mapping names the connection's opt-out list and the recipient's
    field in it (sending number + keyed hash), and nowhere the number in clear."""
    mid = accepted_message_id(sms)
    mapping = receipts.read_mapping(redis_client, "sandbox", mid)
    assert mapping["optout_key"] == "sms:optout:sandbox"
    digest = mapping["optout_field"].split("|")[1]
    assert mapping["optout_field"] == optout.field(digest, sandbox(sms).from_number)
    assert len(digest) == 32
    raw = dump_all(redis_client, match=message_key("sandbox", mid))
    assert CALLER[2:].encode() not in raw


def test_an_opted_out_receipt_adds_the_recipient_and_the_next_send_is_refused(
    sms: Harness, redis_client: redis.Redis
) -> None:
    """Plivo ErrorCode 200 on a sent message: `undelivered` / `recipient_opted_out` is published,
    the number is on the list (masked, with the reason), and the next text to it fails
    `recipient_opted_out` with nothing sent."""
    mid = accepted_message_id(sms)
    assert optout.check(redis_client, sandbox(sms), CALLER, key=KEY) is None
    assert apply_receipt(redis_client, opted_out_receipt(mid)) == "published"
    found = optout.check(redis_client, sandbox(sms), CALLER, key=KEY)
    assert found is not None
    assert (found.number, found.reason) == ("+1415****234", "sandbox 200 receipt")
    sent = len(sms.outbox())
    sms.handle(job(idempotency_key="after-stop"))
    last = sms.events()[-1]
    assert (last["status"], last["error"]["code"]) == ("failed", "recipient_opted_out")
    assert len(sms.outbox()) == sent
    assert CALLER[2:].encode() not in dump_all(redis_client, match="sms:optout:*")


def test_other_undelivered_receipts_add_no_opt_out(sms: Harness, redis_client: redis.Redis) -> None:
    """A carrier-filtered (30007-like) undelivered receipt is published and opts nobody out."""
    mid = accepted_message_id(sms)
    error = ErrorInfo(code=ErrorCode.UNDELIVERED, provider_code="30007", message="filtered")
    update = ReceiptUpdate(provider="sandbox", message_id=mid, status="undelivered", error=error)
    assert apply_receipt(redis_client, update) == "published"
    assert not redis_client.exists("sms:optout:sandbox")


def test_an_early_opted_out_receipt_is_recorded_when_the_mapping_appears(
    sms: Harness, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An opted-out receipt parked before the outcome (no mapping yet) opts the number out when
    the worker's outcome transaction applies it."""
    fixed = "SBoptout000000000000000000000000"
    monkeypatch.setattr("worker.providers.sandbox.uuid.uuid4", lambda: type("U", (), {"hex": fixed[2:]})())
    assert apply_receipt(redis_client, opted_out_receipt(fixed)) == "parked"
    assert not redis_client.exists("sms:optout:sandbox")
    sms.handle(job())
    assert sms.statuses()[-2:] == ["accepted", "undelivered"]
    assert optout.check(redis_client, sandbox(sms), CALLER, key=KEY) is not None


# -- the fallback connection's list ----------------------------------------------------------------


@pytest.fixture
def fakes() -> Iterator[tuple[FakeTwilio, FakeTelnyx]]:
    with FakeTwilio() as twilio, FakeTelnyx() as telnyx:
        yield twilio, telnyx
        assert twilio.violations == [] and telnyx.violations == []


@pytest.fixture
def svc(redis_client: redis.Redis, fakes: tuple[FakeTwilio, FakeTelnyx]) -> Iterator[SmsService]:
    twilio, telnyx = fakes
    config = SmsConfig.model_validate(
        {
            "connections": [
                {
                    "label": "Twilio", "provider": "twilio", "from_number": "+15005550006",
                    "api_base_url": twilio.url, "messages_per_second": 1000,
                    "credentials": {"account_sid": twilio.account_sid, "auth_token": twilio.auth_token},
                },
                {
                    "label": "Telnyx", "provider": "telnyx", "from_number": "+14155550000",
                    "api_base_url": telnyx.url, "messages_per_second": 1000,
                    "credentials": {"api_key": telnyx.api_key},
                },
            ],
            "agents": {"a1": {"voice_tools": {"sms_mid_call": {
                "enabled": True, "connection": "Twilio", "fallback_connection": "Telnyx"}}}},
        }
    )  # fmt: skip
    settings = Settings(max_attempts=2, provider_timeout=1.0, number_hash_key=KEY.decode())
    pool = ProviderPool(settings, redis_client)
    yield SmsService(settings, redis_client, StaticConfigSource(config), pool)
    pool.close()


def fallback_job() -> dict[str, Any]:
    now = utcnow()
    return Job(
        job_id="j1", idempotency_key="j1", agent_id="a1",
        call=CallContext(call_id="CA1", direction="inbound", from_number=CALLER, to_number="+14155550000"),
        message="hello", created_at=now, expires_at=now + timedelta(minutes=5),
    ).model_dump(mode="json")  # fmt: skip


def terminal(redis_client: redis.Redis) -> dict[str, Any]:
    entries: Any = redis_client.xrange("sms:events:CA1")
    events = [Event.model_validate_json(fields[b"event"]) for _, fields in entries]
    [last] = [e for e in events if e.terminal]
    return last.model_dump(mode="json")


def telnyx_connection(svc: SmsService) -> Any:
    return svc._config.get().connection("Telnyx")


def test_a_fallback_to_a_connection_the_recipient_opted_out_of_sends_nothing(
    redis_client: redis.Redis, fakes: tuple[FakeTwilio, FakeTelnyx], svc: SmsService
) -> None:
    """The caller opted out of the Telnyx number (not of Twilio's): Twilio refuses our credentials,
    the switch to Telnyx finds the opt-out, and the job fails `recipient_opted_out` without a
    Telnyx request."""
    twilio, telnyx = fakes
    optout.record(redis_client, telnyx_connection(svc), CALLER, reason="inbound STOP", key=KEY)
    twilio.script(Error(20003, status=401))
    assert svc.handle(fallback_job(), attempt=1, owner="w1") is None
    outcome = terminal(redis_client)
    assert (outcome["status"], outcome["error"]["code"]) == ("failed", "recipient_opted_out")
    assert len(twilio.requests) == 1 and telnyx.requests == []


def test_an_opt_out_of_another_sending_number_does_not_stop_the_fallback(
    redis_client: redis.Redis, fakes: tuple[FakeTwilio, FakeTelnyx], svc: SmsService
) -> None:
    """An opt-out on the Telnyx connection from another of its numbers does not apply to the
    fallback's number: the text is accepted through Telnyx."""
    twilio, telnyx = fakes
    optout.record(
        redis_client, telnyx_connection(svc), CALLER, reason="inbound STOP", sender="+14155559999", key=KEY
    )
    twilio.script(Error(20003, status=401))
    assert svc.handle(fallback_job(), attempt=1, owner="w1") is None
    assert (terminal(redis_client)["status"], terminal(redis_client)["provider"]) == ("accepted", "telnyx")
    assert len(telnyx.requests) == 1


def test_a_retry_on_the_fallback_checks_the_fallbacks_list(
    redis_client: redis.Redis, fakes: tuple[FakeTwilio, FakeTelnyx], svc: SmsService
) -> None:
    """Twilio refuses our credentials, Telnyx is unavailable once; the caller texts STOP to the
    Telnyx number before the retry: the retry fails `recipient_opted_out` with no second request."""
    twilio, telnyx = fakes
    twilio.script(Error(20003, status=401))
    telnyx.script(Error(10007, status=503))
    assert svc.handle(fallback_job(), attempt=1, owner="w1") is not None
    optout.record(redis_client, telnyx_connection(svc), CALLER, reason="inbound STOP", key=KEY)
    assert svc.handle(fallback_job(), attempt=2, owner="w1") is None
    outcome = terminal(redis_client)
    assert (outcome["status"], outcome["error"]["code"]) == ("failed", "recipient_opted_out")
    assert len(twilio.requests) == 1 and len(telnyx.requests) == 1
