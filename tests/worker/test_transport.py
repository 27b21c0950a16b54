"""The hardened transport's pieces: the entry screen, the delayed queue, heartbeats, the dead list."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from kombu.connection import Connection

from producers.contract import (
    DEAD_LETTER_KEY,
    DELAYED_KEY,
    QUEUE,
    WORKERS_KEY,
    CallContext,
    worker_alive_key,
)
from producers.envelope import task_message
from producers.jobs import build_job
from worker import deadletter, delayed
from worker.liveness import Heartbeat, alive_key_of_owner, instance_id, new_owner
from worker.transport import Poison, safe_text, screen, transport_for


def valid() -> dict[str, Any]:
    call = CallContext(
        call_id="CA1", direction="inbound", from_number="+14155551234", to_number="+14155550000"
    )
    message: dict[str, Any] = json.loads(task_message(build_job(agent_id="a1", call=call, message="hi")))
    return message


def test_the_producers_envelope_passes_the_screen() -> None:
    """What `producers` (and Celery) put on the queue is accepted unchanged."""
    message = valid()
    assert screen(json.dumps(message).encode()) == message


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        (b"\xff\xfe not json", "not_json"),
        (b"[1, 2]", "not_an_object"),
        (json.dumps({"body": "x"}).encode(), "bad_envelope"),
        (b"x" * (2 << 20), "too_large"),
    ],
)
def test_entries_that_are_not_messages_are_poison(entry: bytes, reason: str) -> None:
    with pytest.raises(Poison) as caught:
        screen(entry)
    assert caught.value.reason == reason


def _changed(**changes: Any) -> bytes:
    message = valid()
    for path, value in changes.items():
        target = message
        *parents, leaf = path.split("__")
        for parent in parents:
            target = target[parent]
        if value is None:
            target.pop(leaf)
        else:
            target[leaf] = value
    return json.dumps(message).encode()


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        (_changed(properties__delivery_tag=None), "bad_envelope"),
        (_changed(properties__delivery_info=None), "bad_envelope"),
        (_changed(body="%%not base64%%"), "bad_base64"),
        (_changed(body=base64.b64encode(b"not json").decode()), "bad_body"),
        (_changed(body=base64.b64encode(b'{"job": 1}').decode()), "bad_body"),
        (_changed(**{"content-type": "application/x-python-serialize"}), "bad_body"),
        (_changed(headers=None), "bad_headers"),
        (_changed(headers__task=None), "bad_headers"),
        (_changed(headers__eta="tomorrow"), "bad_headers"),
        (_changed(headers__retries="3"), "bad_headers"),
        (_changed(headers__timelimit="5"), "bad_headers"),
        (_changed(**{"headers__x-sms-orphaned": 6}), "orphaned"),
    ],
)
def test_malformed_task_messages_are_poison(entry: bytes, reason: str) -> None:
    with pytest.raises(Poison) as caught:
        screen(entry)
    assert caught.value.reason == reason
    assert "+1415" not in caught.value.detail


def test_safe_text_masks_digit_runs() -> None:
    assert safe_text("sms.+14155551234") == "sms.+14…"


def test_transport_for_hardens_redis_and_sentinel_urls() -> None:
    assert transport_for("redis://h:6379/0") == "worker.transport:Transport"
    assert transport_for("rediss://h:6379/0") == "worker.transport:Transport"
    assert transport_for("sentinel://h:26379") == "worker.transport:SentinelTransport"
    assert transport_for("memory://") is None


def test_owners_carry_their_instance_and_heartbeat_key() -> None:
    owner = new_owner()
    assert owner.startswith(instance_id() + ":")
    assert alive_key_of_owner(owner) == worker_alive_key(instance_id())


def test_a_heartbeat_keeps_its_key_alive_and_forgets_it_at_stop(
    redis_url: str, redis_client: redis.Redis
) -> None:
    beat = Heartbeat(lambda: redis.Redis.from_url(redis_url), ttl=1.0, interval=0.2, instance="h:1:test")
    beat.start()
    try:
        time.sleep(1.5)  # longer than the TTL: only refreshes keep it
        assert redis_client.exists(worker_alive_key("h:1:test"))
        assert redis_client.sismember(WORKERS_KEY, "h:1:test")
    finally:
        beat.stop(forget=True)
    assert not redis_client.exists(worker_alive_key("h:1:test"))
    assert not redis_client.sismember(WORKERS_KEY, "h:1:test")


def test_a_message_with_a_future_eta_waits_in_the_delayed_set_until_due(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """Published through the transport with an ETA 0.5 s ahead: it is in `sms:delayed`, not on the
    queue, until the mover moves it onto the consuming end when due."""
    redis_client.delete(QUEUE)
    message = valid()
    message["headers"]["eta"] = (datetime.now(UTC) + timedelta(seconds=0.5)).isoformat()
    mover = delayed.Mover(lambda: redis.Redis.from_url(redis_url), poll=0.05)
    delayed.install(mover)
    try:
        with Connection(redis_url, transport="worker.transport:Transport") as conn:  # type: ignore[no-untyped-call]
            channel = conn.default_channel
            channel._put(QUEUE, message)
        assert redis_client.zcard(DELAYED_KEY) == 1 and redis_client.llen(QUEUE) == 0
        mover.start()
        time.sleep(0.2)
        assert redis_client.llen(QUEUE) == 0, "not before it is due"
        deadline = time.monotonic() + 3
        while redis_client.llen(QUEUE) == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert redis_client.zcard(DELAYED_KEY) == 0
        assert json.loads(redis_client.rpop(QUEUE))["headers"]["id"] == message["headers"]["id"]  # type: ignore[arg-type]
    finally:
        delayed.install(None)
        mover.stop()
        redis_client.delete(QUEUE)


def test_dead_letters_are_capped_and_summaries_hold_no_bytes(redis_client: redis.Redis) -> None:
    policy = deadletter.DeadLetterPolicy(max_entries=3, ttl_seconds=60)
    for i in range(5):
        deadletter.push(
            redis_client, f"+14155551234 secret {i}".encode(), reason="not_json", detail="d", policy=policy
        )
    assert redis_client.llen(DEAD_LETTER_KEY) == 3
    assert 0 < redis_client.ttl(DEAD_LETTER_KEY) <= 60
    listed = json.dumps(deadletter.summaries(redis_client))
    assert "secret" not in listed and "4155551234" not in listed
    assert deadletter.requeue(redis_client, 1) == 1
    assert redis_client.rpop(QUEUE) == b"+14155551234 secret 2"  # the oldest kept entry, byte for byte
    assert deadletter.purge(redis_client) == 2


def test_other_queues_need_a_kombu_message_only() -> None:
    """A remote-control reply (what Flower reads) is not a task message, and is not poison there."""
    message = valid()
    message["body"] = base64.b64encode(b'{"ok": "pong"}').decode()
    message.pop("headers")
    entry = json.dumps(message).encode()
    assert screen(entry, task=False) == message
    with pytest.raises(Poison):
        screen(entry)
    with pytest.raises(Poison):
        screen(b"not json", task=False)
