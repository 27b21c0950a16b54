"""The audit API: `GET /v1/calls/{call_id}/messages` behind a bearer token from SMS_API_TOKENS."""

from __future__ import annotations

import json

import redis
from starlette.testclient import TestClient

from tests.worker.test_service import Harness, job
from worker.config.models import SmsConfig
from worker.config.source import StaticConfigSource
from worker.http import create_app
from worker.http.audit import authorized
from worker.http.metrics import ServiceMetrics
from worker.settings import Settings

CALLER = "+14155551234"


def test_without_a_valid_bearer_token_the_api_answers_401(service: TestClient) -> None:
    """No header, another scheme, a wrong token, an empty token: 401 with WWW-Authenticate."""
    for headers in (
        {},
        {"Authorization": "Basic dG9rLWF1ZGl0LTE6"},
        {"Authorization": "Bearer tok-audit-3"},
        {"Authorization": "Bearer "},
        {"Authorization": "tok-audit-1"},
    ):
        answer = service.get("/v1/calls/CA42/messages", headers=headers)
        assert answer.status_code == 401, headers
        assert answer.headers["www-authenticate"].startswith("Bearer")


def test_with_no_tokens_configured_every_request_is_401(
    redis_url: str, redis_client: redis.Redis, sms_config: SmsConfig
) -> None:
    """SMS_API_TOKENS unset: the API is closed, whatever token is presented."""
    app = create_app(
        Settings(redis_url=redis_url), client=redis_client, config=StaticConfigSource(sms_config),
        metrics=ServiceMetrics(process=False),
    )  # fmt: skip
    with TestClient(app) as client:
        for token in ("", "tok-audit-1", "None"):
            answer = client.get("/v1/calls/CA42/messages", headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == 401, token
    assert authorized("Bearer x", []) is False


def test_with_a_token_the_call_s_texts_come_back_masked(
    service: TestClient, redis_client: redis.Redis, settings: Settings
) -> None:
    """Either configured token works; the answer is `call_messages` as JSON (one job, its
    timeline), with the recipient masked and no message text."""
    harness = Harness(redis_client, settings)
    try:
        harness.handle(job(caller=CALLER))
    finally:
        harness.pool.close()
    for token in ("tok-audit-1", "tok-audit-2"):
        answer = service.get("/v1/calls/CA42/messages", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200
        data = answer.json()
        assert data["call_id"] == "CA42"
        [message] = data["messages"]
        assert "accepted" in json.dumps(message)
        text = answer.text
        assert CALLER not in text and "Your code is" not in text
    empty = service.get("/v1/calls/CA-none/messages", headers={"Authorization": "Bearer tok-audit-1"})
    assert empty.json() == {"call_id": "CA-none", "messages": []}
