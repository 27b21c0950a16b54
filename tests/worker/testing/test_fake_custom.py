"""FakeCustomEndpoint over real HTTP: the `{to, message}` contract and the configured headers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from worker.testing import FakeCustomEndpoint, Reply

TO = "+14155550101"


@pytest.fixture
def client(fake_custom: FakeCustomEndpoint) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake_custom.url, headers=fake_custom.expected_headers, timeout=5) as http:
        yield http


def test_valid_post_gets_an_id(fake_custom: FakeCustomEndpoint, client: httpx.Client) -> None:
    """A JSON `{to, message}` POST with the configured headers gets 200 `{"id": …}` on any path."""
    response = client.post("/any/path/sms", json={"to": TO, "message": "Your table is ready"})

    assert response.status_code == 200
    [accepted] = fake_custom.accepted
    assert response.json() == {"id": accepted.id} and (accepted.to, accepted.text) == (
        TO,
        "Your table is ready",
    )
    assert fake_custom.violations == []


def test_missing_or_wrong_header_gets_401(fake_custom: FakeCustomEndpoint) -> None:
    """A configured header that is absent or different is a violation and a 401."""
    with httpx.Client(base_url=fake_custom.url, headers={"X-Api-Key": "wrong"}) as client:
        response = client.post("/sms", json={"to": TO, "message": "hi"})

    assert (response.status_code, response.json()) == (401, {"error": "unauthorized"})
    assert fake_custom.violations == [
        "header 'X-Api-Key' missing or different from the configured value",
        "header 'X-Tenant' missing or different from the configured value",
    ]


@pytest.mark.parametrize(
    ("body", "violation"),
    [
        ({"to": TO}, "'message' must be a non-empty string"),
        ({"to": "4155550101", "message": "hi"}, "'to' must be a +E.164 string, not '4155550101'"),
        ({"to": TO, "message": "hi", "from": "+1"}, "unexpected field 'from'"),
        (["not", "an", "object"], "body must be a JSON object"),
    ],
)
def test_wrong_shape_is_a_violation(
    fake_custom: FakeCustomEndpoint, client: httpx.Client, body: Any, violation: str
) -> None:
    """A body that is not exactly `{to, message}` is recorded and answered 400."""
    response = client.post("/sms", json=body)

    assert response.status_code == 400
    assert violation in fake_custom.violations


def test_form_body_is_a_violation(fake_custom: FakeCustomEndpoint, client: httpx.Client) -> None:
    """The contract is JSON: a form post is a violation."""
    assert client.post("/sms", data={"to": TO, "message": "hi"}).status_code == 400
    assert fake_custom.violations == [
        "Content-Type must be application/json, not 'application/x-www-form-urlencoded'"
    ]


def test_fixed_path_rejects_other_paths() -> None:
    """With `path=`, posts elsewhere are violations."""
    with FakeCustomEndpoint(path="/sms") as fake, httpx.Client(base_url=fake.url) as client:
        assert client.post("/sms", json={"to": TO, "message": "hi"}).status_code == 200
        assert client.post("/other", json={"to": TO, "message": "hi"}).status_code == 400
        assert fake.violations == ["path must be /sms, not /other"]


def test_scripted_reply_overrides_the_answer(fake_custom: FakeCustomEndpoint, client: httpx.Client) -> None:
    """A scripted Reply answers instead of the normal 200, e.g. a gateway's 503."""
    fake_custom.script(Reply(503, json={"error": "maintenance"}))
    assert client.post("/sms", json={"to": TO, "message": "hi"}).status_code == 503
    assert client.post("/sms", json={"to": TO, "message": "hi"}).status_code == 200
