"""Delivery receipts end to end with the fakes' own callbacks: a real `celery -A worker worker`
(with `SMS_PUBLIC_URL` pointing at a real `midcall-sms serve`) sends through the fake Twilio,
Plivo and Telnyx servers, which post their signed status callbacks, scripted per recipient
(`fake.receipts_for(number, Receipts…)`), to the service over HTTP. Nothing here signs a receipt
itself. One worker and one service process serve the whole module (the polling test has its own
worker without a public URL, on another Redis database). Run with `-s` to see the figures."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from producers import CallContext, SendResult, SmsClient, SyncSmsClient
from producers.contract import EVENT_FIELD, events_key
from producers.tools import sms_status
from tests.integration.conftest import ROOT, WorkerProcess
from tests.integration.service import ServiceProcess
from tests.redis_dump import dump_all
from tests.worker.http import signing
from worker.receipts import receipt_log
from worker.redis_server import RedisServer
from worker.testing.plivo import FakePlivo
from worker.testing.telnyx import FakeTelnyx
from worker.testing.twilio import FakeTwilio
from worker.testing.webhooks import Callback, Receipts, WebhookFake

AGENT_NUMBER = "+15005550006"
NUMBER_HASH_KEY = "receipts-e2e-hash-key"
PROVIDERS = ("twilio", "plivo", "telnyx")
DELIVERY = ("sent", "delivered", "undelivered", "unconfirmed")
#: one recipient per scenario and provider, so the fakes' per-recipient scripts never collide
_NEXT = iter(range(1200, 1300))


def caller() -> str:
    return f"+1415555{next(_NEXT):04d}"


# -- the module's processes ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, WebhookFake]]:
    with (
        FakeTwilio(account_sid=signing.TWILIO_SID, auth_token=signing.TWILIO_TOKEN) as twilio,
        FakePlivo(signing.PLIVO_ID, signing.PLIVO_TOKEN) as plivo,
        FakeTelnyx() as telnyx,
    ):
        found: dict[str, WebhookFake] = {"twilio": twilio, "plivo": plivo, "telnyx": telnyx}
        yield found
        for name, fake in found.items():
            assert fake.violations == [], (name, fake.violations)


def config_for(fakes: dict[str, WebhookFake]) -> dict[str, Any]:
    telnyx: Any = fakes["telnyx"]
    connections = [
        {"label": "Twilio - Support", "provider": "twilio", "from_number": AGENT_NUMBER,
         "credentials": {"account_sid": signing.TWILIO_SID, "auth_token": signing.TWILIO_TOKEN}},
        {"label": "Plivo", "provider": "plivo", "from_number": AGENT_NUMBER,
         "credentials": {"auth_id": signing.PLIVO_ID, "auth_token": signing.PLIVO_TOKEN}},
        {"label": "Telnyx", "provider": "telnyx", "from_number": AGENT_NUMBER,
         "credentials": {"api_key": telnyx.api_key}, "webhook_public_key": telnyx.webhook_public_key},
    ]  # fmt: skip
    for connection in connections:
        connection.update(api_base_url=fakes[str(connection["provider"])].url, messages_per_second=10_000)
    agents = {
        f"agent_{c['provider']}": {"voice_tools": {"sms_mid_call": {
            "enabled": True, "connection": c["label"], "max_per_call": 10,
            "max_per_recipient": {"count": 1000, "window_seconds": 60},
        }}}
        for c in connections
    }  # fmt: skip
    return {"connections": connections, "agents": agents}


@pytest.fixture(scope="module")
def config_path(fakes: dict[str, WebhookFake], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("receipts-e2e") / "config.yaml"
    path.write_text(yaml.safe_dump(config_for(fakes), sort_keys=False))
    return path


@pytest.fixture(scope="module")
def service(redis_server: RedisServer, config_path: Path) -> Iterator[ServiceProcess]:
    log = config_path.parent / "serve.log"
    process = ServiceProcess(redis_server.url, config_path, log, env={"SMS_NUMBER_HASH_KEY": NUMBER_HASH_KEY})
    yield process.wait_ready()
    process.stop()


@pytest.fixture(scope="module")
def worker(redis_server: RedisServer, config_path: Path, service: ServiceProcess) -> Iterator[WorkerProcess]:
    """The module's worker: callbacks requested at the service (`SMS_PUBLIC_URL`), no polls."""
    env = {"SMS_PUBLIC_URL": service.url, "SMS_NUMBER_HASH_KEY": NUMBER_HASH_KEY}
    process = WorkerProcess(
        redis_server.url, config_path, config_path.parent / "worker.log", concurrency=8, env=env
    )
    yield process.wait_ready()
    process.stop()


@pytest.fixture
def sms(redis_url: str, worker: WorkerProcess) -> Iterator[SyncSmsClient]:
    with SyncSmsClient.from_url(redis_url) as client:
        yield client


# -- helpers ---------------------------------------------------------------------------------------


def call(call_id: str, number: str) -> CallContext:
    return CallContext(call_id=call_id, direction="inbound", from_number=number, to_number=AGENT_NUMBER)


def events(client: redis.Redis, call_id: str) -> list[dict[str, Any]]:
    entries: Any = client.xrange(events_key(call_id))
    return [json.loads(fields[EVENT_FIELD.encode()]) for _, fields in entries]


def delivery_statuses(client: redis.Redis, call_id: str) -> list[str]:
    return [e["status"] for e in events(client, call_id) if e["status"] in DELIVERY]


def expected_callbacks(fake: WebhookFake, receipts: Receipts) -> int:
    return len(fake.receipt_steps(receipts)) + (1 if receipts.duplicate else 0)


def send_scripted(
    sms: SyncSmsClient, fakes: dict[str, WebhookFake], provider: str, call_id: str, receipts: Receipts
) -> tuple[str, SendResult, list[Callback]]:
    """Script the fake for a fresh recipient, send one text, and wait until every callback the
    script sends has been answered. Returns the recipient, the send's result, the callbacks."""
    number, fake = caller(), fakes[provider]
    fake.receipts_for(number, receipts)
    result = sms.send(agent_id=f"agent_{provider}", call=call(call_id, number), message="Your code is 4242",
                      timeout=20)  # fmt: skip
    assert result.status == "accepted" and result.provider_message_id, result
    callbacks = fake.wait_for_callbacks(
        expected_callbacks(fake, receipts), timeout=20, message_id=result.provider_message_id
    )
    return number, result, callbacks


def wait_until(predicate: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def project_state(client: redis.Redis) -> bytes:
    """Every `sms:*` key and value, byte for byte, but the sender-rate keys (`sms:rate:*`), which
    expire on their own a moment after a send (GCRA state), with or without any callback."""
    keys: Any = client.scan_iter("sms:*", count=1000)
    kept = sorted(k for k in keys if not k.startswith(b"sms:rate:"))
    return b"\n".join(dump_all(client, match=k.decode()) for k in kept)


def results(client: redis.Redis, provider: str, message_id: str) -> list[str]:
    return [str(entry["result"]) for entry in receipt_log(client, provider, message_id)]


# -- the tests -------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_fakes_signed_receipts_become_a_delivered_event_and_wait_delivery_says_so(
    provider: str, sms: SyncSmsClient, fakes: dict[str, WebhookFake], redis_client: redis.Redis
) -> None:
    """The fake's own signed callbacks (Twilio sent → delivered; Plivo queued → sent → delivered;
    Telnyx message.sent → message.finalized), each answered 200 by the service, end with one
    `delivered` event after `accepted`, and `wait_delivery` returns `delivered`, "SMS delivered."."""
    call_id = f"CA-e2e-{provider}-delivered"
    _, result, callbacks = send_scripted(sms, fakes, provider, call_id, Receipts.delivered())
    mid = str(result.provider_message_id)
    assert [c.response_status for c in callbacks] == [200] * len(callbacks)
    delivery = sms.wait_delivery(result, timeout=15)
    assert (delivery.status, delivery.tool_message) == ("delivered", "SMS delivered.")
    statuses = [e["status"] for e in events(redis_client, call_id)]
    assert statuses[statuses.index("accepted") :][-1] == "delivered"
    assert delivery_statuses(redis_client, call_id).count("delivered") == 1
    print(f"{provider}: callbacks={len(callbacks)} answered_200={len(callbacks)} "
          f"receipt_results={results(redis_client, provider, mid)} events={statuses} "
          f"wait_delivery={delivery.status}")  # fmt: skip


def test_forged_callbacks_from_the_fakes_are_403_and_change_nothing(
    sms: SyncSmsClient, fakes: dict[str, WebhookFake], redis_client: redis.Redis
) -> None:
    """Each fake signs its callbacks with the wrong secret (`with_forged_signature`), a second
    after its answer: every callback gets 403, and every `sms:*` key in Redis (but the sender-rate
    state, which expires by itself) is byte for byte what it was once the text was accepted (no
    status, no event, no parked or logged receipt)."""
    figures = []
    for provider in PROVIDERS:
        number, fake = caller(), fakes[provider]
        receipts = Receipts.delivered().with_forged_signature().delayed(1.0)
        fake.receipts_for(number, receipts)
        call_id = f"CA-e2e-{provider}-forged"
        result = sms.send(agent_id=f"agent_{provider}", call=call(call_id, number), message="hi", timeout=20)
        assert result.status == "accepted" and result.provider_message_id, result
        before = project_state(redis_client)
        callbacks = fake.wait_for_callbacks(
            expected_callbacks(fake, receipts), timeout=20, message_id=result.provider_message_id
        )
        assert [c.response_status for c in callbacks] == [403] * len(callbacks), provider
        assert project_state(redis_client) == before, provider
        assert delivery_statuses(redis_client, call_id) == []
        figures.append(f"{provider}={len(callbacks)}x403")
    print(f"forged: {' '.join(figures)} redis_unchanged=3/3")


SCENARIOS = {
    "out_of_order": Receipts.delivered().out_of_order(),
    "duplicate": Receipts.delivered().twice(),
    "early": Receipts.delivered().before_answer(),
}


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_out_of_order_duplicate_and_early_receipts_end_with_one_final_status(
    scenario: str, provider: str, sms: SyncSmsClient, fakes: dict[str, WebhookFake], redis_client: redis.Redis
) -> None:
    """The fake sends the final status before `sent` (out of order), twice at once (duplicate), or
    its first callback before its REST answer (early: parked, applied with the outcome): each
    ends with exactly one `delivered` event and `delivered` in the mapping."""
    call_id = f"CA-e2e-{provider}-{scenario}"
    _, result, callbacks = send_scripted(sms, fakes, provider, call_id, SCENARIOS[scenario])
    mid = str(result.provider_message_id)
    assert [c.response_status for c in callbacks] == [200] * len(callbacks)
    wait_until(lambda: "delivered" in delivery_statuses(redis_client, call_id))
    time.sleep(0.2)  # anything published late would show now
    finals = [s for s in delivery_statuses(redis_client, call_id) if s in ("delivered", "undelivered")]
    assert finals == ["delivered"]
    found = results(redis_client, provider, mid)
    if scenario == "duplicate":
        assert found.count("duplicate") >= 1
    if scenario == "early":
        assert found[0] == "parked"
    if scenario == "out_of_order":
        assert "stale" in found
    print(f"{provider} {scenario}: callbacks={len(callbacks)} receipt_results={found} finals={finals}")


def test_twilio_30007_gives_the_agent_a_carrier_filtering_sentence(
    sms: SyncSmsClient, fakes: dict[str, WebhookFake], redis_client: redis.Redis, redis_url: str
) -> None:
    """The fake Twilio reports `undelivered` with 30007: the event carries `undelivered` (30007),
    and both `wait_delivery` and the `sms_status` tool tell the agent the carrier filtered it as
    spam, with what it can offer."""
    call_id = "CA-e2e-30007"
    number, result, _ = send_scripted(sms, fakes, "twilio", call_id, Receipts.undelivered(30007))
    delivery = sms.wait_delivery(result, timeout=15)
    assert delivery.status == "undelivered" and delivery.error is not None
    assert (delivery.error.code, delivery.error.provider_code) == ("undelivered", "30007")

    async def ask() -> str:
        async with SmsClient.from_url(redis_url) as client:
            return await sms_status(client, call=call(call_id, number), arguments={"wait_seconds": 5})

    sentence = asyncio.run(ask())
    assert sentence == delivery.tool_message
    assert sentence.startswith("SMS wasn't delivered: the carrier filtered it as spam")
    assert "read it out" in sentence
    print(f"30007: sms_status says {sentence!r}")


def test_a_plivo_opt_out_receipt_blocks_the_next_text_to_that_number(
    sms: SyncSmsClient, fakes: dict[str, WebhookFake], redis_client: redis.Redis
) -> None:
    """The fake Plivo's signed receipt with ErrorCode 200 (the recipient opted out): the agent
    hears the opt-out, the number goes on the Plivo connection's list, and the next text to it
    fails `recipient_opted_out` with no request to Plivo."""
    call_id = "CA-e2e-plivo-200"
    number, result, _ = send_scripted(sms, fakes, "plivo", call_id, Receipts.undelivered(200))
    delivery = sms.wait_delivery(result, timeout=15)
    assert delivery.status == "undelivered" and delivery.error is not None
    assert delivery.error.code == "recipient_opted_out"
    wait_until(lambda: redis_client.hlen("sms:optout:plivo") == 1)
    assert number[2:].encode() not in dump_all(redis_client, match="sms:optout:*")
    plivo = fakes["plivo"]
    sent_before = len(plivo.accepted)
    again = sms.send(agent_id="agent_plivo", call=call("CA-e2e-plivo-200b", number), message="hi", timeout=20)
    assert again.status == "failed" and again.error is not None, again
    assert again.error.code == "recipient_opted_out"
    assert len(plivo.accepted) == sent_before
    print(f"plivo 200: first={delivery.error.code} list_entries=1 next_send={again.error.code} "
          f"provider_requests=0")  # fmt: skip


def test_the_trail_shows_the_whole_timeline(
    sms: SyncSmsClient, fakes: dict[str, WebhookFake], redis_client: redis.Redis, redis_url: str
) -> None:
    """`midcall-sms trail CALL_ID` after a Twilio text whose receipts came from the fake: the job
    line (masked recipient, provider, message id), queued → sending → accepted → sent →
    delivered, and each receipt with what became of it; never the full number."""
    call_id = "CA-e2e-trail"
    number, result, _ = send_scripted(sms, fakes, "twilio", call_id, Receipts.delivered())
    mid = str(result.provider_message_id)
    wait_until(lambda: "delivered" in delivery_statuses(redis_client, call_id))
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SMS_")}
    shown = subprocess.run(
        [sys.executable, "-m", "worker.cli", "trail", call_id], cwd=ROOT, capture_output=True, text=True,
        env={**environ, "SMS_REDIS_URL": redis_url}, timeout=60, check=True,
    ).stdout  # fmt: skip
    print(shown)
    assert f"call {call_id}: 1 text(s)" in shown
    assert f"message id {mid}" in shown and "via twilio (Twilio - Support)" in shown
    assert f"to {number[:5]}****{number[-3:]}" in shown and number not in shown
    order = [shown.index(f"  {s} ") for s in ("queued", "sending", "accepted", "sent", "delivered")]
    assert order == sorted(order)
    assert "receipt sent (callback) → published" in shown
    assert "receipt delivered (callback) → published" in shown


def test_with_callbacks_off_polling_still_reports_delivered(
    redis_server: RedisServer, config_path: Path, fakes: dict[str, WebhookFake]
) -> None:
    """A worker with no `SMS_PUBLIC_URL` (its own Redis database, so the module's worker does not
    take its texts) asks for no callbacks; its status polls (`SMS_RECEIPT_POLL_SCHEDULE=0.5,1.5`)
    read each fake's status endpoint and report `delivered` to `wait_delivery`."""
    url = redis_server.url.rsplit("/", 1)[0] + "/1"
    client = redis.Redis.from_url(url)
    client.flushdb()
    env = {"SMS_RECEIPT_POLL_SCHEDULE": "0.5,1.5", "SMS_NUMBER_HASH_KEY": NUMBER_HASH_KEY}
    process = WorkerProcess(url, config_path, config_path.parent / "worker-poll.log", concurrency=4, env=env)
    figures = []
    try:
        process.wait_ready()
        with SyncSmsClient.from_url(url) as sms:
            for provider in PROVIDERS:
                number, fake = caller(), fakes[provider]
                fake.receipts_for(number, Receipts.delivered())
                call_id = f"CA-e2e-{provider}-poll"
                started = time.monotonic()
                result = sms.send(agent_id=f"agent_{provider}", call=call(call_id, number), message="hi",
                                  timeout=20)  # fmt: skip
                assert result.status == "accepted" and result.provider_message_id, result
                delivery = sms.wait_delivery(result, timeout=20)
                assert delivery.status == "delivered", (provider, delivery)
                sources = {
                    str(e["source"]) for e in receipt_log(client, provider, result.provider_message_id)
                }
                assert sources == {"poll"}
                assert [c for c in fake.callbacks if c.message_id == result.provider_message_id] == []
                figures.append(f"{provider}=delivered in {time.monotonic() - started:.1f}s")
    finally:
        process.stop()
        client.flushdb()
        client.close()
    print(f"polling, no public URL: {' '.join(figures)} callbacks_sent=0")
