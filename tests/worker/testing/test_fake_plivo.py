"""FakePlivo over real HTTP: Plivo's 202 answer, its `{api_id, error}` errors and the request model."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from worker.testing import Error, FakePlivo
from worker.testing.plivo import GEO_BLOCKED_DST, INVALID_DST

SRC = "+14155550100"


@pytest.fixture
def client(fake_plivo: FakePlivo) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=fake_plivo.url, auth=(fake_plivo.auth_id, fake_plivo.auth_token), timeout=5
    ) as http:
        yield http


def _send(client: httpx.Client, fake: FakePlivo, **body: Any) -> httpx.Response:
    return client.post(fake.messages_path, json=body)


def test_send_is_queued_with_202(fake_plivo: FakePlivo, client: httpx.Client) -> None:
    """A valid send gets 202 with an api_id, "message(s) queued" and a list of message UUIDs."""
    response = _send(client, fake_plivo, src=SRC, dst="14155550101", text="hi", url="https://example.com/cb")

    body = response.json()
    assert response.status_code == 202
    assert set(body) == {"api_id", "message", "message_uuid"} and body["message"] == "message(s) queued"
    [accepted] = fake_plivo.accepted
    assert body["message_uuid"] == [accepted.id] and accepted.to == "14155550101"
    assert fake_plivo.violations == []


def test_bulk_send_lists_invalid_numbers(fake_plivo: FakePlivo, client: httpx.Client) -> None:
    """`<`-separated destinations get one UUID per valid number and `invalid_number` for the rest."""
    response = _send(
        client, fake_plivo, src=SRC, dst=f"+1 (415) 555-0101<{INVALID_DST}<14155550102", text="hi"
    )

    body = response.json()
    assert response.status_code == 202 and len(body["message_uuid"]) == 2
    assert body["invalid_number"] == [INVALID_DST]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"dst": "14155550101", "text": "hi"}, 400),  # neither src nor powerpack_uuid
        ({"src": SRC, "powerpack_uuid": "pp-1", "dst": "14155550101", "text": "hi"}, 400),  # both
        ({"src": SRC, "dst": INVALID_DST, "text": "hi"}, 400),
        ({"src": SRC, "dst": "12", "text": "hi"}, 400),
        ({"src": SRC, "dst": "14155550100", "text": "hi"}, 400),  # src == dst
        ({"src": SRC, "dst": "14155550101"}, 400),  # no text for an SMS
        ({"src": SRC, "dst": "14155550101", "text": "x" * 1601}, 400),
        ({"src": SRC, "dst": GEO_BLOCKED_DST, "text": "hi"}, 403),
    ],
)
def test_bad_sends_get_plivo_errors(
    fake_plivo: FakePlivo, client: httpx.Client, body: dict[str, str], status: int
) -> None:
    """Rejected sends get Plivo's `{api_id, error}` body with the documented status."""
    response = client.post(fake_plivo.messages_path, json=body)

    assert response.status_code == status
    assert set(response.json()) == {"api_id", "error"}
    assert fake_plivo.accepted == []


def test_wrong_credentials_get_401(fake_plivo: FakePlivo) -> None:
    """Wrong Basic credentials get 401; another auth_id in the path gets 404."""
    with httpx.Client(base_url=fake_plivo.url, auth=(fake_plivo.auth_id, "nope")) as client:
        assert _send(client, fake_plivo, src=SRC, dst="14155550101", text="hi").status_code == 401
    with httpx.Client(base_url=fake_plivo.url, auth=(fake_plivo.auth_id, fake_plivo.auth_token)) as client:
        other = client.post(
            "/v1/Account/MA9999999999999999XX/Message/", json={"src": SRC, "dst": "1", "text": "x"}
        )
        assert other.status_code == 404


def test_missing_trailing_slash_is_a_violation(fake_plivo: FakePlivo, client: httpx.Client) -> None:
    """Plivo's path ends with a slash; without it the fake answers 404 and records a violation."""
    response = client.post(
        fake_plivo.messages_path.rstrip("/"), json={"src": SRC, "dst": "14155550101", "text": "x"}
    )

    assert response.status_code == 404 and response.json()["error"] == "not found"
    assert fake_plivo.violations and "no such endpoint" in fake_plivo.violations[0]


def test_request_model_violations_are_recorded(fake_plivo: FakePlivo, client: httpx.Client) -> None:
    """Undocumented fields and wrongly typed values break the request model: recorded and answered 400."""
    response = _send(
        client, fake_plivo, src=SRC, dst="14155550101", text="hi", message_expiry="600", destination="x"
    )

    assert response.status_code == 400
    assert sorted(fake_plivo.violations) == [
        "destination: Extra inputs are not permitted",
        "message_expiry: Input should be a valid integer",
    ]


def test_form_body_is_a_violation(fake_plivo: FakePlivo, client: httpx.Client) -> None:
    """Plivo wants JSON: a form body is a violation."""
    response = client.post(fake_plivo.messages_path, data={"src": SRC, "dst": "14155550101", "text": "hi"})

    assert response.status_code == 400
    assert fake_plivo.violations == [
        "Content-Type must be application/json, not 'application/x-www-form-urlencoded'"
    ]


def test_scripted_errors_use_plivos_shape(fake_plivo: FakePlivo, client: httpx.Client) -> None:
    """A scripted 429 or 500 answers `{api_id, error}` with Plivo's wording unless a message is given."""
    fake_plivo.script(Error(status=429), Error(status=500, message="upstream broke"))

    limited = _send(client, fake_plivo, src=SRC, dst="14155550101", text="hi")
    broken = _send(client, fake_plivo, src=SRC, dst="14155550101", text="hi")

    assert (limited.status_code, limited.json()["error"]) == (429, "too many requests")
    assert (broken.status_code, broken.json()["error"]) == (500, "upstream broke")
