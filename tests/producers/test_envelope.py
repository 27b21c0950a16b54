"""The envelope (producers/envelope.py) against the message Celery's own `send_task` puts on Redis.

The producer builds Celery protocol-2 messages by hand so the asyncio client can enqueue in one
non-blocking round trip. These tests have a real Celery app (the worker's own, `worker.app`) send
the same task to a real redis-server and compare what lands on the `sms` list, key by key.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import Celery

from producers import CallContext
from producers.contract import QUEUE, TASK_NAME, Job
from producers.envelope import job_summary, task_message
from producers.jobs import build_job
from worker.app import create_app
from worker.settings import Settings

# Differ by nature or by design: who sent it, the per-delivery tag kombu draws at random, and
# kwargsrepr (Celery's default is a repr of the kwargs, number and text included; ours is a
# masked summary, asserted separately), and reply_to (Celery names its app's reply queue even
# with ignore_result; the jobs' outcomes travel on the call's stream, so ours names none).
PER_SENDER = {
    ("headers", "origin"),
    ("properties", "delivery_tag"),
    ("headers", "kwargsrepr"),
    ("properties", "reply_to"),
}


@pytest.fixture
def celery_app(redis_url: str, redis_client: redis.Redis) -> Iterator[Celery]:
    app = create_app(Settings(redis_url=redis_url))
    yield app
    app.close()


def _ours_and_celerys(app: Celery, client: redis.Redis, call_id: str, message: str) -> tuple[Job, Any, Any]:
    """One job, as our envelope and as the entry `send_task` leaves on the `sms` list."""
    job = build_job(
        agent_id="agent_abc123",
        call=CallContext(
            call_id=call_id, direction="inbound", from_number="+14155550123", to_number="+14155550100"
        ),
        message=message,
    )
    kwargs = {"job": json.loads(job.model_dump_json(exclude_none=True))}
    app.send_task(TASK_NAME, kwargs=kwargs, task_id=job.job_id, queue=QUEUE, ignore_result=True)
    raw = client.rpop(QUEUE)
    assert isinstance(raw, bytes), "send_task put nothing on the sms list"
    return job, json.loads(task_message(job)), json.loads(raw)


def _flat(message: dict[str, Any]) -> dict[tuple[str, ...], Any]:
    flat: dict[tuple[str, ...], Any] = {}
    for section, value in message.items():
        if isinstance(value, dict):
            for key, inner in value.items():
                flat[(section, key)] = inner
        else:
            flat[(section,)] = value
    return flat


def test_the_hand_built_envelope_has_exactly_the_keys_and_values_of_celerys_send_task(
    celery_app: Celery, redis_client: redis.Redis
) -> None:
    """Every top-level field, header and property Celery writes is in ours with the same value
    (except the sender's origin and kombu's random delivery tag), and ours adds none of its own."""
    job, ours, theirs = _ours_and_celerys(celery_app, redis_client, "CA-env", "tell-no-one")
    ours_flat, theirs_flat = _flat(ours), _flat(theirs)
    assert set(ours_flat) - {("body",)} == set(theirs_flat) - {("body",)}, "key sets differ"
    different = {
        key: (ours_flat[key], theirs_flat[key])
        for key in theirs_flat
        if key not in PER_SENDER and key != ("body",) and ours_flat[key] != theirs_flat[key]
    }
    assert different == {}
    assert ours["headers"]["kwargsrepr"] == job_summary(job)
    assert (
        "+14155550123" not in ours["headers"]["kwargsrepr"]
        and "tell-no-one" not in ours["headers"]["kwargsrepr"]
    )


def test_the_body_decodes_to_the_same_args_kwargs_and_embed(
    celery_app: Celery, redis_client: redis.Redis
) -> None:
    """The base64 body is the same protocol-2 triple: no args, the job as the one kwarg, and
    Celery's embed (no callbacks, errbacks, chain or chord)."""
    _, ours, theirs = _ours_and_celerys(
        celery_app, redis_client, "CA-body", "Your code is 123456 — valid 10 min"
    )
    decoded = [json.loads(base64.b64decode(m["body"])) for m in (ours, theirs)]
    assert decoded[0] == decoded[1]
    assert decoded[0][0] == [] and set(decoded[0][1]) == {"job"}
