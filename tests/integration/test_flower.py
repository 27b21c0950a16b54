"""Monitoring a real worker as an operator does: Flower, the worker's own endpoint, its log lines.

Every process here is real (`celery -A worker flower`, `celery -A worker worker`, redis-server)
and listens on 127.0.0.1 only; the worker uses the sandbox provider.
"""

from __future__ import annotations

import base64
import contextlib
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
import redis
import yaml
from prometheus_client.parser import text_string_to_metric_families

from producers import CallContext, SendResult, SmsClient
from tests.integration.conftest import ROOT, WorkerFactory, WorkerProcess
from worker.redis_server import RedisServer, free_port

CALLER = "+14155551234"
CODE_MESSAGE = "Your code is 424242"
SANDBOX_CONFIG = ROOT / "worker" / "demo" / "config.yaml"


@pytest.fixture
def many_texts_config(write_config: Callable[[dict[str, Any]], Path]) -> Path:
    """The demo's sandbox agent without the sender rate and per-recipient cap, for tests that
    send dozens of texts to one caller."""
    config = yaml.safe_load(SANDBOX_CONFIG.read_text())
    config["connections"][0]["messages_per_second"] = 10_000
    config["agents"]["agent_demo"]["voice_tools"]["sms_mid_call"]["max_per_recipient"] = None
    return write_config(config)


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


@contextlib.contextmanager
def running_flower(redis_url: str, log: Path) -> Iterator[str]:
    """`celery -A worker flower` on a free 127.0.0.1 port, API open, Flower's defaults otherwise
    (so it asks workers for task events every 5 s); yields its base URL, stops it (SIGTERM)."""
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
    with log.open("ab") as output:
        process = subprocess.Popen(command, cwd=ROOT, env=environ, stdout=output, stderr=subprocess.STDOUT)
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


@pytest.fixture
def flower(redis_url: str, tmp_path: Path) -> Iterator[str]:
    with running_flower(redis_url, tmp_path / "flower.log") as url:
        yield url


#: what Celery's `enable_events` handler logs when a monitor turned task events on
ENABLED_BY_REMOTE = "Events of group {task} enabled by remote."


def events_enabled(worker: WorkerProcess) -> bool:
    return ENABLED_BY_REMOTE in worker.output()


async def test_flower_turns_task_events_on_and_lists_a_succeeded_send_without_the_number(
    start_worker: WorkerFactory, flower: str, redis_url: str
) -> None:
    """A worker with the default settings (task events off) and `celery -A worker flower` started
    against it: Flower's periodic `enable_events` turns the worker's task events on, and Flower then
    lists the worker in /api/workers, shows the `sms.send` as SUCCESS in /api/tasks with its
    arguments masked (no number, no text), and counts it in /metrics."""
    worker = start_worker(SANDBOX_CONFIG, env={"SMS_METRICS_PORT": "0"})
    assert "SMS_TASK_EVENTS" not in os.environ
    started = time.monotonic()
    eventually("Flower's enable_events at the worker", lambda: events_enabled(worker), timeout=30)
    print(f"task events enabled by Flower {time.monotonic() - started:.1f} s after the worker was ready")
    result = await send_code(redis_url, "CA-flower")
    assert result.status == "accepted"

    def task_state() -> dict[str, Any] | None:
        status, body = get(f"{flower}/api/tasks")
        task = json.loads(body).get(result.job_id) if status == 200 else None
        return task if task and task.get("state") == "SUCCESS" else None

    task = eventually("the sms.send as SUCCESS in Flower's /api/tasks", task_state, timeout=30)
    assert task["name"] == "sms.send"
    assert result.job_id in task["kwargs"]
    assert "+1415****234" in task["kwargs"]
    body = get(f"{flower}/api/tasks")[1]
    for secret in (CALLER, CALLER[1:], "424242"):
        assert secret not in body

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
    assert worker.process.poll() is None


class EventCounter:
    """Counts what workers publish on Celery's event exchange (`celeryev`), from a pattern
    subscription: task events (`task-received`, …) apart from the rest, and the PUBLISHes that
    carried task events (a busy worker batches several into one `task.multi` message)."""

    def __init__(self, redis_url: str) -> None:
        self._client = redis.Redis.from_url(redis_url)
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        self._pubsub.psubscribe("*celeryev*")
        self._pubsub.get_message(timeout=1.0)  # the subscription's confirmation
        self.task_events = 0
        self.task_messages = 0
        self.other_events = 0

    def drain(self) -> None:
        while (message := self._pubsub.get_message(timeout=0.2)) is not None:
            if message["type"] != "pmessage":
                continue
            body = json.loads(base64.b64decode(json.loads(message["data"])["body"]))
            events = body if isinstance(body, list) else [body]
            tasks = sum(str(event.get("type", "")).startswith("task-") for event in events)
            self.task_events += tasks
            self.task_messages += tasks > 0
            self.other_events += len(events) - tasks

    def close(self) -> None:
        self._pubsub.close()
        self._client.close()


def publishes(client: redis.Redis) -> int:
    """PUBLISH calls Redis has served (`INFO commandstats`)."""
    stats = client.info("commandstats").get("cmdstat_publish")
    return int(stats["calls"]) if stats else 0


async def test_task_events_cost_publishes_only_while_flower_watches(
    start_worker: WorkerFactory, redis_url: str, tmp_path: Path, many_texts_config: Path
) -> None:
    """Ten texts each with no monitor, with Flower running, and after Flower stopped: a default
    worker publishes no task events before Flower, three per text (received, started, succeeded)
    once Flower asked for them, and none again once `SMS_TASK_EVENTS_LEASE` passed without Flower
    asking (Flower never sends `disable_events`). Prints PUBLISH calls per text from `INFO
    commandstats`, which also count the worker's heartbeat events and Flower's broadcasts."""
    worker = start_worker(many_texts_config, env={"SMS_METRICS_PORT": "0", "SMS_TASK_EVENTS_LEASE": "3"})
    client = redis.Redis.from_url(redis_url)
    counter = EventCounter(redis_url)
    texts = 10
    figures: dict[str, tuple[float, float, float]] = {}

    async def phase(name: str, expected: int) -> tuple[int, int, int]:
        """Send the texts; task events, PUBLISHes that carried them, all PUBLISH calls."""
        counter.drain()
        before = (counter.task_events, counter.task_messages, publishes(client))
        for i in range(texts):
            assert (await send_code(redis_url, f"CA-{name.replace(' ', '-')}-{i}")).status == "accepted"
        # The worker buffers task events and flushes them from its event loop, after the outcome
        # the producer reads: wait for the expected count, or 3 s for stragglers when none is due.
        deadline = time.monotonic() + (15 if expected else 3)
        while time.monotonic() < deadline and (not expected or counter.task_events - before[0] < expected):
            counter.drain()
        tasks, messages = counter.task_events - before[0], counter.task_messages - before[1]
        calls = publishes(client) - before[2]
        figures[name] = (tasks / texts, messages / texts, calls / texts)
        print(
            f"{name}: per text {tasks / texts:.1f} task events in {messages / texts:.1f} PUBLISHes; "
            f"all PUBLISH calls (INFO commandstats) {calls / texts:.2f}"
        )
        return tasks, messages, calls

    try:
        tasks, messages, calls = await phase("without Flower", 0)
        assert tasks == 0 and calls <= texts, figures

        with running_flower(redis_url, tmp_path / "flower.log"):
            eventually("Flower's enable_events at the worker", lambda: events_enabled(worker), timeout=30)
            tasks, messages, calls = await phase("with Flower", 3 * texts)
            assert tasks == 3 * texts and texts <= messages <= calls, figures

        stopped = time.monotonic()
        eventually(
            "task events off at the worker", lambda: '"task_events.off"' in worker.output(), timeout=30
        )
        print(f"task events off {time.monotonic() - stopped:.1f} s after Flower stopped (lease 3 s)")
        tasks, messages, calls = await phase("after Flower stopped", 0)
        assert tasks == 0 and calls <= texts, figures
    finally:
        counter.close()
        client.close()


async def test_sms_task_events_true_keeps_them_on_with_no_monitor(
    start_worker: WorkerFactory, redis_url: str
) -> None:
    """`SMS_TASK_EVENTS=true` forces task events on: three per text with no monitor at all, and no
    lease turns them off (well past a 3 s lease, they still come)."""
    start_worker(SANDBOX_CONFIG, env={"SMS_TASK_EVENTS": "true", "SMS_TASK_EVENTS_LEASE": "3"})
    counter = EventCounter(redis_url)
    try:
        assert (await send_code(redis_url, "CA-forced-1")).status == "accepted"
        time.sleep(5)  # more than the lease
        assert (await send_code(redis_url, "CA-forced-2")).status == "accepted"
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and counter.task_events < 6:
            counter.drain()
        counter.drain()
        assert counter.task_events == 6
    finally:
        counter.close()


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

    def counted() -> str | None:
        """The scrape once the send is counted and over: the worker publishes the outcome (which
        the producer reads) before it records the metrics, so a scrape right after may lag."""
        status, text = get(f"{base}/metrics")
        key = (("error_code", ""), ("outcome", "accepted"), ("provider", "sandbox"))
        done = status == 200 and samples(text, "midcall_sms_sends_total").get(key) == 1.0
        idle = samples(text, "midcall_sms_in_flight") == {(): 0.0}
        ended = samples(text, "midcall_sms_end_to_end_seconds_count").get((("outcome", "accepted"),)) == 1
        return text if done and idle and ended else None

    text = eventually("the send counted in /metrics", counted, timeout=30)
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
