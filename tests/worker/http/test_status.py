"""Status receipts through the service in-process: verified, normalized by the provider's module,
applied by `apply_receipt` (here to messages with no mapping yet, so they are parked)."""

from __future__ import annotations

import redis
from starlette.testclient import TestClient

from producers.contract import parked_key
from tests.worker.http import signing
from tests.worker.http.conftest import PUBLIC_URL
from worker.http.metrics import ServiceMetrics


def test_a_signed_receipt_of_each_provider_reaches_apply_receipt(
    service: TestClient, redis_client: redis.Redis, telnyx_key: signing.TelnyxKey, metrics: ServiceMetrics
) -> None:
    """Twilio (form), Plivo (form) and Telnyx (JSON) receipts for messages the worker has not
    mapped yet are answered 200 `parked`, and parked under the provider's message id."""
    sid = "SM" + "b" * 32
    path = "/v1/webhooks/twilio/twilio-support/status"
    twilio = signing.twilio(
        PUBLIC_URL + path,
        {
            "MessageSid": sid,
            "MessageStatus": "delivered",
            "AccountSid": signing.TWILIO_SID,
            "To": "+14155551234",
        },
    )
    answer = service.post(path, content=twilio.body, headers=twilio.headers)
    assert (answer.status_code, answer.json()) == (200, {"outcome": "parked"})

    uuid = "6b1cd4f2-7fe1-11ef-9f5b-0242ac110003"
    path = "/v1/webhooks/plivo/plivo/status"
    plivo = signing.plivo(PUBLIC_URL + path, {"MessageUUID": uuid, "Status": "delivered", "ErrorCode": "000"})
    answer = service.post(path, content=plivo.body, headers=plivo.headers)
    assert (answer.status_code, answer.json()) == (200, {"outcome": "parked"})

    telnyx_id = "40317ea4-2b71-4c54-9d2d-0a2e1b9f6a11"
    event = signing.telnyx_event(
        "message.finalized",
        {"id": telnyx_id, "to": [{"phone_number": "+14155551234", "status": "delivered"}], "errors": []},
    )
    signed = telnyx_key.sign(event)
    answer = service.post("/v1/webhooks/telnyx/telnyx/status", content=signed.body, headers=signed.headers)
    assert (answer.status_code, answer.json()) == (200, {"outcome": "parked"})

    for provider, message_id in (("twilio", sid), ("plivo", uuid), ("telnyx", telnyx_id)):
        assert redis_client.llen(parked_key(provider, message_id)) == 1, provider
        handled = metrics.registry.get_sample_value(
            "midcall_sms_webhooks_total", {"provider": provider, "kind": "status", "outcome": "parked"}
        )
        assert handled == 1
        assert (
            metrics.registry.get_sample_value(
                "midcall_sms_webhook_seconds_count", {"provider": provider, "kind": "status"}
            )
            == 1
        )


def test_metrics_and_probes(service: TestClient) -> None:
    """/healthz and /readyz answer 200 with Redis up; /metrics is Prometheus text with the
    service's families."""
    assert service.get("/healthz").json() == {"status": "ok"}
    ready = service.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ok"
    text = service.get("/metrics").text
    for family in (
        "midcall_sms_webhooks_total",
        "midcall_sms_webhooks_refused_total",
        "midcall_sms_webhook_seconds",
    ):
        assert f"# TYPE {family.removesuffix('_total')}" in text, family


def test_a_signed_telnyx_event_that_is_not_a_receipt_is_ignored(
    service: TestClient, redis_client: redis.Redis, telnyx_key: signing.TelnyxKey
) -> None:
    """A profile-wide Telnyx webhook also sends `message.received` to the status URL: 200
    `ignored` (so Telnyx does not retry it), nothing written."""
    signed = telnyx_key.sign(signing.telnyx_event("message.received", {"id": "m1", "text": "hi"}))
    answer = service.post("/v1/webhooks/telnyx/telnyx/status", content=signed.body, headers=signed.headers)
    assert (answer.status_code, answer.json()) == (200, {"outcome": "ignored"})
    assert list(redis_client.scan_iter("sms:*")) == []
