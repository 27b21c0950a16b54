"""Prometheus metrics of one worker process, served by `worker.health` on `SMS_METRICS_PORT`.

- `midcall_sms_sends_total{provider, outcome, error_code}`: outcomes of deliveries — `accepted`,
  `failed` or `retrying`, one per outcome of one delivery (provider `none` when none was chosen).
- `midcall_sms_replays_total{outcome}`: jobs answered with the first outcome of their
  idempotency key; nothing was sent.
- `midcall_sms_attempts{provider, outcome}` (histogram): attempts a job took, at its terminal outcome.
- `midcall_sms_provider_request_seconds{provider}` (histogram): each provider request, errors and
  timeouts included; its `_count` is the number of attempts made.
- `midcall_sms_end_to_end_seconds{outcome}` (histogram): the job's `created_at` (the producer's
  clock) to its terminal event.
- `midcall_sms_fallbacks_total{from_provider, to_provider}`: deliveries handed to the agent's
  fallback connection after the primary failed for good.
- `midcall_sms_receipts_total{provider, status}`: delivery receipts that changed a message's
  status (`sent`, `delivered`, `undelivered`, `unconfirmed`; duplicates and stale ones are not
  counted), in the process that applied them (the HTTP service for callbacks, a worker for polls).
- `midcall_sms_delivery_seconds{provider, status}` (histogram): from the provider accepting a
  text to its final receipt (`delivered` or `undelivered`).
- `midcall_sms_in_flight`: deliveries executing in this process now.
- `midcall_sms_dead_letters_total{reason}`: queue entries no worker can run, moved to `sms:dead`,
  and `midcall_sms_dead_letter_depth`: entries in `sms:dead` now (read with the queue depth).
- `midcall_sms_recovered_total`: messages of dead workers this worker's sweep handed back.
- `midcall_sms_queue_depth`: messages waiting in the `sms` list (LLEN), and
  `midcall_sms_queue_unacked`: messages reserved by all workers and not yet acknowledged; both
  read on a scrape, at most once every `SMS_QUEUE_DEPTH_INTERVAL` seconds.

Metrics are per process. With the `threads` pool, as shipped, every task runs in the worker's one
process, so its endpoint sees every send. A prefork worker would observe sends in its child
processes, which this endpoint does not export.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime

import redis
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from producers.contract import DEAD_LETTER_KEY, QUEUE, Event

#: kombu's Redis transport keeps delivered, unacknowledged messages in this hash.
UNACKED_KEY = "unacked"

#: The worker's metrics, plus the process, platform and GC collectors. Not prometheus_client's
#: default registry: Flower imports this app and serves that one, which would then show the
#: worker's metrics, empty, under Flower's own job.
REGISTRY = CollectorRegistry(auto_describe=True)
for _collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    REGISTRY.register(_collector)

SENDS = Counter(
    "midcall_sms_sends",
    "Outcomes of deliveries: accepted, failed, or retrying (one per outcome of one delivery).",
    ["provider", "outcome", "error_code"],
    registry=REGISTRY,
)
REPLAYS = Counter(
    "midcall_sms_replays",
    "Jobs answered with the first outcome of their idempotency key; nothing was sent.",
    ["outcome"],
    registry=REGISTRY,
)
ATTEMPTS = Histogram(
    "midcall_sms_attempts",
    "Attempts a job took, observed at its terminal outcome.",
    ["provider", "outcome"],
    buckets=(1, 2, 3, 4, 5, 6, 8, 10, 20),
    registry=REGISTRY,
)
PROVIDER_SECONDS = Histogram(
    "midcall_sms_provider_request_seconds",
    "Duration of each provider request, errors and timeouts included.",
    ["provider"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
END_TO_END_SECONDS = Histogram(
    "midcall_sms_end_to_end_seconds",
    "From the job's created_at (set by the producer) to its terminal event.",
    ["outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
    registry=REGISTRY,
)
IN_FLIGHT = Gauge("midcall_sms_in_flight", "Deliveries executing in this process now.", registry=REGISTRY)
DEAD_LETTERS = Counter(
    "midcall_sms_dead_letters",
    "Queue entries no worker can run, moved to the dead-letter list sms:dead, by reason.",
    ["reason"],
    registry=REGISTRY,
)
RECOVERED = Counter(
    "midcall_sms_recovered",
    "Messages of dead workers (heartbeat gone) handed back to the queue by this worker's sweep.",
    registry=REGISTRY,
)
FALLBACKS = Counter(
    "midcall_sms_fallbacks",
    "Deliveries handed to the fallback connection after the primary failed for good.",
    ["from_provider", "to_provider"],
    registry=REGISTRY,
)
RECEIPTS = Counter(
    "midcall_sms_receipts",
    "Delivery receipts that changed a message's status (duplicates and stale ones not counted).",
    ["provider", "status"],
    registry=REGISTRY,
)
DELIVERY_SECONDS = Histogram(
    "midcall_sms_delivery_seconds",
    "From the provider accepting a text to its final receipt (delivered or undelivered).",
    ["provider", "status"],
    buckets=(0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0),
    registry=REGISTRY,
)

#: Receipt statuses that end a message's delivery (the time to delivery is observed at these).
_FINAL_RECEIPTS = frozenset({"delivered", "undelivered"})


def observe_send(event: Event, created_at: datetime | None, *, replayed: bool = False) -> None:
    """Count one outcome of one delivery (the canonical log line's numbers)."""
    outcome = event.status.value
    if replayed:
        REPLAYS.labels(outcome).inc()
        return
    provider = event.provider or "none"
    SENDS.labels(provider, outcome, event.error.code.value if event.error else "").inc()
    if not event.terminal:
        return
    if event.attempt >= 1:
        ATTEMPTS.labels(provider, outcome).observe(event.attempt)
    if created_at is not None:
        END_TO_END_SECONDS.labels(outcome).observe(max(0.0, (event.at - created_at).total_seconds()))


def observe_fallback(from_provider: str, to_provider: str) -> None:
    FALLBACKS.labels(from_provider, to_provider).inc()


def observe_receipt(provider: str, status: str, *, accepted_at: datetime | None, at: datetime) -> None:
    """A receipt changed a message's status; `accepted_at` is when the provider took it."""
    RECEIPTS.labels(provider, status).inc()
    if status in _FINAL_RECEIPTS and accepted_at is not None:
        DELIVERY_SECONDS.labels(provider, status).observe(max(0.0, (at - accepted_at).total_seconds()))


def observe_provider_call(provider: str, milliseconds: float) -> None:
    """One provider request took `milliseconds`, whatever its result."""
    PROVIDER_SECONDS.labels(provider).observe(milliseconds / 1000)


class QueueDepthCollector(Collector):
    """`midcall_sms_queue_depth` and `midcall_sms_queue_unacked`, read from Redis on a scrape.

    A scrape within `interval` seconds of the last sample reuses it, so scrapes from several
    Prometheus servers cost at most one round trip per interval. When Redis is unreachable the
    gauges are left out rather than reporting a stale number.
    """

    def __init__(
        self, client: redis.Redis, *, interval: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._redis = client
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._sampled_at: float | None = None
        self._sample: tuple[int, int, int] | None = None

    def describe(self) -> Iterable[Metric]:
        # Without `describe`, registering would call `collect` (and Redis) once to learn the names.
        return self._families(None)

    def collect(self) -> Iterable[Metric]:
        return self._families(self.sample())

    def sample(self) -> tuple[int, int, int] | None:
        """(waiting, unacked, dead-lettered), at most `interval` seconds old; None without Redis."""
        with self._lock:
            now = self._clock()
            if self._sampled_at is None or now - self._sampled_at >= self._interval:
                self._sampled_at = now
                try:
                    with self._redis.pipeline(transaction=False) as pipe:
                        pipe.llen(QUEUE)
                        pipe.hlen(UNACKED_KEY)
                        pipe.llen(DEAD_LETTER_KEY)
                        waiting, unacked, dead = pipe.execute()
                    self._sample = (int(waiting), int(unacked), int(dead))
                except redis.RedisError:
                    self._sample = None
            return self._sample

    @staticmethod
    def _families(sample: tuple[int, int, int] | None) -> list[Metric]:
        depth = GaugeMetricFamily(
            "midcall_sms_queue_depth", f"Messages waiting in the Redis list {QUEUE!r} (LLEN)."
        )
        unacked = GaugeMetricFamily(
            "midcall_sms_queue_unacked",
            "Messages reserved by workers and not yet acknowledged (kombu's unacked hash).",
        )
        dead = GaugeMetricFamily(
            "midcall_sms_dead_letter_depth", f"Entries in the dead-letter list {DEAD_LETTER_KEY!r} (LLEN)."
        )
        if sample is not None:
            depth.add_metric([], sample[0])
            unacked.add_metric([], sample[1])
            dead.add_metric([], sample[2])
        return [depth, unacked, dead]
