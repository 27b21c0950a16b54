"""Fixtures for the fake-provider tests: one server per provider per session, reset before each test.

Starting a fake costs a spec parse (Telnyx: ~4 s), so the servers live for the session; each test gets
one with empty records, an empty script and no latency.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar

import pytest

from worker.testing import FakeCustomEndpoint, FakePlivo, FakeServer, FakeTelnyx, FakeTwilio
from worker.testing.exchange import RecordedRequest, Response
from worker.testing.telnyx import IDEMPOTENCY_TTL

CUSTOM_HEADERS = {"X-Api-Key": "custom-secret", "X-Tenant": "acme"}

_Fake = TypeVar("_Fake", bound=FakeServer)


def _fresh(fake: _Fake) -> _Fake:
    fake.reset()
    fake.latency = 0.0
    return fake


@pytest.fixture(scope="session")
def twilio_server() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake


@pytest.fixture
def fake_twilio(twilio_server: FakeTwilio) -> FakeTwilio:
    return _fresh(twilio_server)


@pytest.fixture(scope="session")
def plivo_server() -> Iterator[FakePlivo]:
    with FakePlivo() as fake:
        yield fake


@pytest.fixture
def fake_plivo(plivo_server: FakePlivo) -> FakePlivo:
    return _fresh(plivo_server)


@pytest.fixture(scope="session")
def telnyx_server() -> Iterator[FakeTelnyx]:
    with FakeTelnyx() as fake:
        yield fake


@pytest.fixture
def fake_telnyx(telnyx_server: FakeTelnyx) -> FakeTelnyx:
    telnyx_server.rate_limit = 1_000_000
    telnyx_server.idempotency_ttl = IDEMPOTENCY_TTL
    return _fresh(telnyx_server)


@pytest.fixture(scope="session")
def custom_server() -> Iterator[FakeCustomEndpoint]:
    with FakeCustomEndpoint(CUSTOM_HEADERS) as fake:
        yield fake


@pytest.fixture
def fake_custom(custom_server: FakeCustomEndpoint) -> FakeCustomEndpoint:
    return _fresh(custom_server)


class Receiver(FakeServer):
    """A webhook receiver on 127.0.0.1: records what the fakes send and answers `status` (default 204)."""

    def __init__(self) -> None:
        super().__init__()
        self.status = 204

    def handle(self, request: RecordedRequest) -> Response:
        return Response(self.status)

    def on_reset(self) -> None:
        self.status = 204


@pytest.fixture(scope="session")
def receiver_server() -> Iterator[Receiver]:
    with Receiver() as server:
        yield server


@pytest.fixture
def receiver(receiver_server: Receiver) -> Receiver:
    return _fresh(receiver_server)
