"""What the service refuses, and that a refused callback writes nothing anywhere."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlencode

import pytest
import redis
from starlette.testclient import TestClient

from tests.redis_dump import dump_all
from tests.worker.http import signing
from tests.worker.http.conftest import PUBLIC_URL
from worker.config.source import StaticConfigSource
from worker.http import create_app
from worker.http.metrics import ServiceMetrics
from worker.settings import Settings

STATUS = "/v1/webhooks/twilio/twilio-support/status"
FIELDS = {"MessageSid": "SM" + "a" * 32, "MessageStatus": "delivered", "AccountSid": signing.TWILIO_SID}


def refused_count(metrics: ServiceMetrics, provider: str, kind: str, status: int) -> float:
    value = metrics.registry.get_sample_value(
        "midcall_sms_webhooks_refused_total", {"provider": provider, "kind": kind, "status": str(status)}
    )
    return value or 0.0


@pytest.mark.parametrize(
    "case",
    ["unsigned", "forged", "internal_url", "other_connection_token", "tampered"],
)
def test_bad_signature_is_403_and_nothing_is_written(
    case: str, service: TestClient, redis_client: redis.Redis, metrics: ServiceMetrics
) -> None:
    """Unsigned, signed with another token, signed for the internal URL, or changed after
    signing: 403, and Redis holds exactly what it held before."""
    redis_client.set("sms:canary", "1")
    before = dump_all(redis_client)
    signed = signing.twilio(PUBLIC_URL + STATUS, FIELDS)
    body, headers = signed.body, dict(signed.headers)
    if case == "unsigned":
        del headers["X-Twilio-Signature"]
    elif case == "forged":
        headers = signing.twilio(PUBLIC_URL + STATUS, FIELDS, token="not-the-token").headers
    elif case == "internal_url":
        headers = signing.twilio("http://10.0.0.7:8080" + STATUS, FIELDS).headers
    elif case == "other_connection_token":
        headers = signing.twilio(PUBLIC_URL + STATUS, FIELDS, token=signing.PLIVO_TOKEN).headers
    elif case == "tampered":
        body = urlencode({**FIELDS, "MessageStatus": "undelivered"}).encode()
    answer = service.post(STATUS, content=body, headers=headers)
    assert answer.status_code == 403
    assert dump_all(redis_client) == before
    assert refused_count(metrics, "twilio", "status", 403) == 1


def test_unsigned_plivo_and_telnyx_are_403(
    service: TestClient, redis_client: redis.Redis, telnyx_key: signing.TelnyxKey
) -> None:
    """Plivo and Telnyx callbacks without their signature, or a Telnyx one replayed after
    600 s, are refused and write nothing."""
    before = dump_all(redis_client)
    plivo = signing.plivo(
        PUBLIC_URL + "/v1/webhooks/plivo/plivo/status", {"MessageUUID": "u1", "Status": "sent"}
    )
    assert service.post("/v1/webhooks/plivo/plivo/status", content=plivo.body).status_code == 403
    event = signing.telnyx_event("message.sent", {"id": "m1", "to": [{"status": "sent"}]})
    stale = telnyx_key.sign(event, timestamp=1_700_000_000)
    for headers in ({"Content-Type": "application/json"}, stale.headers):
        answer = service.post("/v1/webhooks/telnyx/telnyx/status", content=stale.body, headers=headers)
        assert answer.status_code == 403
    assert dump_all(redis_client) == before


def test_unknown_provider_or_connection_is_404(service: TestClient, redis_client: redis.Redis) -> None:
    """A provider without callbacks, a made-up provider, an unknown connection id, or another
    provider's connection: 404, nothing written."""
    before = dump_all(redis_client)
    for path in (
        "/v1/webhooks/sandbox/sandbox/status",
        "/v1/webhooks/nexmo/x/status",
        "/v1/webhooks/twilio/no-such-connection/status",
        "/v1/webhooks/plivo/twilio-support/status",
    ):
        signed = signing.twilio(PUBLIC_URL + path, FIELDS)
        assert service.post(path, content=signed.body, headers=signed.headers).status_code == 404, path
    assert service.get(STATUS).status_code == 405
    assert dump_all(redis_client) == before


def test_body_over_64_kib_is_413(service: TestClient, metrics: ServiceMetrics) -> None:
    """A body of 64 KiB + 1 is refused (declared length or not); 64 KiB exactly is read."""
    big = b"a=" + b"x" * (64 * 1024 - 1)
    assert service.post(STATUS, content=big).status_code == 413

    def chunks() -> Iterator[bytes]:
        for _ in range(65):
            yield b"x" * 1024

    assert service.post(STATUS, content=chunks()).status_code == 413  # chunked, no Content-Length
    assert service.post(STATUS, content=big[:-1]).status_code == 403  # read in full, then unsigned
    assert refused_count(metrics, "twilio", "status", 413) == 2


def test_signed_but_malformed_is_400(
    service: TestClient, redis_client: redis.Redis, telnyx_key: signing.TelnyxKey
) -> None:
    """A correctly signed body that is not the provider's format: 400, nothing written."""
    before = dump_all(redis_client)
    signed = telnyx_key.sign({"data": "not an event"})
    answer = service.post("/v1/webhooks/telnyx/telnyx/status", content=signed.body, headers=signed.headers)
    assert answer.status_code == 400
    inbound = signing.twilio(
        PUBLIC_URL + "/v1/webhooks/twilio/twilio-support/inbound", {"From": "+14155551234"}
    )
    answer = service.post(
        "/v1/webhooks/twilio/twilio-support/inbound", content=inbound.body, headers=inbound.headers
    )
    assert answer.status_code == 400
    assert dump_all(redis_client) == before


def test_redis_unreachable_is_503(settings: Settings, sms_config: object, metrics: ServiceMetrics) -> None:
    """With Redis down a signed callback gets 503 (the provider retries), and /readyz fails."""
    down = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    app = create_app(down, config=StaticConfigSource(sms_config), metrics=metrics)  # type: ignore[arg-type]
    inbound = "/v1/webhooks/twilio/twilio-support/inbound"
    fields = {"From": "+14155551234", "To": "+15005550006", "Body": "STOP", "MessageSid": "SM1"}
    signed = signing.twilio(PUBLIC_URL + inbound, fields)
    with TestClient(app) as client:
        assert client.post(inbound, content=signed.body, headers=signed.headers).status_code == 503
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "redis" in ready.json()["detail"]
        assert client.get("/healthz").status_code == 200
    assert refused_count(metrics, "twilio", "inbound", 503) == 1


def test_without_public_url_twilio_is_refused_with_the_reason(
    redis_url: str, redis_client: redis.Redis, sms_config: object, metrics: ServiceMetrics
) -> None:
    """Without SMS_PUBLIC_URL the service cannot know the URL Twilio signed: 403, saying why,
    rather than trusting the Host header."""
    app = create_app(
        Settings(redis_url=redis_url), client=redis_client, config=StaticConfigSource(sms_config),  # type: ignore[arg-type]
        metrics=metrics,
    )  # fmt: skip
    with TestClient(app) as client:
        signed = signing.twilio("http://testserver" + STATUS, FIELDS)  # what the Host header says
        answer = client.post(STATUS, content=signed.body, headers=signed.headers)
    assert answer.status_code == 403
    assert "SMS_PUBLIC_URL" in answer.json()["error"]
