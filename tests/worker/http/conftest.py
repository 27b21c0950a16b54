"""The service in-process (Starlette's TestClient) on the session's real Redis, with one
connection per provider."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from starlette.testclient import TestClient

from tests.worker.http import signing
from worker.config.models import Connection, SmsConfig
from worker.config.source import StaticConfigSource
from worker.http import create_app
from worker.http.metrics import ServiceMetrics
from worker.settings import Settings

PUBLIC_URL = "https://sms.example.com"


@pytest.fixture
def telnyx_key() -> signing.TelnyxKey:
    return signing.TelnyxKey()


@pytest.fixture
def sms_config(telnyx_key: signing.TelnyxKey) -> SmsConfig:
    return SmsConfig(
        connections=[
            Connection(
                label="Twilio - Support", provider="twilio",
                credentials={"account_sid": signing.TWILIO_SID, "auth_token": signing.TWILIO_TOKEN},
            ),
            Connection(
                label="Plivo", provider="plivo",
                credentials={"auth_id": signing.PLIVO_ID, "auth_token": signing.PLIVO_TOKEN},
            ),
            Connection(
                label="Telnyx", provider="telnyx", credentials={"api_key": "KEY-telnyx"},
                webhook_public_key=telnyx_key.public_b64,
            ),
            Connection(label="Sandbox", provider="sandbox"),
        ]
    )  # fmt: skip


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(redis_url=redis_url, public_url=PUBLIC_URL, api_tokens="tok-audit-1,tok-audit-2")


@pytest.fixture
def metrics() -> ServiceMetrics:
    return ServiceMetrics(process=False)


@pytest.fixture
def service(
    settings: Settings, redis_client: redis.Redis, sms_config: SmsConfig, metrics: ServiceMetrics
) -> Iterator[TestClient]:
    app = create_app(settings, client=redis_client, config=StaticConfigSource(sms_config), metrics=metrics)
    with TestClient(app, base_url="http://10.0.0.7:8080") as client:  # the internal address
        yield client
