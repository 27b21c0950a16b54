"""`python -m tests.integration.otel_worker celery-args…`: a real worker whose spans go to an
in-memory exporter, written as JSON to `$OTEL_TEST_SPANS` when the worker shuts down
(tests/integration/test_tracing.py). The tracer provider is set before the app loads, so
`worker.tracing.configure` leaves it alone."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from celery import signals
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

EXPORTER = InMemorySpanExporter()
_provider = TracerProvider()
_provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
trace.set_tracer_provider(_provider)


def _dump(**_: Any) -> None:
    spans = [json.loads(span.to_json()) for span in EXPORTER.get_finished_spans()]
    Path(os.environ["OTEL_TEST_SPANS"]).write_text(json.dumps(spans))


signals.worker_shutdown.connect(_dump, weak=False)


if __name__ == "__main__":
    from celery.__main__ import main

    sys.argv = ["celery", *sys.argv[1:]]
    sys.exit(main())
