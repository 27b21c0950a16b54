"""Liveness and readiness without a broadcast: the heartbeat, the HTTP endpoint, the bootsteps."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from prometheus_client import CollectorRegistry, Counter
from structlog.testing import capture_logs

from worker.app import create_app
from worker.health import ConsumerHeartbeat, HealthServer, Heartbeat, WorkerMonitor
from worker.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ok() -> None:
    pass


def broker_down() -> None:
    raise redis.ConnectionError("Connection refused")


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def test_a_consuming_worker_is_live_until_its_loop_stops_ticking() -> None:
    """Live while the consumer loop beats; stalled once the last beat is older than the timeout."""
    clock = Clock()
    heartbeat = Heartbeat(60.0, clock=clock)
    heartbeat.start_consuming()
    clock.now += 59
    assert heartbeat.live() == (True, "consuming")
    heartbeat.beat()
    clock.now += 61
    alive, detail = heartbeat.live()
    assert not alive
    assert detail == "consumer loop stalled: last heartbeat 61 s ago"
    assert heartbeat.interval <= 60.0 / 4


def test_a_worker_reconnecting_to_the_broker_is_live_but_not_ready() -> None:
    """Without a consumer (connecting, or reconnecting after Redis went away) the worker stays live
    however old its last beat, and is not ready."""
    clock = Clock()
    heartbeat = Heartbeat(10.0, clock=clock)
    heartbeat.start_consuming()
    heartbeat.stop_consuming()
    clock.now += 3600
    assert heartbeat.live() == (True, "connecting to the broker")
    assert heartbeat.ready(ok) == (False, "not consuming")


@pytest.mark.parametrize(
    ("consuming", "stopping", "ping", "expected"),
    [
        (True, False, ok, (True, "consuming")),
        (True, False, broker_down, (False, "broker unreachable: ConnectionError")),
        (True, True, ok, (False, "shutting down")),
        (False, False, ok, (False, "not consuming")),
    ],
    ids=["ready", "broker-down", "shutting-down", "not-consuming"],
)
def test_readiness_needs_a_consumer_a_broker_and_no_shutdown(
    consuming: bool, stopping: bool, ping: Any, expected: tuple[bool, str]
) -> None:
    """Ready only while consuming, answering PING, and not in a warm shutdown."""
    heartbeat = Heartbeat(60.0)
    if consuming:
        heartbeat.start_consuming()
    heartbeat.stopping = stopping
    assert heartbeat.ready(ping) == expected


@pytest.fixture
def endpoint() -> Iterator[tuple[str, Heartbeat, Clock, dict[str, Any]]]:
    """A HealthServer on an ephemeral 127.0.0.1 port, with a fake clock, a switchable ping and its
    own registry; yields its base URL."""
    clock = Clock()
    heartbeat = Heartbeat(60.0, clock=clock)
    heartbeat.start_consuming()
    state: dict[str, Any] = {"ping": ok}
    registry = CollectorRegistry()
    Counter("demo_things", "Things.", registry=registry).inc(3)
    server = HealthServer(heartbeat, lambda: state["ping"](), host="127.0.0.1", port=0, registry=registry)
    server.start()
    try:
        yield f"http://127.0.0.1:{server.port}", heartbeat, clock, state
    finally:
        server.close()


def test_healthz_answers_503_when_the_consumer_loop_stalls(
    endpoint: tuple[str, Heartbeat, Clock, dict[str, Any]],
) -> None:
    """`/healthz` is 200 with a fresh heartbeat and 503 with a stale one, with the reason in JSON."""
    url, _, clock, _ = endpoint
    status, content_type, body = get(f"{url}/healthz")
    assert (status, content_type, json.loads(body)["status"]) == (200, "application/json", "ok")
    clock.now += 120
    status, _, body = get(f"{url}/healthz")
    assert status == 503
    assert json.loads(body)["detail"].startswith("consumer loop stalled")


def test_readyz_answers_503_while_the_broker_is_unreachable(
    endpoint: tuple[str, Heartbeat, Clock, dict[str, Any]],
) -> None:
    """`/readyz` follows the broker: 200, then 503 while PING fails, then 200 again."""
    url, _, _, state = endpoint
    assert get(f"{url}/readyz")[0] == 200
    state["ping"] = broker_down
    status, _, body = get(f"{url}/readyz")
    assert (status, json.loads(body)["detail"]) == (503, "broker unreachable: ConnectionError")
    assert get(f"{url}/healthz")[0] == 200
    state["ping"] = ok
    assert get(f"{url}/readyz")[0] == 200


def test_metrics_are_served_in_the_prometheus_text_format(
    endpoint: tuple[str, Heartbeat, Clock, dict[str, Any]],
) -> None:
    """`/metrics` renders the registry; other paths are 404."""
    url, _, _, _ = endpoint
    status, content_type, body = get(f"{url}/metrics")
    assert status == 200
    assert content_type.startswith("text/plain; version=")
    assert "demo_things_total 3.0" in body
    assert get(f"{url}/")[0] == 404


def worker_parent(**settings: Any) -> SimpleNamespace:
    """What a worker bootstep sees of the worker: its app and the app's settings."""
    return SimpleNamespace(app=SimpleNamespace(midcall_settings=Settings(**settings)))


def test_port_zero_turns_the_endpoint_off_but_keeps_the_heartbeat() -> None:
    """With `SMS_METRICS_PORT=0` no server starts; the consumer heartbeat is still attached."""
    parent = worker_parent(metrics_port=0)
    step = WorkerMonitor(parent)
    step.create(parent)
    step.start(parent)
    assert step.server is None
    assert isinstance(parent.midcall_heartbeat, Heartbeat)
    step.release()


def test_a_port_in_use_is_logged_and_the_worker_goes_on() -> None:
    """When the port is taken, the step logs `worker.metrics_unavailable` and does not raise."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        parent = worker_parent(metrics_port=port)
        step = WorkerMonitor(parent)
        with capture_logs() as logs:
            step.create(parent)
        assert step.server is None
        [entry] = [e for e in logs if e["event"] == "worker.metrics_unavailable"]
        assert (entry["log_level"], entry["port"]) == ("error", port)
        step.release()


def test_the_endpoint_stays_up_through_the_drain_and_closes_at_worker_shutdown() -> None:
    """Stopping the step (warm shutdown begins) makes the worker unready but keeps serving; `release`
    (at `worker_shutdown`, after the last task) stops the server."""
    parent = worker_parent(metrics_port=0)
    step = WorkerMonitor(parent)
    step.create(parent)
    heartbeat: Heartbeat = parent.midcall_heartbeat
    heartbeat.start_consuming()
    step.stop(parent)
    assert heartbeat.ready(ok) == (False, "shutting down")
    assert heartbeat.live()[0]
    step.release()


class FakeTimer:
    def __init__(self) -> None:
        self.calls: list[tuple[float, Any]] = []
        self.cancelled = False

    def call_repeatedly(self, interval: float, fun: Any) -> FakeTimer:
        self.calls.append((interval, fun))
        return self

    def cancel(self) -> None:
        self.cancelled = True


def test_the_consumer_step_beats_on_the_consumer_timer_while_consuming() -> None:
    """Starting the consumer step marks the worker consuming and schedules `beat` on the consumer's
    timer; stopping it (connection lost, shutdown) cancels the timer and marks it not consuming."""
    heartbeat = Heartbeat(60.0)
    timer = FakeTimer()
    consumer = SimpleNamespace(controller=SimpleNamespace(midcall_heartbeat=heartbeat), timer=timer)
    step = ConsumerHeartbeat(consumer)
    step.start(consumer)
    assert heartbeat.consuming
    assert timer.calls == [(heartbeat.interval, heartbeat.beat)]
    step.stop(consumer)
    assert not heartbeat.consuming and timer.cancelled


def test_the_app_installs_both_bootsteps() -> None:
    """`create_app` adds the monitor to the worker's blueprint and the heartbeat to the consumer's."""
    app = create_app(Settings())
    assert WorkerMonitor in app.steps["worker"]
    assert ConsumerHeartbeat in app.steps["consumer"]
