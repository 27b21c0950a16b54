"""Poison entries on the queue: thousands of malformed entries of every kind never stop a worker."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from producers import CallContext, SmsClient
from producers.contract import DEAD_LETTER_KEY, QUEUE, WORKERS_KEY, events_key, worker_reserved_key
from producers.envelope import task_message
from producers.jobs import build_job
from tests.integration.conftest import WorkerFactory
from worker import cli
from worker.metrics import UNACKED_KEY
from worker.redis_server import free_port

CONFIG = """
connections:
  - {label: Sandbox, provider: sandbox, default: true, from_number: "+14155550000"}
agents:
  a1:
    voice_tools:
      sms_mid_call: {enabled: true, provider: sandbox, max_per_call: 1000}
"""
SECRET_NUMBER = "+14155559876"  # in every poison entry; must never appear in a log line
SECRET_TEXT = "door code 4417"


def _call(i: int) -> CallContext:
    return CallContext(
        call_id=f"CA-p{i}", direction="inbound", from_number=SECRET_NUMBER, to_number="+14155550000"
    )


def _caller(i: int) -> CallContext:
    """A valid call of its own caller (per-recipient caps apply to one number)."""
    return CallContext(
        call_id=f"CA-ok{i}", direction="inbound", from_number=f"+1415555{1000 + i}", to_number="+14155550000"
    )


def _valid(i: int) -> dict[str, Any]:
    job = build_job(agent_id="a1", call=_call(i), message=SECRET_TEXT)
    message: dict[str, Any] = json.loads(task_message(job))
    return message


def _with_body(i: int, body: Any, *, raw: bool = False) -> bytes:
    message = _valid(i)
    message["body"] = body if raw else base64.b64encode(json.dumps(body).encode()).decode()
    return json.dumps(message).encode()


def _mutated(i: int, change: Callable[[dict[str, Any]], None]) -> bytes:
    message = _valid(i)
    change(message)
    return json.dumps(message).encode()


def _kinds() -> dict[str, Callable[[int], bytes]]:
    """One maker per kind of malformed entry (i makes each entry distinct)."""
    return {
        "not_json": lambda i: f"{SECRET_NUMBER} {SECRET_TEXT} {i} \xff".encode("latin-1"),
        "binary": lambda i: bytes([0xFF, 0xFE, i % 256]) + SECRET_NUMBER.encode(),
        "json_array": lambda i: json.dumps([SECRET_NUMBER, i]).encode(),
        "json_string": lambda i: json.dumps(f"{SECRET_NUMBER}-{i}").encode(),
        "no_properties": lambda i: _mutated(i, lambda m: m.pop("properties")),
        "no_delivery_tag": lambda i: _mutated(i, lambda m: m["properties"].pop("delivery_tag")),
        "no_delivery_info": lambda i: _mutated(i, lambda m: m["properties"].pop("delivery_info")),
        "bad_base64": lambda i: _with_body(i, f"%%{SECRET_NUMBER}%%{i}", raw=True),
        "body_not_json": lambda i: _with_body(
            i, base64.b64encode(f"{SECRET_TEXT} {i}".encode()).decode(), raw=True
        ),
        "body_wrong_shape": lambda i: _with_body(i, {"job": {"to": SECRET_NUMBER, "n": i}}),
        "no_headers": lambda i: _mutated(i, lambda m: m.pop("headers")),
        "headers_a_list": lambda i: _mutated(i, lambda m: m.__setitem__("headers", [SECRET_NUMBER])),
        "no_task_id": lambda i: _mutated(i, lambda m: m["headers"].pop("id")),
        "bad_eta": lambda i: _mutated(i, lambda m: m["headers"].__setitem__("eta", f"soon {i}")),
        "pickle_content": lambda i: _mutated(
            i, lambda m: m.__setitem__("content-type", "application/x-python-serialize")
        ),
        "unknown_task": lambda i: _mutated(i, lambda m: m["headers"].__setitem__("task", f"evil.task{i}")),
        "orphaned": lambda i: _mutated(i, lambda m: m["headers"].__setitem__("x-sms-orphaned", 9)),
    }


def _malformed_job(i: int) -> bytes:
    """A well-formed task message whose job is malformed: answered with a `failed` event."""
    body = [[], {"job": {"job_id": f"bad-{i}", "call": {"call_id": f"CA-bad{i}"}, "to": SECRET_NUMBER}}, {}]
    return _with_body(i, body)


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text: str = response.read().decode()
        return text


async def test_thousands_of_poison_entries_never_stop_a_worker(
    start_worker: WorkerFactory,
    redis_client: redis.Redis,
    redis_url: str,
    tmp_path: Path,
    capsys: Any,
) -> None:
    """Malformed entries of every kind (and poison restored from a dead worker's `unacked`) are
    dead-lettered, one log line each with no number and no body; the worker stays alive, the
    queue drains, and valid texts sent afterwards are accepted."""
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    port = free_port()
    worker = start_worker(config, concurrency=8, env={"SMS_METRICS_PORT": str(port)})
    kinds = _kinds()
    per_kind = 150
    entries = [make(i) for make in kinds.values() for i in range(per_kind)]
    answered_expected = 100
    entries += [_malformed_job(i) for i in range(answered_expected)]
    # Poison a dead worker left in `unacked`: a junk record and a poison message, both restored
    # by the sweep of dead workers.
    dead = "deadhost:1:feedface"
    with redis_client.pipeline() as pipe:
        pipe.sadd(WORKERS_KEY, dead)
        for i in range(50):
            pipe.hset(UNACKED_KEY, f"junk-{i}", f"{SECRET_NUMBER} not a record {i}")
            pipe.zadd("unacked_index", {f"junk-{i}": time.time()})
            pipe.sadd(worker_reserved_key(dead), f"junk-{i}")
            poison = json.loads(_with_body(10_000 + i, f"%%{SECRET_NUMBER}", raw=True))
            pipe.hset(UNACKED_KEY, f"poison-{i}", json.dumps([poison, "", QUEUE]))
            pipe.zadd("unacked_index", {f"poison-{i}": time.time()})
            pipe.sadd(worker_reserved_key(dead), f"poison-{i}")
        pipe.execute()
    from_unacked = 100
    with redis_client.pipeline(transaction=False) as pipe:
        for entry in entries:
            pipe.lpush(QUEUE, entry)
        pipe.execute()
    pushed = len(entries) + from_unacked

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if (
            redis_client.llen(QUEUE) == 0
            and redis_client.hlen(UNACKED_KEY) == 0
            and redis_client.llen(DEAD_LETTER_KEY) >= pushed - answered_expected
        ):
            break
        await asyncio.sleep(0.2)
    answered = sum(redis_client.exists(events_key(f"CA-bad{i}")) for i in range(answered_expected))
    dead_lettered = int(redis_client.llen(DEAD_LETTER_KEY))
    left, unacked = int(redis_client.llen(QUEUE)), int(redis_client.hlen(UNACKED_KEY))
    alive = worker.process.poll() is None

    async with SmsClient.from_url(redis_url) as sms:
        results = await asyncio.gather(
            *(sms.send(agent_id="a1", call=_caller(i), message="hello", timeout=20) for i in range(20))
        )
    sent_after = sum(r.status == "accepted" for r in results)
    metrics = _scrape(port)
    counted = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("midcall_sms_dead_letters_total{")
    )
    with capsys.disabled():
        print(
            f"\npoison: pushed={pushed} ({len(kinds)} kinds x {per_kind}, {answered_expected} bad jobs, "
            f"{from_unacked} in a dead worker's unacked) answered={answered} dead_lettered={dead_lettered} "
            f"counted={counted:.0f} left_in_queue={left} unacked={unacked} worker_alive={alive} "
            f"valid_sent_after={sent_after}/20"
        )
    output = worker.output()
    assert alive, output[-3000:]
    assert left == 0 and unacked == 0
    assert answered == answered_expected
    assert dead_lettered == pushed - answered_expected
    assert counted == dead_lettered
    assert sent_after == 20
    dead_lines = [line for line in output.splitlines() if '"queue.dead_letter"' in line]
    assert len(dead_lines) == dead_lettered, "one log line per dead-lettered entry"
    assert SECRET_NUMBER not in output and SECRET_NUMBER[2:] not in output
    assert SECRET_TEXT not in output
    reasons = {json.loads(line)["reason"] for line in dead_lines}
    assert {"not_json", "bad_base64", "bad_body", "bad_headers", "unknown_task", "bad_unacked"} <= reasons

    # The CLI lists summaries (never the bytes), requeues and purges.
    capsys.readouterr()
    env_url = {"SMS_REDIS_URL": redis_url}
    import os

    os.environ.update(env_url)
    try:
        assert cli.main(["dead", "list", "--limit", "5000"]) == 0
        listing = capsys.readouterr().out
        assert f"{dead_lettered} dead-lettered entries" in listing
        assert (
            SECRET_NUMBER not in listing and SECRET_NUMBER[2:] not in listing and SECRET_TEXT not in listing
        )
        assert cli.main(["dead", "requeue", "--count", "10"]) == 0
        assert "requeued 10 entries" in capsys.readouterr().out
        deadline = time.monotonic() + 30
        while redis_client.llen(QUEUE) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        assert redis_client.llen(DEAD_LETTER_KEY) == dead_lettered, "requeued poison comes back"
        assert cli.main(["dead", "purge"]) == 0
        assert f"purged {dead_lettered} entries" in capsys.readouterr().out
        assert redis_client.llen(DEAD_LETTER_KEY) == 0
    finally:
        for name in env_url:
            os.environ.pop(name, None)
