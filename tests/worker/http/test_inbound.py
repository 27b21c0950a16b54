"""Inbound texts: verified, parsed per provider into an `InboundMessage`, recorded masked."""

from __future__ import annotations

from typing import Any

import redis
from starlette.testclient import TestClient

from tests.redis_dump import dump_all
from tests.worker.http import signing
from tests.worker.http.conftest import PUBLIC_URL
from worker.config.models import Connection
from worker.inbound import INBOUND_LOG_KEY
from worker.providers.plivo import PlivoProvider
from worker.providers.telnyx import TelnyxProvider
from worker.providers.twilio import TwilioProvider

CUSTOMER = "+14155551234"
OURS = "+14155550000"


def test_inbound_from_each_provider_is_recorded_without_number_or_text(
    service: TestClient, redis_client: redis.Redis, telnyx_key: signing.TelnyxKey
) -> None:
    """A signed inbound text from Twilio, Plivo and Telnyx is answered 200 and recorded with
    masked numbers and the text as length + hash; neither number nor text is stored in clear."""
    twilio_path = "/v1/webhooks/twilio/twilio-support/inbound"
    twilio = signing.twilio(
        PUBLIC_URL + twilio_path,
        {"From": CUSTOMER, "To": OURS, "Body": "STOP please", "MessageSid": "SM1", "OptOutType": "STOP"},
    )
    answer = service.post(twilio_path, content=twilio.body, headers=twilio.headers)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/xml")
    assert "<Response></Response>" in answer.text  # no auto-reply

    plivo_path = "/v1/webhooks/plivo/plivo/inbound"
    plivo = signing.plivo(
        PUBLIC_URL + plivo_path,
        {"From": CUSTOMER[1:], "To": OURS[1:], "Text": "STOP please", "MessageUUID": "u-1", "Type": "sms"},
    )
    assert service.post(plivo_path, content=plivo.body, headers=plivo.headers).status_code == 200

    event = signing.telnyx_event(
        "message.received",
        {
            "id": "t-1",
            "from": {"phone_number": CUSTOMER},
            "to": [{"phone_number": OURS}],
            "text": "STOP please",
        },
    )
    telnyx = telnyx_key.sign(event)
    answer = service.post("/v1/webhooks/telnyx/telnyx/inbound", content=telnyx.body, headers=telnyx.headers)
    assert answer.status_code == 200 and answer.json() == {"outcome": "received"}

    entries: Any = redis_client.xrange(INBOUND_LOG_KEY)
    records = [fields for _, fields in entries]
    assert [r[b"provider"] for r in records] == [b"twilio", b"plivo", b"telnyx"]
    assert {r[b"from"] for r in records} == {b"+1415****234"}
    assert records[0][b"keyword_hint"] == b"STOP" and records[1][b"keyword_hint"] == b""
    assert {r[b"text_length"] for r in records} == {b"11"}
    everything = dump_all(redis_client)
    assert CUSTOMER[1:].encode() not in everything and b"STOP please" not in everything


def test_telnyx_events_other_than_received_are_ignored(
    service: TestClient, redis_client: redis.Redis, telnyx_key: signing.TelnyxKey
) -> None:
    """A signed Telnyx event that is not a received text (e.g. a receipt sent to the inbound URL)
    is answered 200 and records nothing."""
    telnyx = telnyx_key.sign(signing.telnyx_event("message.sent", {"id": "m1", "to": []}))
    answer = service.post("/v1/webhooks/telnyx/telnyx/inbound", content=telnyx.body, headers=telnyx.headers)
    assert answer.status_code == 200 and answer.json() == {"outcome": "ignored"}
    assert redis_client.exists(INBOUND_LOG_KEY) == 0


def test_inbound_parsing_per_provider() -> None:
    """Each provider's fields become the same `InboundMessage` (Plivo's numbers get their `+`)."""
    twilio = Connection(label="T", provider="twilio", credentials={"account_sid": "AC1", "auth_token": "x"})
    plivo = Connection(label="P", provider="plivo", credentials={"auth_id": "MA1", "auth_token": "x"})
    telnyx = Connection(label="X", provider="telnyx", credentials={"api_key": "k"})
    telnyx_event = {
        "data": {
            "event_type": "message.received",
            "payload": {
                "id": "i",
                "from": {"phone_number": CUSTOMER},
                "to": [{"phone_number": OURS}],
                "text": "hi",
            },
        }
    }
    messages = [
        TwilioProvider.inbound_message(
            twilio, {"From": CUSTOMER, "To": OURS, "Body": "hi", "MessageSid": "S"}
        ),
        PlivoProvider.inbound_message(plivo, {"From": CUSTOMER[1:], "To": OURS[1:], "Text": "hi"}),
        TelnyxProvider.inbound_message(telnyx, telnyx_event),
    ]
    for message in messages:
        assert message is not None
        assert (message.from_number, message.to_number, message.text) == (CUSTOMER, OURS, "hi")
        assert message.keyword_hint is None
    assert [m.connection_id for m in messages if m] == ["t", "p", "x"]
