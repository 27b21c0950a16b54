"""Delivery receipts end to end: a real worker, the fake Twilio (its status GET endpoint and its
status callbacks), the producer's `wait_delivery` and the audit trail.

The callback path here uses a bare receiver that parses the callback with `TwilioProvider.receipt`
and applies it (`apply_receipt`) — what the HTTP service does after checking the signature, which
its own tests cover.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
import redis

from producers import CallContext, SmsClient
from producers.contract import Event
from tests.integration.conftest import AGENT_NUMBER, WorkerFactory
from worker import audit
from worker.providers.twilio import TwilioProvider
from worker.receipts import apply_receipt
from worker.testing.twilio import FakeTwilio
from worker.testing.webhooks import Receipts

POLL_FAST = {"SMS_RECEIPT_POLL_SCHEDULE": "1,2,4,8"}


def call(caller: str, call_id: str) -> CallContext:
    return CallContext(call_id=call_id, direction="inbound", from_number=caller, to_number=AGENT_NUMBER)


async def send(sms: SmsClient, caller: str, call_id: str) -> Any:
    result = await sms.send(
        agent_id="agent_abc123",
        call=call(caller, call_id),
        template="booking_confirmation",
        variables={"date": "March 10", "time": "2:00 PM", "link": "https://acme.example/b/42"},
        timeout=15,
    )
    assert result.status == "accepted", result
    return result


def delivery_statuses(client: redis.Redis, call_id: str) -> list[str]:
    from producers.channel import parse_entries

    entries: Any = client.xrange(f"sms:events:{call_id}")
    return [
        e.status.value
        for _, e in parse_entries(entries)
        if e.status.value in ("sent", "unconfirmed", "delivered", "undelivered")
    ]


async def test_polling_alone_reports_delivered_to_wait_delivery(
    redis_url: str,
    redis_client: redis.Redis,
    twilio: FakeTwilio,
    config: Path,
    start_worker: WorkerFactory,
    worker_env: dict[str, str],
) -> None:
    """With no public URL (no callbacks), the status poll finds `delivered` at Twilio's fetch
    endpoint, the event lands on the call's stream after `accepted`, and `wait_delivery` returns it."""
    twilio.default_receipts = Receipts.never()
    start_worker(config, env={**worker_env, **POLL_FAST})
    async with SmsClient.from_url(redis_url) as sms:
        result = await send(sms, "+14155551234", "CA-poll-1")
        started = time.monotonic()
        delivery = await sms.wait_delivery(result, timeout=30)
        waited = time.monotonic() - started
    fetches = [r for r in twilio.requests if r.method == "GET"]
    callbacks = len(twilio.callbacks)
    print(
        f"\npoll: status={delivery.status} after={waited:.2f}s fetches={len(fetches)} callbacks={callbacks}"
    )
    assert (delivery.status, delivery.tool_message) == ("delivered", "SMS delivered.")
    assert fetches and len(fetches) <= 4
    assert twilio.callbacks == []
    assert delivery_statuses(redis_client, "CA-poll-1") == ["delivered"]
    request = next(r for r in twilio.requests if r.method == "POST")
    assert "StatusCallback" not in request.form(), "no public URL: no callback requested"


async def test_undelivered_30007_gives_the_carrier_filtering_sentence(
    redis_url: str,
    twilio: FakeTwilio,
    config: Path,
    start_worker: WorkerFactory,
    worker_env: dict[str, str],
) -> None:
    """Twilio reports undelivered with 30007: the agent hears that the carrier filtered the text and
    what to offer instead."""
    twilio.receipts_for("+14155551235", Receipts.undelivered(30007))
    start_worker(config, env={**worker_env, **POLL_FAST})
    async with SmsClient.from_url(redis_url) as sms:
        result = await send(sms, "+14155551235", "CA-poll-2")
        delivery = await sms.wait_delivery(result, timeout=30)
    assert delivery.status == "undelivered"
    assert delivery.error is not None and delivery.error.provider_code == "30007"
    assert delivery.tool_message == (
        "SMS wasn't delivered: the carrier filtered it as spam; offer to read it out or share it another way."
    )


class Receiver:
    """A bare status-callback receiver on 127.0.0.1: parse (Twilio's form) and apply, answer 204."""

    def __init__(self, redis_url: str) -> None:
        client = redis.Redis.from_url(redis_url)
        self.results: list[str] = []
        results = self.results

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
                update = TwilioProvider.receipt(dict(parse_qsl(body, keep_blank_values=True)))
                results.append(apply_receipt(client, update))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()
        self._client = client

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._client.close()


@pytest.fixture
def receiver(redis_url: str) -> Iterator[Receiver]:
    r = Receiver(redis_url)
    yield r
    r.close()


SCENARIOS: dict[str, tuple[str, Callable[[], Receipts]]] = {
    "out_of_order": ("+14155551241", lambda: Receipts.delivered().out_of_order()),
    "duplicate": ("+14155551242", lambda: Receipts.delivered().twice()),
    "early": ("+14155551243", lambda: Receipts.delivered().before_answer()),
}


async def test_out_of_order_duplicate_and_early_callbacks_each_end_delivered_once(
    redis_url: str,
    redis_client: redis.Redis,
    twilio: FakeTwilio,
    config: Path,
    start_worker: WorkerFactory,
    worker_env: dict[str, str],
    receiver: Receiver,
) -> None:
    """With SMS_PUBLIC_URL set, each send asks for callbacks at the connection's status route. An
    out-of-order pair (delivered before sent), a duplicated final callback (twice at once) and an
    early callback (before Twilio's REST answer, so before the mapping exists: parked) each end
    with exactly one `delivered` event, which `wait_delivery` returns; the trail shows it all."""
    for caller, receipts in SCENARIOS.values():
        twilio.receipts_for(caller, receipts())
    start_worker(config, env={**worker_env, "SMS_PUBLIC_URL": receiver.url, "SMS_RECEIPT_POLL_SCHEDULE": ""})
    counts: dict[str, Any] = {}
    async with SmsClient.from_url(redis_url) as sms:
        for name, (caller, _) in SCENARIOS.items():
            result = await send(sms, caller, f"CA-cb-{name}")
            delivery = await sms.wait_delivery(result, timeout=20)
            assert delivery.status == "delivered", (name, delivery)
            counts[name] = delivery
    twilio.wait_for_callbacks(7, timeout=20)  # 2 + 3 + 2 callbacks
    time.sleep(0.3)
    for name in SCENARIOS:
        statuses = delivery_statuses(redis_client, f"CA-cb-{name}")
        print(f"\n{name}: delivery events={statuses}")
        assert statuses.count("delivered") == 1, (name, statuses)
        assert statuses[-1] == "delivered"
    print(f"receiver results: {sorted(receiver.results)}")
    assert receiver.results.count("published") >= 3
    assert "parked" in receiver.results, "the early callback came before the mapping"

    posted = [r.form() for r in twilio.requests if r.method == "POST"]
    assert {p["StatusCallback"] for p in posted} == {
        f"{receiver.url}/v1/webhooks/twilio/twilio-support/status"
    }

    (record,) = audit.call_messages(redis_client, "CA-cb-early")
    assert [s["status"] for s in record["timeline"]][:3] == ["queued", "sending", "accepted"]
    assert record["status"] == "delivered"
    assert {r["result"] for r in record["receipts"]} >= {"parked"}
    assert all(
        Event.model_validate(dict(s, job_id="x", call_id="y", terminal=False)) for s in record["timeline"]
    )
