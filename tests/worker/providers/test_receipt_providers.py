"""Providers and receipts over the wire: the callback URL on each send, and `fetch_status` (the
status poll) against the fake Twilio's fetch endpoint and the Plivo and Telnyx API shapes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from producers.contract import ErrorCode
from tests.worker.providers.test_providers import FROM, TO, sms, twilio_connection
from worker.config.models import Connection
from worker.errors import SendError
from worker.providers import ProviderPool
from worker.providers.base import OutboundSms
from worker.providers.plivo import PlivoProvider
from worker.providers.telnyx import TelnyxProvider
from worker.receipts import ReceiptUpdate, status_callback_url
from worker.settings import Settings
from worker.testing.plivo import FakePlivo
from worker.testing.telnyx import FakeTelnyx
from worker.testing.twilio import FakeTwilio
from worker.testing.webhooks import Receipts

CALLBACK = status_callback_url("https://sms.example.com/", "twilio", "twilio-support")


@pytest.fixture
def pool(redis_client: redis.Redis) -> Iterator[ProviderPool]:
    pool = ProviderPool(Settings(provider_timeout=2.0, allow_private_endpoints=True), redis_client)
    yield pool
    pool.close()


def with_callback(message: OutboundSms, url: str) -> OutboundSms:
    return OutboundSms(
        to=message.to, from_=message.from_, body=message.body, job_id=message.job_id,
        idempotency_key=message.idempotency_key, validity_seconds=message.validity_seconds,
        status_callback=url,
    )  # fmt: skip


def test_the_callback_url_names_the_provider_and_connection() -> None:
    """`{SMS_PUBLIC_URL}/v1/webhooks/{provider}/{connection_id}/status`, one slash between the parts."""
    assert CALLBACK == "https://sms.example.com/v1/webhooks/twilio/twilio-support/status"


def final_status(fetch: Any, message_id: str, timeout: float = 5.0) -> ReceiptUpdate:
    """Poll until the fake has moved the message to a final status."""
    deadline = time.monotonic() + timeout
    while True:
        update: ReceiptUpdate = fetch(message_id)
        if update.final or time.monotonic() > deadline:
            return update
        time.sleep(0.05)


class TestTwilio:
    @pytest.fixture
    def fake(self) -> Iterator[FakeTwilio]:
        with FakeTwilio() as fake:
            yield fake
            assert fake.violations == []

    def test_a_send_asks_for_status_callbacks(self, pool: ProviderPool, fake: FakeTwilio) -> None:
        """With a callback URL the create request carries `StatusCallback` (a spec-valid field)."""
        fake.default_receipts = Receipts.never()
        pool.get(twilio_connection(fake)).send(with_callback(sms(), CALLBACK))
        [request] = fake.requests
        assert request.form()["StatusCallback"] == CALLBACK

    def test_fetch_status_reads_delivered(self, pool: ProviderPool, fake: FakeTwilio) -> None:
        """The SDK's fetch of the Message resource becomes a `delivered` poll update."""
        fake.default_receipts = Receipts.never()
        provider = pool.get(twilio_connection(fake))
        receipt = provider.send(sms())
        assert receipt.message_id
        update = final_status(provider.fetch_status, receipt.message_id)
        assert (update.status, update.source, update.provider) == ("delivered", "poll", "twilio")
        assert fake.requests[0].method == "POST"
        assert "GET" in [r.method for r in fake.requests]

    def test_fetch_status_reads_the_error_code(self, pool: ProviderPool, fake: FakeTwilio) -> None:
        """A fetched `undelivered` with error_code 30007 carries the carrier-filtering reason."""
        fake.receipts_for(TO, Receipts.undelivered(30007))
        provider = pool.get(twilio_connection(fake))
        receipt = provider.send(sms())
        assert receipt.message_id
        update = final_status(provider.fetch_status, receipt.message_id)
        assert update.status == "undelivered"
        assert update.error is not None and update.error.provider_code == "30007"
        assert "spam" in update.error.message

    def test_fetch_of_an_unknown_sid_is_a_send_error(self, pool: ProviderPool, fake: FakeTwilio) -> None:
        """A 404 from the fetch raises SendError (the poller tries again at its next step)."""
        with pytest.raises(SendError):
            pool.get(twilio_connection(fake)).fetch_status("SM" + "0" * 32)


class TestPlivo:
    def connection(self, fake: FakePlivo | None = None, base: str = "https://api.plivo.test") -> Connection:
        return Connection(
            label="Plivo",
            provider="plivo",
            from_number=FROM,
            credentials={
                "auth_id": fake.auth_id if fake else "MA" + "A" * 18,
                "auth_token": fake.auth_token if fake else "token",
            },
            api_base_url=fake.url if fake else base,
        )

    def test_a_send_asks_for_status_callbacks_by_post(self, pool: ProviderPool) -> None:
        """With a callback URL the send carries `url` and `method: POST` (accepted by the fake)."""
        with FakePlivo() as fake:
            pool.get(self.connection(fake)).send(with_callback(sms(), CALLBACK))
            [request] = fake.requests
            assert (request.json()["url"], request.json()["method"]) == (CALLBACK, "POST")
            assert fake.violations == []

    def test_fetch_status_reads_message_state_and_error_code(self) -> None:
        """`GET /v1/Account/{auth_id}/Message/{uuid}/` → `message_state` + `error_code` (200: STOP)."""
        seen: list[httpx.Request] = []

        def answer(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return httpx.Response(
                200,
                json={
                    "api_id": "c4b4b6e4-1f9b-11ee-a0a0-0242ac110003",
                    "message_uuid": "db3ce55a-7f1d-11e1-8ea7-1231380bc196",
                    "message_state": "undelivered",
                    "error_code": "200",
                    "from_number": "14155550000",
                    "to_number": "14155551234",
                    "message_direction": "outbound",
                    "message_type": "sms",
                    "units": 1,
                },
            )

        with httpx.Client(transport=httpx.MockTransport(answer)) as http:
            update = PlivoProvider(self.connection(), http=http).fetch_status(
                "db3ce55a-7f1d-11e1-8ea7-1231380bc196"
            )
        assert (
            seen[0].url.path == f"/v1/Account/{'MA' + 'A' * 18}/Message/db3ce55a-7f1d-11e1-8ea7-1231380bc196/"
        )
        assert seen[0].headers["authorization"].startswith("Basic ")
        assert update.status == "undelivered"
        assert update.error is not None and update.error.code == ErrorCode.RECIPIENT_OPTED_OUT
        assert "14155551234" not in json.dumps(update.to_json())

    def test_fetch_status_of_an_unknown_uuid_is_a_send_error(self) -> None:
        """Plivo's 404 `{"error": "not found"}` raises SendError."""

        def answer(_: httpx.Request) -> httpx.Response:
            return httpx.Response(404, json={"api_id": "x", "error": "not found"})

        with httpx.Client(transport=httpx.MockTransport(answer)) as http, pytest.raises(SendError):
            PlivoProvider(self.connection(), http=http).fetch_status("nope")


class TestTelnyx:
    def connection(self, fake: FakeTelnyx | None = None) -> Connection:
        return Connection(
            label="Telnyx",
            provider="telnyx",
            from_number=FROM,
            credentials={"api_key": fake.api_key if fake else "KEYtest"},
            api_base_url=fake.url if fake else "https://api.telnyx.test",
        )

    def test_a_send_asks_for_webhooks(self, pool: ProviderPool) -> None:
        """With a callback URL the send carries `webhook_url` (spec-valid)."""
        with FakeTelnyx() as fake:
            pool.get(self.connection(fake)).send(with_callback(sms(), CALLBACK))
            [request] = fake.requests
            assert request.json()["webhook_url"] == CALLBACK
            assert fake.violations == []

    @pytest.mark.parametrize(
        ("status", "errors", "expected"),
        [("delivered", [], "delivered"), ("delivery_unconfirmed", [], "unconfirmed"),
         ("delivery_failed", [{"code": "40003", "title": "Spam"}], "undelivered")],
    )  # fmt: skip
    def test_fetch_status_reads_the_recipients_status(
        self, status: str, errors: list[Any], expected: str
    ) -> None:
        """`GET /v2/messages/{id}` → `data.to[0].status` and `data.errors` (Bearer auth)."""
        seen: list[httpx.Request] = []

        def answer(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return httpx.Response(
                200,
                json={
                    "data": {
                        "record_type": "message",
                        "id": "40385f64-5717-4562-b3fc-2c963f66afa6",
                        "direction": "outbound",
                        "to": [{"phone_number": TO, "status": status, "carrier": "T-Mobile"}],
                        "errors": errors,
                        "completed_at": "2026-12-01T10:05:00.000+00:00",
                    }
                },
            )

        with httpx.Client(transport=httpx.MockTransport(answer)) as http:
            update = TelnyxProvider(self.connection(), http=http).fetch_status(
                "40385f64-5717-4562-b3fc-2c963f66afa6"
            )
        assert seen[0].url.path == "/v2/messages/40385f64-5717-4562-b3fc-2c963f66afa6"
        assert seen[0].headers["authorization"] == "Bearer KEYtest"
        assert (update.status, update.source) == (expected, "poll")
        if expected == "undelivered":
            assert update.error is not None and update.error.provider_code == "40003"


def test_plivo_and_telnyx_fetch_status_against_their_fakes(pool: ProviderPool) -> None:
    """The status GETs of the Plivo and Telnyx fakes (their real API shapes): Plivo ErrorCode 200
    is a STOP opt-out; Telnyx `delivery_unconfirmed` is `unconfirmed` with no error."""
    with FakePlivo() as plivo:
        plivo.receipts_for(TO, Receipts.undelivered(200))
        connection = TestPlivo().connection(plivo)
        provider = pool.get(connection)
        message_id = provider.send(sms()).message_id
        assert message_id
        update = final_status(provider.fetch_status, message_id)
        assert update.status == "undelivered"
        assert update.error is not None and update.error.code == ErrorCode.RECIPIENT_OPTED_OUT
        assert plivo.violations == []
    with FakeTelnyx() as telnyx:
        telnyx.receipts_for(TO, Receipts.unconfirmed())
        provider = pool.get(TestTelnyx().connection(telnyx))
        message_id = provider.send(sms()).message_id
        assert message_id
        deadline = time.monotonic() + 5
        update = provider.fetch_status(message_id)
        while update.status != "unconfirmed" and time.monotonic() < deadline:
            time.sleep(0.05)
            update = provider.fetch_status(message_id)
        assert (update.status, update.error) == ("unconfirmed", None)
        assert telnyx.violations == []
