"""Monitoring a real worker as an operator does: Flower, the worker's own endpoint, its log lines.

Every process here is real (`celery -A worker flower`, `celery -A worker worker`, redis-server)
and listens on 127.0.0.1 only; the worker uses the sandbox provider.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from producers import CallContext, SendResult, SmsClient
from tests.integration.conftest import ROOT, WorkerFactory, WorkerProcess
from worker.redis_server import RedisServer, free_port

CALLER = "+14155551234"
CODE_MESSAGE = "Your code is 424242"
SANDBOX_CONFIG = ROOT / "worker" / "demo" / "config.yaml"


def get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    """Status and body of a GET; 4xx/5xx are answers too."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def eventually(what: str, probe: Callable[[], Any], timeout: float = 15.0) -> Any:
    """Poll `probe` until it returns something truthy; its last answer goes in the failure."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except (OSError, ValueError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.2)
    raise AssertionError(f"{what}: last answer {last!r}")


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples called `name` in a Prometheus exposition, keyed by their sorted labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


async def send_code(redis_url: str, call_id: str) -> SendResult:
    call = CallContext(call_id=call_id, direction="inbound", from_number=CALLER, to_number="+14155550000")
    async with SmsClient.from_url(redis_url) as sms:
        return await sms.send(agent_id="agent_demo", call=call, message=CODE_MESSAGE, to=CALLER, timeout=10)


@pytest.fixture
def flower(redis_url: str, tmp_path: Path) -> Iterator[str]:
    """`celery -A worker flower` on a free 127.0.0.1 port, API open; yields its base URL."""
    port = free_port()
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SMS_")},
        "SMS_REDIS_URL": redis_url,
        "FLOWER_UNAUTHENTICATED_API": "true",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker",
        "flower",
        "--address=127.0.0.1",
        f"--port={port}",
    ]
    with (tmp_path / "flower.log").open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=environ, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        eventually("flower answers /healthcheck", lambda: get(f"{url}/healthcheck")[0] == 200, timeout=30)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def test_flower_lists_the_worker_and_counts_a_succeeded_send_without_the_number(
    start_worker: WorkerFactory, flower: str, redis_url: str
) -> None:
    """Flower, run as `celery -A worker flower`, lists a running worker in /api/workers, counts its
    succeeded `sms.send` in /metrics, and shows the task's arguments without number or text."""
    worker = start_worker(SANDBOX_CONFIG, env={"SMS_METRICS_PORT": "0"})
    result = await send_code(redis_url, "CA-flower")
    assert result.status == "accepted"
    name = eventually(
        "the worker in /api/workers",
        lambda: [w for w in json.loads(get(f"{flower}/api/workers?refresh=1")[1]) if w.startswith("test-")],
    )[0]
    assert name.startswith("test-worker0@")

    def succeeded() -> float:
        counts = samples(get(f"{flower}/metrics")[1], "flower_events_total")
        return counts.get((("task", "sms.send"), ("type", "task-succeeded"), ("worker", name)), 0.0)

    assert eventually("a task-succeeded event for sms.send", succeeded) == 1.0
    assert "midcall_sms_" not in get(f"{flower}/metrics")[1], "the worker's metrics stay out of Flower's"

    status, body = get(f"{flower}/api/tasks")
    assert status == 200
    task = json.loads(body)[result.job_id]
    assert (task["name"], task["state"]) == ("sms.send", "SUCCESS")
    assert result.job_id in task["kwargs"]
    assert "+1415****234" in task["kwargs"]
    for secret in (CALLER, CALLER[1:], "424242"):
        assert secret not in body
    assert worker.process.poll() is None


async def test_the_worker_endpoint_serves_send_metrics_liveness_and_readiness(
    start_worker: WorkerFactory, redis_url: str
) -> None:
    """A real worker serves its own /metrics — the send by provider and outcome, its attempt, the
    provider's and the end-to-end latency, the queue's depth — and /healthz and /readyz answer 200."""
    port = free_port()
    start_worker(SANDBOX_CONFIG, env={"SMS_METRICS_PORT": str(port)})
    base = f"http://127.0.0.1:{port}"
    assert get(f"{base}/healthz")[0] == 200
    eventually("/readyz answers 200", lambda: get(f"{base}/readyz")[0] == 200)
    assert (await send_code(redis_url, "CA-metrics")).status == "accepted"

    status, text = get(f"{base}/metrics")
    assert status == 200
    sends = samples(text, "midcall_sms_sends_total")
    assert sends[(("error_code", ""), ("outcome", "accepted"), ("provider", "sandbox"))] == 1.0
    attempts = samples(text, "midcall_sms_attempts_count")
    assert attempts[(("outcome", "accepted"), ("provider", "sandbox"))] == 1
    assert samples(text, "midcall_sms_provider_request_seconds_count")[(("provider", "sandbox"),)] == 1
    assert samples(text, "midcall_sms_end_to_end_seconds_count")[(("outcome", "accepted"),)] == 1
    assert 0 < samples(text, "midcall_sms_end_to_end_seconds_sum")[(("outcome", "accepted"),)] < 10
    assert samples(text, "midcall_sms_queue_depth") == {(): 0.0}
    assert samples(text, "midcall_sms_in_flight") == {(): 0.0}
    assert samples(text, "process_resident_memory_bytes")[()] > 0


def test_readiness_fails_while_redis_is_down_and_liveness_holds(tmp_path: Path) -> None:
    """With its Redis stopped, a worker's /readyz answers 503 and its /healthz still 200 (a restart
    would not bring Redis back); when Redis is back, /readyz answers 200 again."""
    port = free_port()
    with RedisServer() as broker:
        worker = WorkerProcess(
            broker.url, SANDBOX_CONFIG, tmp_path / "worker.log", concurrency=4,
            env={"SMS_METRICS_PORT": str(port)},
        )  # fmt: skip
        try:
            worker.wait_ready()
            base = f"http://127.0.0.1:{port}"
            eventually("ready with Redis up", lambda: get(f"{base}/readyz")[0] == 200)
            broker.stop()
            eventually("not ready with Redis down", lambda: get(f"{base}/readyz")[0] == 503)
            assert json.loads(get(f"{base}/readyz")[1])["detail"].startswith(
                ("broker unreachable", "not consuming")
            )
            assert get(f"{base}/healthz")[0] == 200
            broker.start()
            eventually("ready again", lambda: get(f"{base}/readyz")[0] == 200, timeout=20)
        finally:
            worker.stop()


async def test_every_line_a_real_worker_logs_is_json_with_celerys_lines_included(
    start_worker: WorkerFactory, redis_url: str
) -> None:
    """`celery -A worker worker` with JSON logs writes nothing but JSON lines — Celery's and
    kombu's own included, no banner — apart from Celery's one-line shutdown notice; the canonical
    line masks the number and has no message text."""
    worker = start_worker(SANDBOX_CONFIG, env={"SMS_METRICS_PORT": "0"})
    assert (await send_code(redis_url, "CA-logs")).status == "accepted"
    worker.stop()
    lines = [line for line in worker.output().splitlines() if line.strip()]
    notice = "worker: Warm shutdown (MainProcess)"
    records = [json.loads(line) for line in lines if line != notice]
    loggers = {record["logger"] for record in records}
    assert {"celery.apps.worker", "celery.worker.consumer.connection", "worker.send"} <= loggers
    [send] = [r for r in records if r["event"] == "sms.send"]
    assert send["to"] == "+1415****234"
    assert send["body_chars"] == len(CODE_MESSAGE)
    assert all(CALLER not in line and "424242" not in line for line in lines)
