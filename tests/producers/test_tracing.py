"""producers/tracing.py: optional OpenTelemetry. Without the package `send()` works and jobs carry
no `traceparent`; with an active span the job carries its W3C context; the contract checks it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from pydantic import ValidationError

from producers import CallContext
from producers.contract import Job
from producers.jobs import build_job

CALL = CallContext(call_id="CA1", direction="inbound", from_number="+14155551234", to_number="+14155550000")


def run(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_producers_work_without_opentelemetry() -> None:
    """With `opentelemetry` not importable, a job is built and traced sends are plain sends."""
    out = run(
        """
        import sys
        sys.modules["opentelemetry"] = None  # import opentelemetry -> ImportError
        from producers import CallContext, tracing
        from producers.jobs import build_job
        call = CallContext(call_id="CA1", direction="inbound", from_number="+14155551234", to_number="+1")
        job = build_job(agent_id="a", call=call, message="hi")
        with tracing.send_span(agent_id="a", call_id="CA1", template=None) as span:
            print(job.traceparent, span, tracing.current_traceparent())
        """
    )
    assert out == "None None None"


def test_a_job_carries_the_active_spans_traceparent() -> None:
    """Built inside a recording span, the job's `traceparent` names that span's trace and span id."""
    out = run(
        """
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        trace.set_tracer_provider(TracerProvider())
        from producers import CallContext
        from producers.jobs import build_job
        call = CallContext(call_id="CA1", direction="inbound", from_number="+14155551234", to_number="+1")
        with trace.get_tracer("t").start_as_current_span("s") as span:
            job = build_job(agent_id="a", call=call, message="hi")
            ctx = span.get_span_context()
            print(job.traceparent.rsplit("-", 1)[0] == f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}")
        print(build_job(agent_id="a", call=call, message="hi").traceparent)
        """
    )
    assert out.splitlines() == ["True", "None"]


def test_without_a_configured_sdk_jobs_have_no_traceparent() -> None:
    """The API's no-op provider records nothing: no context goes into the job."""
    assert build_job(agent_id="a", call=CALL, message="hi").traceparent is None


def test_the_contract_accepts_only_a_w3c_traceparent() -> None:
    job = build_job(agent_id="a", call=CALL, message="hi").model_dump(mode="json")
    good = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert Job.model_validate({**job, "traceparent": good}).traceparent == good
    for bad in ("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "00-xyz", "+14155551234"):
        with pytest.raises(ValidationError):
            Job.model_validate({**job, "traceparent": bad})
