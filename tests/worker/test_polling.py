"""Status polling (`worker.polling`) and the audit trail (`worker.audit`, `midcall-sms trail`), with
the service, the sandbox's receipts and the real redis-server."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any, cast

import pytest
import redis

from producers.contract import QUEUE, message_key, utcnow
from tests.worker.test_service import Harness, job, sandbox_config
from worker import audit, cli
from worker.config.source import StaticConfigSource
from worker.polling import POLL_TASK, ReceiptPoller
from worker.providers.sandbox import DELIVERED, UNDELIVERED
from worker.receipts import ReceiptUpdate, apply_receipt
from worker.settings import Settings


class Polled(Harness):
    """The service plus a poller on the same Redis and config."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        super().__init__(client, settings)
        self.poller = ReceiptPoller(settings, client, StaticConfigSource(sandbox_config()), self.pool)

    def send(self, caller: str = "+14155551234", **overrides: Any) -> dict[str, Any]:
        self.handle(job(caller=caller, **overrides))
        accepted = self.events()[-1]
        assert accepted["status"] == "accepted"
        return accepted

    def queued_polls(self) -> list[dict[str, Any]]:
        """The `sms.poll_receipt` messages on the queue: their headers and kwargs."""
        polls = []
        for raw in cast(list[bytes], self.redis.lrange(QUEUE, 0, -1)):
            message = json.loads(raw)
            if message["headers"]["task"] == POLL_TASK:
                body = json.loads(base64.b64decode(message["body"]))
                polls.append({"eta": message["headers"]["eta"], **body[1]})
        return polls


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(redis_url=redis_url)


@pytest.fixture
def sms(redis_client: redis.Redis, settings: Settings) -> Iterator[Polled]:
    harness = Polled(redis_client, settings)
    yield harness
    harness.pool.close()


def test_the_outcome_transaction_queues_the_first_poll(sms: Polled) -> None:
    """An accepted send puts one `sms.poll_receipt` on the queue, due at the first step (5 s)."""
    accepted = sms.send()
    (poll,) = sms.queued_polls()
    assert poll["provider"] == "sandbox"
    assert poll["message_id"] == accepted["provider_message_id"]
    assert poll["step"] == 0
    due = datetime.fromisoformat(poll["eta"]) - datetime.fromisoformat(accepted["at"])
    assert timedelta(seconds=4.9) < due < timedelta(seconds=5.1)


def test_no_poll_is_queued_when_polling_is_off(redis_client: redis.Redis, redis_url: str) -> None:
    """`SMS_RECEIPT_POLL_SCHEDULE=""` turns polling off: nothing but the send is queued."""
    harness = Polled(redis_client, Settings(redis_url=redis_url, receipt_poll_schedule=""))
    harness.send()
    assert harness.queued_polls() == []
    harness.pool.close()


def test_a_poll_publishes_delivered_and_stops(sms: Polled) -> None:
    """Polling the sandbox's delivered number publishes `delivered` and schedules nothing more."""
    mid = sms.send(DELIVERED)["provider_message_id"]
    assert sms.poller.poll("sandbox", mid, 0) is None
    assert sms.statuses()[-2:] == ["accepted", "delivered"]


def test_a_poll_of_undelivered_speaks_carrier_filtering(sms: Polled) -> None:
    """The sandbox's undelivered number (as Twilio 30007) ends in the carrier-filtering sentence."""
    mid = sms.send(UNDELIVERED)["provider_message_id"]
    sms.poller.poll("sandbox", mid, 0)
    event = sms.events()[-1]
    assert (event["status"], event["error"]["provider_code"]) == ("undelivered", "30007")
    assert event["tool_message"].startswith("SMS wasn't delivered: the carrier filtered it as spam")


def test_a_poll_without_a_final_answer_schedules_the_next_step(sms: Polled) -> None:
    """`sent` is published and the next step is due 15 s after acceptance; the last step stops."""
    mid = sms.send()["provider_message_id"]
    delay = sms.poller.poll("sandbox", mid, 0)
    assert delay is not None and 13 < delay <= 15
    assert sms.statuses()[-1] == "sent"
    assert sms.poller.poll("sandbox", mid, 1) is not None
    assert sms.poller.poll("sandbox", mid, 2) is None
    assert sms.statuses().count("sent") == 1, "the second `sent` is a duplicate"


def test_a_poll_after_a_final_callback_asks_nothing(sms: Polled, monkeypatch: pytest.MonkeyPatch) -> None:
    """When a callback already brought the final status, the poll does not call the provider."""
    mid = sms.send()["provider_message_id"]
    apply_receipt(sms.redis, ReceiptUpdate(provider="sandbox", message_id=mid, status="delivered"))

    def fail(*_: Any) -> None:
        raise AssertionError("the provider was asked")

    monkeypatch.setattr("worker.providers.sandbox.SandboxProvider.fetch_status", fail)
    assert sms.poller.poll("sandbox", mid, 0) is None


def test_polling_stops_at_the_jobs_deadline(sms: Polled) -> None:
    """A message whose job expired is not polled any more."""
    mid = sms.send(expires_in=1)["provider_message_id"]
    sms.redis.hset(message_key("sandbox", mid), "expires_at", (utcnow() - timedelta(seconds=1)).isoformat())
    assert sms.poller.poll("sandbox", mid, 0) is None
    assert sms.statuses()[-1] == "accepted"


# -- the audit trail -------------------------------------------------------------------------------


def test_the_trail_shows_every_status_and_every_receipt_masked(sms: Polled) -> None:
    """Per job: template, masked recipient, segments, attempts, provider and message id, the whole
    timeline (receipts included) and every raw receipt with its result; no full number, no body."""
    mid = sms.send()["provider_message_id"]
    sms.poller.poll("sandbox", mid, 0)
    apply_receipt(sms.redis, ReceiptUpdate(provider="sandbox", message_id=mid, status="delivered"))
    apply_receipt(sms.redis, ReceiptUpdate(provider="sandbox", message_id=mid, status="delivered"))
    (record,) = audit.call_messages(sms.redis, "CA42")
    assert record["template"] == "code"
    assert record["to"] == "+1415****234"
    assert (record["segments"], record["attempts"]) == (1, 1)
    assert (record["provider"], record["provider_message_id"]) == ("sandbox", mid)
    assert record["status"] == "delivered"
    assert [s["status"] for s in record["timeline"]] == ["sending", "accepted", "sent", "delivered"]
    assert [(r["status"], r["source"], r["result"]) for r in record["receipts"]] == [
        ("sent", "poll", "published"),
        ("delivered", "callback", "published"),
        ("delivered", "callback", "duplicate"),
    ]
    text = json.dumps(record)
    assert "+14155551234" not in text and "Your code is" not in text
    assert "body" not in record


def test_the_trail_has_bodies_only_when_recorded_and_asked(redis_client: redis.Redis, redis_url: str) -> None:
    """With SMS_AUDIT_BODIES=true the text and full number are recorded, and shown with bodies=True."""
    harness = Polled(redis_client, Settings(redis_url=redis_url, audit_bodies=True))
    harness.send()
    (hidden,) = audit.call_messages(redis_client, "CA42", bodies=False)
    (shown,) = audit.call_messages(redis_client, "CA42", bodies=True)
    assert "body" not in hidden and "to_number" not in hidden
    assert (shown["body"], shown["to_number"]) == ("Your code is 1234", "+14155551234")
    harness.pool.close()


def test_trail_command_prints_the_timeline(
    sms: Polled, redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`midcall-sms trail CALL_ID` prints each job with its statuses and receipts; `--json` the records."""
    mid = sms.send(UNDELIVERED)["provider_message_id"]
    sms.poller.poll("sandbox", mid, 0)
    monkeypatch.setenv("SMS_REDIS_URL", redis_url)
    assert cli.main(["trail", "CA42"]) == 0
    out = capsys.readouterr().out
    assert "template code" in out and "+1500****013" in out
    assert "accepted" in out and "undelivered" in out and "30007" in out
    assert "receipt undelivered (poll)" in out
    assert "+15005550013" not in out
    assert cli.main(["trail", "CA42", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["status"] == "undelivered"
    assert cli.main(["trail", "CA-none"]) == 0
    assert "no texts" in capsys.readouterr().out


@pytest.mark.parametrize("schedule", ["5,3", "0,5", "soon", "5,5"])
def test_a_bad_poll_schedule_is_refused(schedule: str) -> None:
    """SMS_RECEIPT_POLL_SCHEDULE must be increasing positive seconds."""
    with pytest.raises(ValueError, match="seconds"):
        Settings(receipt_poll_schedule=schedule)


def test_the_poll_schedule_reads_as_seconds() -> None:
    """The default is 5, 15 and 45 s; an empty schedule is no polling."""
    assert Settings().poll_schedule() == [5.0, 15.0, 45.0]
    assert Settings(receipt_poll_schedule="").poll_schedule() == []
