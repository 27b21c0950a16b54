"""The worker's HTTP endpoint: `/metrics` (Prometheus), `/healthz` (live), `/readyz` (ready).

Nothing here broadcasts over the broker (unlike `celery inspect ping`):

- `/healthz` answers 200 while the consumer's event loop ticks: a consumer bootstep fires a
  timer every few seconds on that loop, and a loop that has not ticked for `SMS_LIVENESS_TIMEOUT`
  seconds is stalled (503). While the consumer is (re)connecting to Redis there is no loop to
  tick, and the worker counts as live: restarting it would not bring Redis back.
- `/readyz` answers 200 when the consumer is consuming, the worker is not shutting down, and Redis
  answers a PING within a second; else 503 with the reason.

`WorkerMonitor` (a worker bootstep) starts the endpoint with the worker; it stays up through a
warm shutdown, answering `/readyz` with 503, and closes after the last task.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import redis
import structlog
from celery import bootsteps, signals
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry
from redis.backoff import NoBackoff
from redis.retry import Retry

from worker import metrics, redis_client
from worker.settings import Settings

log = structlog.get_logger("worker.health")


class Heartbeat:
    """What the probes report: is the consumer loop ticking, consuming, shutting down."""

    def __init__(self, timeout: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout
        #: seconds between the consumer loop's beats
        self.interval = min(5.0, timeout / 4)
        self._clock = clock
        self._last = clock()
        self.consuming = False
        self.stopping = False

    def beat(self) -> None:
        self._last = self._clock()

    def start_consuming(self) -> None:
        self.consuming = True
        self.beat()

    def stop_consuming(self) -> None:
        self.consuming = False

    def age(self) -> float:
        return self._clock() - self._last

    def live(self) -> tuple[bool, str]:
        if not self.consuming:
            return True, "connecting to the broker"
        age = self.age()
        if age > self.timeout:
            return False, f"consumer loop stalled: last heartbeat {age:.0f} s ago"
        return True, "consuming"

    def ready(self, ping: Callable[[], object]) -> tuple[bool, str]:
        if self.stopping:
            return False, "shutting down"
        if not self.consuming:
            return False, "not consuming"
        try:
            ping()
        except redis.RedisError as exc:
            return False, f"broker unreachable: {type(exc).__name__}"
        return True, "consuming"


class HealthServer:
    """A small threaded HTTP server for the three endpoints, in a daemon thread."""

    def __init__(
        self,
        heartbeat: Heartbeat,
        ping: Callable[[], object],
        *,
        host: str,
        port: int,
        registry: CollectorRegistry = metrics.REGISTRY,
    ) -> None:
        self.heartbeat = heartbeat
        self.ping = ping
        self.registry = registry
        self._httpd = _Server((host, port), _Handler)
        self._httpd.health = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="health-http", daemon=True)

    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    health: HealthServer


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    server_version = "midcall-sms"
    routes: ClassVar[dict[str, str]] = {"/metrics": "metrics", "/healthz": "live", "/readyz": "ready"}

    def do_GET(self) -> None:
        health = self.server.health
        route = self.routes.get(self.path.split("?", 1)[0])
        if route == "metrics":
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            self._send(200, encoder(health.registry), content_type)
            return
        if route is None:
            self._send(404, b"not found\n", "text/plain")
            return
        ok, detail = health.heartbeat.live() if route == "live" else health.heartbeat.ready(health.ping)
        body = {"status": "ok" if ok else "fail", "detail": detail, "heartbeat_age_s": health.heartbeat.age()}
        self._send(200 if ok else 503, json.dumps(body).encode() + b"\n", "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # probes every few seconds would drown the canonical lines


def broker_client(settings: Settings) -> redis.Redis:
    """A Redis client for probes and queue depth: fails within a second, never retries."""
    return redis_client.connect(
        settings, socket_connect_timeout=1.0, socket_timeout=1.0, retry=Retry(NoBackoff(), 0)
    )


class WorkerMonitor(bootsteps.StartStopStep):  # type: ignore[misc]  # celery is untyped
    """Worker bootstep: the endpoint, from the worker's start to the end of its shutdown."""

    label = "midcall-sms monitor"

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.server: HealthServer | None = None
        self.heartbeat: Heartbeat | None = None
        self._queue_depth: metrics.QueueDepthCollector | None = None
        self._client: redis.Redis | None = None

    def create(self, parent: Any) -> None:
        settings: Settings = parent.app.midcall_settings
        self.heartbeat = parent.midcall_heartbeat = Heartbeat(settings.liveness_timeout)
        if settings.metrics_port == 0:
            return
        client = broker_client(settings)
        try:
            self.server = HealthServer(
                self.heartbeat, client.ping, host=settings.metrics_host, port=settings.metrics_port
            )
        except OSError as exc:
            # Loud, not fatal: the probes fail and the orchestrator sees it; sending goes on.
            log.error(
                "worker.metrics_unavailable", host=settings.metrics_host, port=settings.metrics_port,
                error=str(exc),
            )  # fmt: skip
            redis_client.close(client)
            return
        self._client = client
        self._queue_depth = metrics.QueueDepthCollector(client, interval=settings.queue_depth_interval)
        metrics.REGISTRY.register(self._queue_depth)
        signals.worker_shutting_down.connect(self._on_shutting_down, weak=False)
        signals.worker_shutdown.connect(self._on_shutdown, weak=False)

    def start(self, parent: Any) -> None:
        if self.server is not None:
            self.server.start()
            log.info("worker.metrics_listening", host=self.server.host, port=self.server.port)

    def stop(self, parent: Any) -> None:
        # Stays up while the pool drains; `release` runs at `worker_shutdown`, after the last task.
        if self.heartbeat is not None:
            self.heartbeat.stopping = True

    def release(self) -> None:
        """Stop serving and let go of Redis (not `close`: Celery calls that on every step)."""
        signals.worker_shutting_down.disconnect(self._on_shutting_down)
        signals.worker_shutdown.disconnect(self._on_shutdown)
        if self.server is not None:
            self.server.close()
            self.server = None
        if self._queue_depth is not None:
            metrics.REGISTRY.unregister(self._queue_depth)
            self._queue_depth = None
        if self._client is not None:
            redis_client.close(self._client)
            self._client = None

    def _on_shutting_down(self, **_: Any) -> None:
        if self.heartbeat is not None:
            self.heartbeat.stopping = True

    def _on_shutdown(self, **_: Any) -> None:
        self.release()


class ConsumerHeartbeat(bootsteps.StartStopStep):  # type: ignore[misc]
    """Consumer bootstep: beats on the consumer's event loop while it consumes."""

    label = "midcall-sms heartbeat"
    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._timer: Any = None

    def start(self, parent: Any) -> None:
        heartbeat: Heartbeat | None = getattr(parent.controller, "midcall_heartbeat", None)
        if heartbeat is None:
            return
        heartbeat.start_consuming()
        self._timer = parent.timer.call_repeatedly(heartbeat.interval, heartbeat.beat)

    def stop(self, parent: Any) -> None:
        heartbeat: Heartbeat | None = getattr(parent.controller, "midcall_heartbeat", None)
        if heartbeat is not None:
            heartbeat.stop_consuming()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def shutdown(self, parent: Any) -> None:
        self.stop(parent)
