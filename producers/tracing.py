"""OpenTelemetry for `send()`, when the application has it: a span, and its context in the job.

Optional: `producers` never requires opentelemetry. When `opentelemetry-api` is importable, each
`SmsClient.send()` / `SyncSmsClient.send()` runs in a `sms.send` span (kind PRODUCER) of the
application's tracer provider, and the job carries the span's W3C `traceparent`, so the worker's
spans join the same trace. Without the package, or with no SDK configured (the API's no-op
provider), nothing is recorded and the job has no `traceparent`.

Span attributes name the job, never a phone number or a message body: `sms.job_id`,
`sms.agent_id`, `sms.call_id`, `sms.template`, then `sms.status` and `sms.error_code` of the result.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar, cast

P = ParamSpec("P")
R = TypeVar("R")

#: The instrumentation scope of the producer's spans.
TRACER_NAME = "midcall_sms.producers"

_MISSING = object()
_otel: Any = None


def _api() -> Any:
    """`opentelemetry.trace` and `opentelemetry.propagate`, or None when the API is not installed."""
    global _otel
    if _otel is None:
        try:
            _otel = (
                importlib.import_module("opentelemetry.trace"),
                importlib.import_module("opentelemetry.propagate"),
            )
        except ImportError:
            _otel = _MISSING
    return None if _otel is _MISSING else _otel


def current_traceparent() -> str | None:
    """The W3C `traceparent` of the active span, or None when nothing is being traced."""
    api = _api()
    if api is None:
        return None
    carrier: dict[str, str] = {}
    api[1].inject(carrier)
    return carrier.get("traceparent")


@contextmanager
def send_span(*, agent_id: str, call_id: str, template: str | None) -> Iterator[Any]:
    """The `sms.send` span around one `send()`; yields the span (None without opentelemetry)."""
    api = _api()
    if api is None:
        yield None
        return
    trace = api[0]
    attributes = {"sms.agent_id": agent_id, "sms.call_id": call_id}
    if template is not None:
        attributes["sms.template"] = template
    tracer = trace.get_tracer(TRACER_NAME)
    with tracer.start_as_current_span(
        "sms.send", kind=trace.SpanKind.PRODUCER, attributes=attributes
    ) as span:
        yield span


def record_job(span: Any, job_id: str) -> None:
    if span is not None:
        span.set_attribute("sms.job_id", job_id)


def record_result(span: Any, status: str, error_code: str | None) -> None:
    """The outcome `send()` returns, on its span."""
    if span is None:
        return
    span.set_attribute("sms.status", status)
    if error_code:
        span.set_attribute("sms.error_code", error_code)


def _span_args(kwargs: dict[str, Any]) -> dict[str, Any]:
    call = kwargs.get("call")
    return {
        "agent_id": str(kwargs.get("agent_id")),
        "call_id": str(getattr(call, "call_id", "")),
        "template": kwargs.get("template"),
    }


def _record(span: Any, result: Any) -> None:
    record_job(span, str(getattr(result, "job_id", "")))
    error = getattr(result, "error", None)
    record_result(
        span, str(getattr(result, "status", "")), getattr(getattr(error, "code", None), "value", None)
    )


def traced_send(function: Callable[P, R]) -> Callable[P, R]:
    """Run a client's `send()` (sync or async, keyword arguments) in a `sms.send` span; the job it
    builds takes the span's `traceparent` (`producers.jobs.build_job`)."""
    if inspect.iscoroutinefunction(function):

        @functools.wraps(function)
        async def traced_async(*args: P.args, **kwargs: P.kwargs) -> Any:
            with send_span(**_span_args(kwargs)) as span:
                result = await cast(Callable[..., Awaitable[Any]], function)(*args, **kwargs)
                _record(span, result)
                return result

        return cast(Callable[P, R], traced_async)

    @functools.wraps(function)
    def traced(*args: P.args, **kwargs: P.kwargs) -> R:
        with send_span(**_span_args(kwargs)) as span:
            result = function(*args, **kwargs)
            _record(span, result)
            return result

    return traced
