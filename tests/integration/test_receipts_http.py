"""Delivery receipts end to end: a real worker sends through the fake providers, a real
`midcall-sms serve` process receives signed callbacks over HTTP, and the call's stream shows the
delivery status. Run in a fresh clone by `make test`; the counts are printed."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from producers import CallContext, SyncSmsClient
from producers.contract import EVENT_FIELD, events_key
from tests.integration.conftest import WorkerFactory
from tests.integration.service import ServiceProcess
from tests.redis_dump import dump_all
from tests.worker.http import signing
from worker.inbound import INBOUND_LOG_KEY
from worker.testing.actions import Reply
from worker.testing.plivo import FakePlivo
from worker.testing.telnyx import FakeTelnyx
from worker.testing.twilio import FakeTwilio

CALLER = "+14155551234"
AGENT_NUMBER = "+15005550006"
DELIVERY = ("sent", "delivered", "undelivered", "unconfirmed")


@pytest.fixture
def fakes() -> Iterator[dict[str, Any]]:
    with (
        FakeTwilio(account_sid=signing.TWILIO_SID, auth_token=signing.TWILIO_TOKEN) as twilio,
        FakePlivo(signing.PLIVO_ID, signing.PLIVO_TOKEN) as plivo,
        FakeTelnyx() as telnyx,
    ):
        yield {"twilio": twilio, "plivo": plivo, "telnyx": telnyx}


@pytest.fixture
def telnyx_key() -> signing.TelnyxKey:
    return signing.TelnyxKey()


@pytest.fixture
def receipts_config(
    write_config: Callable[[dict[str, Any]], Path], fakes: dict[str, Any], telnyx_key: signing.TelnyxKey
) -> Path:
    connections = [
        {"label": "Twilio - Support", "provider": "twilio", "from_number": AGENT_NUMBER,
         "credentials": {"account_sid": signing.TWILIO_SID, "auth_token": signing.TWILIO_TOKEN},
         "api_base_url": fakes["twilio"].url},
        {"label": "Plivo", "provider": "plivo", "from_number": AGENT_NUMBER,
         "credentials": {"auth_id": signing.PLIVO_ID, "auth_token": signing.PLIVO_TOKEN},
         "api_base_url": fakes["plivo"].url},
        {"label": "Telnyx", "provider": "telnyx", "from_number": AGENT_NUMBER,
         "credentials": {"api_key": fakes["telnyx"].api_key}, "api_base_url": fakes["telnyx"].url,
         "webhook_public_key": telnyx_key.public_b64},
    ]  # fmt: skip
    agents = {
        f"agent_{c['provider']}": {
            "voice_tools": {"sms_mid_call": {"enabled": True, "connection": c["label"], "max_per_call": 10}}
        }
        for c in connections
    }
    return write_config({"connections": connections, "agents": agents})


@pytest.fixture
def service(redis_url: str, receipts_config: Path, tmp_path: Path) -> Iterator[ServiceProcess]:
    process = ServiceProcess(redis_url, receipts_config, tmp_path / "serve.log").wait_ready()
    yield process
    # uvicorn drains, then re-raises the SIGTERM it caught: the exit of a graceful stop.
    assert process.stop() in (0, -signal.SIGTERM), process.output()[-2000:]
    assert "Application shutdown complete." in process.output()


@pytest.fixture
def sms(redis_url: str) -> Iterator[SyncSmsClient]:
    with SyncSmsClient.from_url(redis_url) as client:
        yield client


def call(call_id: str) -> CallContext:
    return CallContext(call_id=call_id, direction="inbound", from_number=CALLER, to_number=AGENT_NUMBER)


def events(client: redis.Redis, call_id: str) -> list[dict[str, Any]]:
    entries: Any = client.xrange(events_key(call_id))
    return [json.loads(fields[EVENT_FIELD.encode()]) for _, fields in entries]


def wait_for_status(
    client: redis.Redis, call_id: str, status: str, timeout: float = 15.0
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = events(client, call_id)
        if any(e["status"] == status for e in found):
            return found
        time.sleep(0.05)
    raise AssertionError(f"no {status} on {call_id}: {[e['status'] for e in events(client, call_id)]}")


def delivery_statuses(found: list[dict[str, Any]]) -> list[str]:
    return [e["status"] for e in found if e["status"] in DELIVERY]


def status_callback(
    service: ServiceProcess, provider: str, message_id: str, status: str, telnyx_key: signing.TelnyxKey
) -> tuple[str, bytes, dict[str, str]]:
    """A receipt signed the way `provider` signs it, for the service's status route."""
    connection_id = {"twilio": "twilio-support", "plivo": "plivo", "telnyx": "telnyx"}[provider]
    path = f"/v1/webhooks/{provider}/{connection_id}/status"
    url = service.url + path
    if provider == "twilio":
        signed = signing.twilio(
            url,
            {
                "MessageSid": message_id,
                "MessageStatus": status,
                "AccountSid": signing.TWILIO_SID,
                "To": CALLER,
            },
        )
    elif provider == "plivo":
        signed = signing.plivo(
            url, {"MessageUUID": message_id, "Status": status, "To": CALLER[1:], "ErrorCode": ""}
        )
    else:
        event_type = "message.sent" if status == "sent" else "message.finalized"
        payload = {"id": message_id, "to": [{"phone_number": CALLER, "status": status}], "errors": []}
        signed = telnyx_key.sign(signing.telnyx_event(event_type, payload))
    return url, signed.body, signed.headers


@pytest.mark.parametrize("provider", ["twilio", "plivo", "telnyx"])
def test_a_signed_receipt_becomes_a_delivered_event(
    provider: str, start_worker: WorkerFactory, receipts_config: Path, service: ServiceProcess,
    sms: SyncSmsClient, redis_client: redis.Redis, telnyx_key: signing.TelnyxKey,
) -> None:  # fmt: skip
    """Send through the provider's fake; its signed `sent` and `delivered` receipts, posted to the
    service over HTTP, each become one event on the call's stream, after `accepted`."""
    start_worker(receipts_config)
    call_id = f"CA-{provider}-delivered"
    result = sms.send(
        agent_id=f"agent_{provider}", call=call(call_id), message="Your code is 4242", timeout=15
    )
    assert result.status == "accepted", result
    assert result.provider_message_id
    answers = []
    for status in ("sent", "delivered"):
        url, body, headers = status_callback(
            service, provider, result.provider_message_id, status, telnyx_key
        )
        answers.append(httpx.post(url, content=body, headers=headers, timeout=10))
    assert [(a.status_code, a.json()["outcome"]) for a in answers] == [(200, "published"), (200, "published")]
    found = wait_for_status(redis_client, call_id, "delivered")
    statuses = [e["status"] for e in found]
    assert statuses[statuses.index("accepted") + 1 :] == ["sent", "delivered"]
    delivered = found[-1]
    assert (
        delivered["job_id"] == result.job_id
        and delivered["provider_message_id"] == result.provider_message_id
    )
    print(f"{provider}: events={statuses}")


def test_forged_and_unsigned_callbacks_are_403_and_change_nothing(
    start_worker: WorkerFactory, receipts_config: Path, service: ServiceProcess,
    sms: SyncSmsClient, redis_client: redis.Redis, telnyx_key: signing.TelnyxKey,
) -> None:  # fmt: skip
    """A receipt signed with the wrong secret, or not signed at all, for a real accepted message:
    403 from the service, and every key of this project in Redis is byte for byte unchanged."""
    start_worker(receipts_config)
    refused = 0
    for provider in ("twilio", "plivo", "telnyx"):
        call_id = f"CA-{provider}-forged"
        result = sms.send(agent_id=f"agent_{provider}", call=call(call_id), message="hello", timeout=15)
        assert result.status == "accepted" and result.provider_message_id
        before = dump_all(redis_client, match="sms:*")
        url, body, headers = status_callback(
            service, provider, result.provider_message_id, "delivered", telnyx_key
        )
        forged_key = signing.TelnyxKey()
        forged = {
            "twilio": signing.twilio(
                url, {"MessageSid": result.provider_message_id, "MessageStatus": "delivered"}, token="wrong"
            ).headers,
            "plivo": signing.plivo(
                url, {"MessageUUID": result.provider_message_id, "Status": "delivered"}, token="wrong"
            ).headers,
            "telnyx": forged_key.sign({}).headers,
        }[provider]
        for bad_headers in (forged, {"Content-Type": headers["Content-Type"]}):
            answer = httpx.post(url, content=body, headers=bad_headers, timeout=10)
            assert answer.status_code == 403, (provider, answer.text)
            refused += 1
        assert dump_all(redis_client, match="sms:*") == before, provider
        assert delivery_statuses(events(redis_client, call_id)) == []
    print(f"refused={refused} redis_unchanged=3/3")


def test_out_of_order_duplicate_and_early_receipts_end_with_one_final_status(
    start_worker: WorkerFactory, receipts_config: Path, service: ServiceProcess, fakes: dict[str, Any],
    sms: SyncSmsClient, redis_client: redis.Redis, telnyx_key: signing.TelnyxKey,
) -> None:  # fmt: skip
    """Through HTTP: `delivered` before `sent` (the late `sent` publishes nothing), `delivered`
    twice at once (one event), and `delivered` before the worker stored the message's mapping
    (parked, then published when the `accepted` outcome is stored): one final status each."""
    start_worker(receipts_config)

    def post(message_id: str, status: str) -> str:
        url, body, headers = status_callback(service, "twilio", message_id, status, telnyx_key)
        answer = httpx.post(url, content=body, headers=headers, timeout=10)
        assert answer.status_code == 200, answer.text
        return str(answer.json()["outcome"])

    # out of order
    result = sms.send(agent_id="agent_twilio", call=call("CA-order"), message="one", timeout=15)
    assert result.provider_message_id
    assert [post(result.provider_message_id, "delivered"), post(result.provider_message_id, "sent")] == [
        "published", "stale",
    ]  # fmt: skip
    assert delivery_statuses(events(redis_client, "CA-order")) == ["delivered"]

    # duplicate, concurrently
    result = sms.send(agent_id="agent_twilio", call=call("CA-dup"), message="two", timeout=15)
    assert result.provider_message_id
    outcomes: list[str] = []
    threads = [
        threading.Thread(target=lambda: outcomes.append(post(result.provider_message_id or "", "delivered")))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["duplicate", "published"]
    assert delivery_statuses(events(redis_client, "CA-dup")) == ["delivered"]

    # early: the receipt arrives before the provider's answer has been stored by the worker
    early_sid = "SM" + "e" * 32
    assert post(early_sid, "delivered") == "parked"
    fakes["twilio"].script(
        Reply(
            201, json={"sid": early_sid, "status": "queued", "account_sid": signing.TWILIO_SID, "to": CALLER}
        )
    )
    result = sms.send(agent_id="agent_twilio", call=call("CA-early"), message="three", timeout=15)
    assert result.status == "accepted" and result.provider_message_id == early_sid
    found = wait_for_status(redis_client, "CA-early", "delivered")
    assert delivery_statuses(found) == ["delivered"]
    print("out_of_order=delivered duplicate=1 event early=parked then delivered")


def test_the_fake_twilio_sends_a_signed_inbound_stop_the_service_records(
    service: ServiceProcess, fakes: dict[str, Any], redis_client: redis.Redis
) -> None:
    """The fake Twilio posts an incoming "STOP" to the inbound route, signed with the auth token as
    Twilio signs it: 200 with an empty TwiML answer, recorded masked with Twilio's OptOutType. The
    same message signed with a wrong token: 403, nothing recorded."""
    url = service.url + "/v1/webhooks/twilio/twilio-support/inbound"
    twilio: FakeTwilio = fakes["twilio"]
    forged = twilio.send_inbound(url, from_=CALLER, to=AGENT_NUMBER, body="STOP", forged=True)
    assert forged.response_status == 403
    assert redis_client.exists(INBOUND_LOG_KEY) == 0
    assert not any(k.startswith(b"sms:optout:") for k in redis_client.scan_iter("sms:optout:*"))
    received = twilio.send_inbound(url, from_=CALLER, to=AGENT_NUMBER, body="STOP")
    assert received.response_status == 200
    entries: Any = redis_client.xrange(INBOUND_LOG_KEY)
    [(_, record)] = entries
    assert record[b"keyword_hint"] == b"STOP" and record[b"from"] == b"+1415****234"
    assert record[b"message_id"] == received.message_id.encode()
    print("inbound: forged=403 signed=200 recorded=1")


def test_a_signed_inbound_stop_blocks_the_next_send_and_start_lets_one_through(
    start_worker: WorkerFactory, receipts_config: Path, service: ServiceProcess,
    fakes: dict[str, Any], sms: SyncSmsClient,
) -> None:  # fmt: skip
    """End to end through the signed inbound route: after the caller's STOP the next send ends
    `recipient_opted_out` with no request to Twilio; after START the following one is accepted."""
    start_worker(receipts_config)
    url = service.url + "/v1/webhooks/twilio/twilio-support/inbound"
    twilio: FakeTwilio = fakes["twilio"]
    assert twilio.send_inbound(url, from_=CALLER, to=AGENT_NUMBER, body="STOP").response_status == 200
    sends_before = len(twilio.accepted)
    refused = sms.send(agent_id="agent_twilio", call=call("CA-stop-1"), message="one", timeout=15)
    assert refused.status == "failed" and refused.error is not None, refused
    assert refused.error.code == "recipient_opted_out"
    assert "START" in refused.tool_message
    assert len(twilio.accepted) == sends_before
    assert twilio.send_inbound(url, from_=CALLER, to=AGENT_NUMBER, body="START").response_status == 200
    allowed = sms.send(agent_id="agent_twilio", call=call("CA-stop-2"), message="two", timeout=15)
    assert allowed.status == "accepted", allowed
    assert len(twilio.accepted) == sends_before + 1
    print("inbound STOP over HTTP: next send recipient_opted_out, provider_requests=0; after START: accepted")
