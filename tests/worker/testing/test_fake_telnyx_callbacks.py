"""FakeTelnyx's webhooks, retrieve endpoint and inbound messages, checked as a receiver would.

Signatures are verified with `cryptography`'s Ed25519 over `timestamp|raw body`, with the key from
`webhook_public_key`, as team-telnyx/telnyx-python's webhook verification does.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tests.worker.testing.conftest import Receiver
from worker.testing import FakeTelnyx, Receipts
from worker.testing.exchange import RecordedRequest

TO = "+14155550100"
FROM = "+14155550000"
TOLERANCE = 300  # seconds, the SDKs' default


@pytest.fixture
def raw_telnyx(fake_telnyx: FakeTelnyx) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {fake_telnyx.api_key}"}
    with httpx.Client(base_url=fake_telnyx.url, headers=headers, timeout=5) as client:
        yield client


def _url(receiver: Receiver) -> str:
    return f"{receiver.url}/v1/webhooks/telnyx/telnyx-support/status"


def _send(raw: httpx.Client, url: str | None, to: str = TO) -> str:
    body: dict[str, Any] = {"from": FROM, "to": to, "text": "Your code is 1234"}
    if url is not None:
        body["webhook_url"] = url
    answer = raw.post("/v2/messages", json=body)
    assert answer.status_code == 200, answer.text
    message_id: str = answer.json()["data"]["id"]
    return message_id


def _signed(fake: FakeTelnyx, request: RecordedRequest) -> bool:
    """Ed25519 over f"{timestamp}|{body}" verifies with the published key, and the timestamp is fresh."""
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(fake.webhook_public_key))
    timestamp = request.headers["telnyx-timestamp"]
    signature = base64.b64decode(request.headers["telnyx-signature-ed25519"])
    try:
        key.verify(signature, timestamp.encode() + b"|" + request.body)
    except InvalidSignature:
        return False
    return abs(time.time() - int(timestamp)) <= TOLERANCE


def _events(receiver: Receiver) -> list[tuple[str, str]]:
    return [
        (r.json()["data"]["event_type"], r.json()["data"]["payload"]["to"][0]["status"])
        for r in receiver.requests
    ]


def test_public_key_is_32_raw_bytes_in_base64(fake_telnyx: FakeTelnyx) -> None:
    """`webhook_public_key` is what a connection's webhook_public_key holds: 32 bytes, base64."""
    assert len(base64.b64decode(fake_telnyx.webhook_public_key, validate=True)) == 32


def test_delivered_sends_sent_then_finalized_signed_and_spec_checked(
    fake_telnyx: FakeTelnyx, receiver: Receiver, raw_telnyx: httpx.Client
) -> None:
    """message.sent (sent) then message.finalized (delivered), Ed25519-signed, matching the spec's schema."""
    message_id = _send(raw_telnyx, _url(receiver))

    callbacks = fake_telnyx.wait_for_callbacks(2)
    requests = receiver.wait_for_requests(2)

    assert [c.status for c in callbacks] == ["sent", "delivered"]
    assert _events(receiver) == [("message.sent", "sent"), ("message.finalized", "delivered")]
    assert all(_signed(fake_telnyx, r) for r in requests)
    final = requests[1].json()
    assert final["meta"] == {"attempt": 1, "delivered_to": _url(receiver)}
    assert final["data"]["record_type"] == "event" and final["data"]["payload"]["id"] == message_id
    assert final["data"]["payload"]["errors"] == [] and final["data"]["payload"]["completed_at"]
    assert requests[0].content_type == "application/json"
    assert fake_telnyx.violations == []  # the events match the deliveryUpdate webhook schema


def test_undelivered_finalizes_delivery_failed_with_errors_and_retrieve_agrees(
    fake_telnyx: FakeTelnyx, receiver: Receiver, raw_telnyx: httpx.Client
) -> None:
    """`Receipts.undelivered(40002)`: finalized `delivery_failed` with errors[0].code "40002"; GET agrees."""
    fake_telnyx.receipts_for(TO, Receipts.undelivered(40002))
    message_id = _send(raw_telnyx, _url(receiver))

    fake_telnyx.wait_for_callbacks(2)
    fetched = raw_telnyx.get(fake_telnyx.message_path(message_id))

    payload = receiver.requests[-1].json()["data"]["payload"]
    assert payload["to"][0]["status"] == "delivery_failed"
    assert [e["code"] for e in payload["errors"]] == ["40002"]
    assert fetched.status_code == 200
    data = fetched.json()["data"]
    assert (data["to"][0]["status"], data["errors"][0]["code"]) == ("delivery_failed", "40002")
    assert fake_telnyx.violations == []  # the retrieve request and answer match the spec


@pytest.mark.parametrize(
    ("receipts", "expected"),
    [
        (Receipts.unconfirmed(), [("message.sent", "sent"), ("message.finalized", "delivery_unconfirmed")]),
        (Receipts.failed(40008), [("message.finalized", "sending_failed")]),
        (Receipts.delivered().out_of_order(), [("message.finalized", "delivered"), ("message.sent", "sent")]),
    ],
)
def test_scripted_sequences(
    fake_telnyx: FakeTelnyx,
    receiver: Receiver,
    raw_telnyx: httpx.Client,
    receipts: Receipts,
    expected: list[tuple[str, str]],
) -> None:
    """unconfirmed, failed (no message.sent) and out of order (finalized first) arrive as scripted."""
    fake_telnyx.receipts_for(TO, receipts)
    _send(raw_telnyx, _url(receiver))

    fake_telnyx.wait_for_callbacks(len(expected))
    time.sleep(0.1)

    assert _events(receiver) == expected
    assert fake_telnyx.violations == []


def test_twice_sends_the_same_finalized_event_twice(
    fake_telnyx: FakeTelnyx, receiver: Receiver, raw_telnyx: httpx.Client
) -> None:
    """`twice()`: the finalized event comes two times, the same event id and bytes, both valid."""
    fake_telnyx.receipts_for(TO, Receipts.delivered().twice())
    _send(raw_telnyx, _url(receiver))

    fake_telnyx.wait_for_callbacks(3)

    finals = [r for r in receiver.requests if r.json()["data"]["event_type"] == "message.finalized"]
    assert len(finals) == 2 and finals[0].body == finals[1].body
    assert all(_signed(fake_telnyx, r) for r in finals)


def test_stale_timestamp_is_signed_but_too_old(
    fake_telnyx: FakeTelnyx, receiver: Receiver, raw_telnyx: httpx.Client
) -> None:
    """`with_stale_timestamp()`: a correct signature over a timestamp 600 s old (refused at > 300 s)."""
    fake_telnyx.receipts_for(TO, Receipts.delivered().with_stale_timestamp())
    _send(raw_telnyx, _url(receiver))

    fake_telnyx.wait_for_callbacks(2)

    for request in receiver.requests:
        age = time.time() - int(request.headers["telnyx-timestamp"])
        assert age > TOLERANCE and not _signed(fake_telnyx, request)
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(fake_telnyx.webhook_public_key))
        key.verify(
            base64.b64decode(request.headers["telnyx-signature-ed25519"]),
            request.headers["telnyx-timestamp"].encode() + b"|" + request.body,
        )


def test_forged_signature_does_not_verify(
    fake_telnyx: FakeTelnyx, receiver: Receiver, raw_telnyx: httpx.Client
) -> None:
    """`with_forged_signature()`: signed with another key pair."""
    fake_telnyx.receipts_for(TO, Receipts.delivered().with_forged_signature())
    _send(raw_telnyx, _url(receiver))

    fake_telnyx.wait_for_callbacks(2)

    assert [_signed(fake_telnyx, r) for r in receiver.requests] == [False, False]


def test_before_answer_the_sent_event_is_received_first(
    fake_telnyx: FakeTelnyx, receiver: Receiver, raw_telnyx: httpx.Client
) -> None:
    """`before_answer()`: the receiver has message.sent before the send's answer is written."""
    receiver.latency = 0.3
    fake_telnyx.receipts_for(TO, Receipts.delivered().before_answer())
    started = time.monotonic()
    _send(raw_telnyx, _url(receiver))
    answered = time.monotonic()

    first = receiver.wait_for_requests(1)[0]
    assert first.received_at < answered and answered - started >= 0.3
    assert first.json()["data"]["event_type"] == "message.sent"
    fake_telnyx.wait_for_callbacks(2)


def test_without_webhook_url_nothing_is_sent_and_retrieve_reaches_delivered(
    fake_telnyx: FakeTelnyx, receiver: Receiver, raw_telnyx: httpx.Client
) -> None:
    """No `webhook_url`: no events; GET /v2/messages/{id} still ends at delivered."""
    message_id = _send(raw_telnyx, None)

    deadline = time.monotonic() + 5
    while (data := raw_telnyx.get(fake_telnyx.message_path(message_id)).json()["data"])["to"][0][
        "status"
    ] != "delivered":
        assert time.monotonic() < deadline
        time.sleep(0.02)

    assert data["completed_at"] and fake_telnyx.callbacks == [] and receiver.requests == []
    assert fake_telnyx.violations == []


def test_retrieve_answers_404_and_401_in_telnyx_shape(
    fake_telnyx: FakeTelnyx, raw_telnyx: httpx.Client
) -> None:
    """Unknown id → 404 10005; no bearer → 401 10009."""
    path = fake_telnyx.message_path("40385f64-5717-4562-b3fc-2c963f66afa6")

    unknown = raw_telnyx.get(path)
    anonymous = httpx.get(fake_telnyx.url + path)

    assert (unknown.status_code, unknown.json()["errors"][0]["code"]) == (404, "10005")
    assert (anonymous.status_code, anonymous.json()["errors"][0]["code"]) == (401, "10009")


def test_inbound_message_received_is_signed_and_spec_checked(
    fake_telnyx: FakeTelnyx, receiver: Receiver
) -> None:
    """send_inbound(): a signed message.received event with the InboundMessagePayload of the spec."""
    url = f"{receiver.url}/v1/webhooks/telnyx/telnyx-support/inbound"
    callback = fake_telnyx.send_inbound(url, from_=TO, to=FROM, text="STOP")

    [request] = receiver.requests
    data = request.json()["data"]
    assert callback.response_status == 204 and _signed(fake_telnyx, request)
    assert (data["event_type"], data["payload"]["direction"], data["payload"]["text"]) == (
        "message.received",
        "inbound",
        "STOP",
    )
    assert data["payload"]["from"]["phone_number"] == TO and data["payload"]["to"][0]["phone_number"] == FROM
    assert fake_telnyx.violations == []


def test_the_webhook_schema_check_catches_a_wrong_event(fake_telnyx: FakeTelnyx) -> None:
    """The spec check the events go through rejects what the schema does not allow, deep in the payload."""
    assert fake_telnyx.contract is not None
    headers = {"Content-Type": "application/json", "telnyx-timestamp": "1", "telnyx-signature-ed25519": "x"}
    body = b'{"data": {"event_type": "message.bogus", "record_type": "event"}}'

    assert fake_telnyx.contract.webhook_violations("deliveryUpdate", headers, body) != []
    bad_status = b'{"data": {"event_type": "message.finalized", "payload": {"to": [{"status": "gone"}]}}}'
    assert fake_telnyx.contract.webhook_violations("deliveryUpdate", headers, bad_status) != []
    assert fake_telnyx.contract.webhook_violations("deliveryUpdate", {}, b"{}") != []  # headers missing
