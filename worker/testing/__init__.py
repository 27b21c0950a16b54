"""Fake SMS providers on real HTTP (127.0.0.1), for integration tests, the demo and the benchmark.

    with FakeTwilio(account_sid, auth_token, latency=0.1) as twilio:
        client.api.base_url = twilio.url
        twilio.script(Error(20429, status=429, headers={"Retry-After": "2"}), Hang())
        ...
        assert twilio.violations == []          # every request matched Twilio's OpenAPI spec
        assert len(twilio.accepted) == 1        # exactly one SMS went out

Each fake answers like the real provider (status, body shape, codes, magic numbers) and records every
request; `script()` injects faults for the next send requests. Run one from a shell with
`python -m worker.testing twilio --port 8081 --latency-ms 100`.
"""

from worker.testing.actions import Action, Delay, Drop, Error, Hang, Reply
from worker.testing.custom import FakeCustomEndpoint
from worker.testing.exchange import AcceptedMessage, RecordedRequest, Response
from worker.testing.plivo import FakePlivo
from worker.testing.server import FakeServer
from worker.testing.telnyx import FakeTelnyx
from worker.testing.twilio import FakeTwilio

__all__ = [
    "AcceptedMessage",
    "Action",
    "Delay",
    "Drop",
    "Error",
    "FakeCustomEndpoint",
    "FakePlivo",
    "FakeServer",
    "FakeTelnyx",
    "FakeTwilio",
    "Hang",
    "RecordedRequest",
    "Reply",
    "Response",
]
