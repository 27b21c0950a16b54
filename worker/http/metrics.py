"""Prometheus metrics of one service process, served on its own `/metrics`.

- `midcall_sms_webhooks_total{provider, kind, outcome}`: callbacks handled (answered 2xx). `kind`
  is `status` or `inbound`; `outcome` is what became of a receipt (`published`, `duplicate`,
  `stale`, `parked`) or of an inbound message (`received`); `ignored` is a signed callback of
  another event type (a Telnyx `message.received` on the status route, a receipt on the inbound one).
- `midcall_sms_webhooks_refused_total{provider, kind, status}`: callbacks refused: 403 (bad or
  missing signature), 400 (malformed), 404 (unknown provider or connection), 413 (body over
  64 KiB), 503 (Redis unreachable: the provider retries).
- `midcall_sms_webhook_seconds{provider, kind}` (histogram): from the request to the answer,
  refusals included.
- `midcall_sms_api_requests_total{route, status}`: audit API requests by answer.
- `midcall_sms_receipts_total`, `midcall_sms_delivery_seconds`: the receipts this process applied
  (defined in worker/metrics.py, also served here).

`provider` is one of the providers with callbacks, or `other` for any other path segment, so a
scan of made-up URLs cannot create unbounded label values.
"""

from __future__ import annotations

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
)

from worker import metrics as worker_metrics


class ServiceMetrics:
    """The service's metrics, in a registry of their own (one per app, so tests start from zero)."""

    def __init__(self, *, process: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        if process:
            for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
                self.registry.register(collector)
            # Receipts applied by this process (worker.receipts counts them in worker.metrics).
            self.registry.register(worker_metrics.RECEIPTS)
            self.registry.register(worker_metrics.DELIVERY_SECONDS)
        self.handled = Counter(
            "midcall_sms_webhooks",
            "Provider callbacks handled (answered 2xx), by what became of them.",
            ["provider", "kind", "outcome"],
            registry=self.registry,
        )
        self.refused = Counter(
            "midcall_sms_webhooks_refused",
            "Provider callbacks refused, by HTTP status (403 signature, 400 malformed, 404 unknown, "
            "413 too large, 503 Redis unreachable).",
            ["provider", "kind", "status"],
            registry=self.registry,
        )
        self.seconds = Histogram(
            "midcall_sms_webhook_seconds",
            "Time from a callback request to its answer, refusals included.",
            ["provider", "kind"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )
        self.api = Counter(
            "midcall_sms_api_requests",
            "Audit API requests, by route and HTTP status.",
            ["route", "status"],
            registry=self.registry,
        )
