"""FakeTelnyx over real HTTP: answers, error codes, rate-limit headers, Idempotency-Key, spec checks."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from worker.testing import Drop, Error, FakeTelnyx, Response
from worker.testing.telnyx import BLOCKED_TO, INVALID_FROM, INVALID_TO

FROM = "+18445550001"
TO = "+18665550001"


@pytest.fixture
def client(fake_telnyx: FakeTelnyx) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {fake_telnyx.api_key}"}
    with httpx.Client(base_url=fake_telnyx.url, headers=headers, timeout=5) as http:
        yield http


def _send(client: httpx.Client, key: str | None = None, **body: Any) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return client.post("/v2/messages", json={"from": FROM, "to": TO, "text": "hi", **body}, headers=headers)


def _spec_check(fake: FakeTelnyx, response: httpx.Response) -> list[str]:
    assert fake.contract is not None
    answer = Response(response.status_code, response.content, dict(response.headers))
    return fake.contract.response_violations(fake.requests[-1], answer)


def test_send_returns_the_message_and_rate_limit_headers(
    fake_telnyx: FakeTelnyx, client: httpx.Client
) -> None:
    """A valid send gets 200 `{"data": {...}}` shaped like the spec, with x-ratelimit-* headers."""
    response = _send(client, webhook_url="https://example.com/hooks", text="héllo 👍")

    data = response.json()["data"]
    assert response.status_code == 200
    assert (data["record_type"], data["direction"], data["to"][0]["status"]) == (
        "message",
        "outbound",
        "queued",
    )
    assert (data["encoding"], data["parts"]) == ("UCS-2", 1)
    assert [m.id for m in fake_telnyx.accepted] == [data["id"]]
    assert {"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"} <= set(response.headers)
    assert fake_telnyx.violations == []
    assert _spec_check(fake_telnyx, response) == []


def test_number_pool_send_needs_no_from(fake_telnyx: FakeTelnyx, client: httpx.Client) -> None:
    """With a messaging_profile_id and no `from`, the message goes out from the profile's pool."""
    response = client.post("/v2/messages", json={"to": TO, "text": "hi", "messaging_profile_id": "profile-1"})

    assert response.status_code == 200
    assert response.json()["data"]["messaging_profile_id"] == "profile-1"


def test_missing_or_wrong_api_key_gets_401_10009(fake_telnyx: FakeTelnyx) -> None:
    """No bearer token is a spec violation and a 401; a wrong one is a 401 only."""
    with httpx.Client(base_url=fake_telnyx.url) as anonymous:
        missing = anonymous.post("/v2/messages", json={"from": FROM, "to": TO, "text": "hi"})
        wrong = anonymous.post(
            "/v2/messages",
            json={"from": FROM, "to": TO, "text": "hi"},
            headers={"Authorization": "Bearer nope"},
        )

    for response in (missing, wrong):
        assert response.status_code == 401
        assert response.json()["errors"][0]["code"] == "10009"
    assert len(fake_telnyx.violations) == 1 and "SecurityValidationError" in fake_telnyx.violations[0]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        *[({"to": to}, 400, "40310") for to in sorted(INVALID_TO)],
        *[({"to": to}, 409, "40300") for to in sorted(BLOCKED_TO)],
        *[({"from": sender}, 400, "40305") for sender in sorted(INVALID_FROM)],
        ({"to": "4155550101"}, 400, "40310"),
        ({"to": ""}, 400, "10004"),
        ({"text": None}, 400, "10004"),
        ({"text": "x" * 1600}, 400, "10015"),
        ({"text": "日本", "encoding": "gsm7"}, 400, "10015"),
    ],
)
def test_rejected_sends_get_telnyx_error_codes(
    fake_telnyx: FakeTelnyx, client: httpx.Client, body: dict[str, Any], status: int, code: str
) -> None:
    """Magic and invalid numbers get the documented status and a string error code in `errors[0]`."""
    response = _send(client, **body)

    assert response.status_code == status
    error = response.json()["errors"][0]
    assert error["code"] == code and error["title"]
    assert fake_telnyx.accepted == []
    assert _spec_check(fake_telnyx, response) == []  # the spec's 4XX `messaging_Errors` schema


def test_spec_violation_is_recorded_and_answered_400(fake_telnyx: FakeTelnyx, client: httpx.Client) -> None:
    """A body the spec rejects (type FAX) is recorded and answered 400 10015."""
    response = _send(client, type="FAX")

    assert (response.status_code, response.json()["errors"][0]["code"]) == (400, "10015")
    assert any("'FAX' is not one of" in v for v in fake_telnyx.violations)


def test_rate_limit_gives_429_10011_with_reset(fake_telnyx: FakeTelnyx, client: httpx.Client) -> None:
    """Past `rate_limit` requests in the window the fake answers 429 10011 with x-ratelimit-reset."""
    fake_telnyx.rate_limit = 2
    statuses = [_send(client).status_code for _ in range(2)]
    limited = _send(client)

    assert statuses == [200, 200]
    assert (limited.status_code, limited.json()["errors"][0]["code"]) == (429, "10011")
    assert limited.headers["x-ratelimit-remaining"] == "0" and int(limited.headers["x-ratelimit-reset"]) >= 1


def test_scripted_errors_render_telnyx_bodies(fake_telnyx: FakeTelnyx, client: httpx.Client) -> None:
    """Scripted errors keep Telnyx's shape (string code, title, detail) and the given headers."""
    fake_telnyx.script(Error(10010, status=403), Error(10011, status=429, headers={"x-ratelimit-reset": "7"}))

    forbidden = _send(client)
    limited = _send(client)

    assert forbidden.status_code == 403
    assert forbidden.json()["errors"][0] == {
        "code": "10010",
        "title": "Authorization failed",
        "detail": "You are not authorized to access the requested resource.",
        "meta": {"url": "https://developers.telnyx.com/docs/overview/errors/10010"},
    }
    assert (limited.status_code, limited.json()["errors"][0]["code"]) == (429, "10011")
    assert limited.headers["x-ratelimit-reset"] == "7"


def test_same_idempotency_key_replays_the_first_answer(fake_telnyx: FakeTelnyx, client: httpx.Client) -> None:
    """A repeated key with the same body replays the stored answer and sends nothing more."""
    first = _send(client, key="call-42_tool-7")
    second = _send(client, key="call-42_tool-7")

    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert second.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in first.headers
    assert len(fake_telnyx.accepted) == 1
    assert fake_telnyx.idempotency_keys == {"call-42_tool-7": first.json()["data"]["id"]}


def test_same_idempotency_key_with_another_body_gets_422(
    fake_telnyx: FakeTelnyx, client: httpx.Client
) -> None:
    """Reusing a key for a different request gets 422 10027."""
    _send(client, key="k1")
    response = _send(client, key="k1", text="something else")

    assert (response.status_code, response.json()["errors"][0]["code"]) == (422, "10027")
    assert len(fake_telnyx.accepted) == 1


def test_malformed_idempotency_key_gets_400(client: httpx.Client) -> None:
    """A key outside [A-Za-z0-9_-]{1,255} gets 400 10015 pointing at the header."""
    response = _send(client, key="not a valid key!")

    error = response.json()["errors"][0]
    assert (response.status_code, error["code"], error["source"]["pointer"]) == (
        400,
        "10015",
        "/header/Idempotency-Key",
    )


def test_errors_are_not_replayed(fake_telnyx: FakeTelnyx, client: httpx.Client) -> None:
    """After an error answer the same key runs again, so a retry can succeed."""
    fake_telnyx.script(Error(10007, status=500))
    failed = _send(client, key="retry-me")
    retried = _send(client, key="retry-me")

    assert (failed.status_code, retried.status_code) == (500, 200)
    assert "idempotent-replayed" not in retried.headers


def test_lost_answer_then_retry_sends_once(fake_telnyx: FakeTelnyx, client: httpx.Client) -> None:
    """Accepted-then-dropped, a retry with the same key gets the stored answer: exactly one SMS."""
    fake_telnyx.script(Drop(processed=True))
    with pytest.raises(httpx.TransportError):
        _send(client, key="once")
    retried = _send(client, key="once")

    assert retried.headers["idempotent-replayed"] == "true"
    assert [m.id for m in fake_telnyx.accepted] == [retried.json()["data"]["id"]]


def test_idempotency_entries_expire(fake_telnyx: FakeTelnyx, client: httpx.Client) -> None:
    """Once `idempotency_ttl` (24 h by default) has passed, a key is forgotten and the request sends again."""
    fake_telnyx.idempotency_ttl = 0.1
    _send(client, key="old")
    time.sleep(0.15)
    response = _send(client, key="old")

    assert "idempotent-replayed" not in response.headers
    assert len(fake_telnyx.accepted) == 2
