"""A receipt changes a message only when it comes through the callback route of the connection
that sent it: the `{connection_id}` of the URL against the message-id mapping, a Twilio
callback's `AccountSid` and a Telnyx payload's `messaging_profile_id` against the connection's.
A misrouted receipt is answered 200 `ignored` (no retries of something that can never match)
and writes nothing."""

from __future__ import annotations

import redis
from starlette.testclient import TestClient

from producers.contract import events_key, message_key, parked_key
from tests.redis_dump import dump_all
from tests.worker.http import signing
from tests.worker.http.conftest import PUBLIC_URL
from worker import receipts
from worker.config.models import Connection, SmsConfig
from worker.config.source import StaticConfigSource
from worker.http import create_app
from worker.http.metrics import ServiceMetrics
from worker.receipts import ReceiptUpdate
from worker.settings import Settings

SALES_TOKEN = "twilio-sales-token-91d0"
SID = "SM" + "c" * 32
TELNYX_ID = "7a1f9d64-0c1b-4a55-8f7e-3b0d2c9e4f10"


def config(telnyx_key: signing.TelnyxKey) -> SmsConfig:
    return SmsConfig(
        connections=[
            Connection(
                label="Twilio - Support", provider="twilio",
                credentials={"account_sid": signing.TWILIO_SID, "auth_token": signing.TWILIO_TOKEN},
            ),
            Connection(
                label="Twilio - Sales", provider="twilio",
                credentials={"account_sid": "AC" + "f" * 32, "auth_token": SALES_TOKEN},
            ),
            Connection(
                label="Telnyx", provider="telnyx",
                credentials={"api_key": "KEY-telnyx", "messaging_profile_id": "profile-ours"},
                webhook_public_key=telnyx_key.public_b64,
            ),
        ]
    )  # fmt: skip


def service(redis_client: redis.Redis, redis_url: str, telnyx_key: signing.TelnyxKey) -> TestClient:
    settings = Settings(redis_url=redis_url, public_url=PUBLIC_URL)
    app = create_app(
        settings, client=redis_client, config=StaticConfigSource(config(telnyx_key)),
        metrics=ServiceMetrics(process=False),
    )  # fmt: skip
    return TestClient(app, base_url="http://10.0.0.7:8080")


def map_message(client: redis.Redis, provider: str, message_id: str, connection_id: str) -> None:
    """The mapping the worker's `accepted` outcome writes (the fields receipts read)."""
    client.hset(
        message_key(provider, message_id),
        mapping={
            "job_id": "job-1", "call_id": "CA-conn", "provider": provider, "message_id": message_id,
            "connection": connection_id, "connection_id": connection_id, "to": "+1415****234",
            "attempt": 1, "segments": 1, "status": "accepted", "rank": 0,
        },
    )  # fmt: skip


def post_twilio(client: TestClient, connection_id: str, token: str) -> dict[str, str]:
    path = f"/v1/webhooks/twilio/{connection_id}/status"
    signed = signing.twilio(PUBLIC_URL + path, {"MessageSid": SID, "MessageStatus": "delivered"}, token=token)
    answer = client.post(path, content=signed.body, headers=signed.headers)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_a_receipt_on_another_connections_route_changes_nothing(
    redis_client: redis.Redis, redis_url: str, telnyx_key: signing.TelnyxKey
) -> None:
    """A message sent by "Twilio - Support" gets a receipt correctly signed for "Twilio - Sales"
    on the Sales route: 200 `ignored`, and Redis is byte for byte what it was (no status, no
    event, no audit entry, nothing parked). The same receipt on the Support route is published."""
    map_message(redis_client, "twilio", SID, "twilio-support")
    with service(redis_client, redis_url, telnyx_key) as client:
        before = dump_all(redis_client)
        assert post_twilio(client, "twilio-sales", SALES_TOKEN) == {"outcome": "ignored"}
        assert dump_all(redis_client) == before
        assert receipts.read_mapping(redis_client, "twilio", SID)["status"] == "accepted"
        assert post_twilio(client, "twilio-support", signing.TWILIO_TOKEN) == {"outcome": "published"}
    assert receipts.read_mapping(redis_client, "twilio", SID)["status"] == "delivered"
    assert redis_client.xlen(events_key("CA-conn")) == 1


def test_a_misrouted_receipt_that_was_parked_is_dropped_when_the_mapping_appears(
    redis_client: redis.Redis, redis_url: str, telnyx_key: signing.TelnyxKey
) -> None:
    """An early receipt through the Sales route is parked with the route's connection; when the
    Support connection's mapping appears, applying it is a `mismatch` (no event) and the parked
    list is cleared, so nothing is retried forever."""
    with service(redis_client, redis_url, telnyx_key) as client:
        assert post_twilio(client, "twilio-sales", SALES_TOKEN) == {"outcome": "parked"}
    map_message(redis_client, "twilio", SID, "twilio-support")
    assert receipts.drain_parked(redis_client, "twilio", SID) == ["mismatch"]
    assert not redis_client.exists(parked_key("twilio", SID))
    assert not redis_client.exists(events_key("CA-conn"))
    assert receipts.read_mapping(redis_client, "twilio", SID)["status"] == "accepted"


def test_a_twilio_receipt_naming_another_account_is_ignored(
    redis_client: redis.Redis, redis_url: str, telnyx_key: signing.TelnyxKey
) -> None:
    """A Twilio callback on the Support route, signed with Support's token, whose `AccountSid` is
    another account's: ignored, nothing written; with Support's own `AccountSid` it is applied."""
    map_message(redis_client, "twilio", SID, "twilio-support")
    path = "/v1/webhooks/twilio/twilio-support/status"

    def post(account_sid: str) -> dict[str, str]:
        fields = {"MessageSid": SID, "MessageStatus": "delivered", "AccountSid": account_sid}
        signed = signing.twilio(PUBLIC_URL + path, fields)
        answer = client.post(path, content=signed.body, headers=signed.headers)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    with service(redis_client, redis_url, telnyx_key) as client:
        before = dump_all(redis_client)
        assert post("AC" + "9" * 32) == {"outcome": "ignored"}
        assert dump_all(redis_client) == before
        assert post(signing.TWILIO_SID) == {"outcome": "published"}


def test_a_telnyx_receipt_naming_another_messaging_profile_is_ignored(
    redis_client: redis.Redis, redis_url: str, telnyx_key: signing.TelnyxKey
) -> None:
    """A Telnyx webhook whose payload names another `messaging_profile_id` than the connection's
    is ignored before anything is written, even for an unmapped id (nothing parked); the same
    receipt naming the connection's profile is applied."""

    def post(profile: str) -> dict[str, str]:
        payload = {
            "id": TELNYX_ID, "messaging_profile_id": profile,
            "to": [{"phone_number": "+14155551234", "status": "delivered"}], "errors": [],
        }  # fmt: skip
        signed = telnyx_key.sign(signing.telnyx_event("message.finalized", payload))
        answer = client.post("/v1/webhooks/telnyx/telnyx/status", content=signed.body, headers=signed.headers)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    with service(redis_client, redis_url, telnyx_key) as client:
        before = dump_all(redis_client)
        assert post("profile-someone-else") == {"outcome": "ignored"}
        assert dump_all(redis_client) == before
        map_message(redis_client, "telnyx", TELNYX_ID, "telnyx")
        assert post("profile-ours") == {"outcome": "published"}


def test_apply_receipt_checks_the_connection_only_for_callbacks(redis_client: redis.Redis) -> None:
    """`apply_receipt` with another `connection_id` than the mapping's is a `mismatch`; a poll
    (no `connection_id`) and a callback through the sending connection are applied."""
    map_message(redis_client, "twilio", SID, "twilio-support")
    wrong = ReceiptUpdate(provider="twilio", message_id=SID, status="sent", connection_id="twilio-sales")
    assert receipts.apply_receipt(redis_client, wrong) == "mismatch"
    poll = ReceiptUpdate(provider="twilio", message_id=SID, status="sent", source="poll")
    assert receipts.apply_receipt(redis_client, poll) == "published"
    right = ReceiptUpdate(
        provider="twilio", message_id=SID, status="delivered", connection_id="twilio-support"
    )
    assert receipts.apply_receipt(redis_client, right) == "published"
    assert ReceiptUpdate.from_json(wrong.to_json()) == wrong
