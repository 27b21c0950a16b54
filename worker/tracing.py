"""OpenTelemetry traces of the worker: each delivery continues the producer's trace.

With the `[otel]` extra installed (`pip install 'midcall-sms[worker,otel]'`) and OpenTelemetry
configured through its standard variables (`OTEL_TRACES_EXPORTER`, `OTEL_EXPORTER_OTLP_ENDPOINT`,
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, …;
`OTEL_SDK_DISABLED=true` turns it off), `configure()` installs a tracer provider when the worker
starts, unless the process has one already. Spans:

- `sms.deliver` (CONSUMER): one delivery of one job, a child of the producer's `sms.send` through
  the job's `traceparent`; attributes `sms.job_id`, `sms.agent_id`, `sms.attempt`, and at the end
  `sms.outcome`, `sms.provider`, `sms.error_code`;
- `sms.provider_request` (CLIENT): the request to the provider, a child of `sms.deliver`;
  `sms.provider`, `sms.connection_id`, `sms.outcome`, `sms.error_code`;
- `sms.receipt` (CONSUMER): a delivery receipt applied, a child of the `sms.deliver` span that sent
  the message (its context is stored with the message-id mapping); `sms.provider`, `sms.status`,
  `sms.result`.

No attribute holds a phone number or a message body. Without opentelemetry every helper here is a
no-op.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from producers import tracing as producer_tracing
from producers.contract import Job
from worker.settings import Settings

TRACER_NAME = "midcall_sms.worker"
current_traceparent = producer_tracing.current_traceparent

_provider: Any = None


def _modules() -> tuple[Any, Any] | None:
    return producer_tracing._api()  # type: ignore[no-any-return]


def enabled(settings: Settings) -> bool:
    """Tracing is configured: not disabled, and an exporter or an OTLP endpoint is named."""
    if settings.otel_sdk_disabled:
        return False
    return bool(settings.otel_traces_exporter or settings.otel_exporter_otlp_endpoint)


def configure(settings: Settings) -> bool:
    """Install a tracer provider with the exporter `OTEL_TRACES_EXPORTER` names (`otlp`, the
    default, `console` or `none`); False when tracing is off, the SDK is not installed, or the
    process has a provider already (an application or a test set one up)."""
    global _provider
    api = _modules()
    if api is None or not enabled(settings):
        return False
    trace = api[0]
    try:
        sdk_trace = importlib.import_module("opentelemetry.sdk.trace")
        export = importlib.import_module("opentelemetry.sdk.trace.export")
        resources = importlib.import_module("opentelemetry.sdk.resources")
    except ImportError:
        return False
    if isinstance(trace.get_tracer_provider(), sdk_trace.TracerProvider):
        return False
    resource = resources.Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(resources.Resource({"service.name": "midcall-sms-worker"}))
    provider = sdk_trace.TracerProvider(resource=resource)
    for name in (settings.otel_traces_exporter or "otlp").split(","):
        name = name.strip()
        if name == "console":
            provider.add_span_processor(export.SimpleSpanProcessor(export.ConsoleSpanExporter()))
        elif name == "otlp":
            otlp = importlib.import_module("opentelemetry.exporter.otlp.proto.http.trace_exporter")
            provider.add_span_processor(export.BatchSpanProcessor(otlp.OTLPSpanExporter()))
        elif name not in ("none", ""):
            raise ValueError(f"OTEL_TRACES_EXPORTER: unsupported exporter {name!r} (otlp, console, none)")
    trace.set_tracer_provider(provider)
    _provider = provider
    return True


def shutdown() -> None:
    """Flush and stop the provider `configure()` installed (at the worker's shutdown)."""
    global _provider
    if _provider is not None:
        _provider.shutdown()
        _provider = None


def _parent(traceparent: str | None) -> Any:
    api = _modules()
    if api is None or not traceparent:
        return None
    return api[1].extract({"traceparent": traceparent})


@contextmanager
def _span(name: str, kind: str, attributes: dict[str, Any], *, parent: str | None = None) -> Iterator[Any]:
    api = _modules()
    if api is None:
        yield None
        return
    trace = api[0]
    tracer = trace.get_tracer(TRACER_NAME)
    context = _parent(parent) if parent is not None else None
    with tracer.start_as_current_span(
        name, context=context, kind=getattr(trace.SpanKind, kind), attributes=attributes
    ) as span:
        yield span


def deliver_span(job: Job, attempt: int) -> Any:
    """The `sms.deliver` span of one delivery, continuing the job's trace when it has one."""
    attributes = {"sms.job_id": job.job_id, "sms.agent_id": job.agent_id, "sms.attempt": attempt}
    return _span("sms.deliver", "CONSUMER", attributes, parent=job.traceparent or "")


def provider_span(provider: str, connection_id: str) -> Any:
    return _span(
        "sms.provider_request", "CLIENT", {"sms.provider": provider, "sms.connection_id": connection_id}
    )


def receipt_span(traceparent: str | None, provider: str, status: str) -> Any:
    """The `sms.receipt` span, a child of the delivery that sent the message when its context is known."""
    return _span(
        "sms.receipt", "CONSUMER", {"sms.provider": provider, "sms.status": status}, parent=traceparent or ""
    )


def annotate(span: Any, **attributes: str | int | None) -> None:
    """Set attributes (None values skipped) on a span from the helpers above (None: no-op)."""
    if span is None:
        return
    for key, value in attributes.items():
        if value is not None:
            span.set_attribute(f"sms.{key}", value)
