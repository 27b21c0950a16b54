"""`python -m tests.integration.otel_producer REDIS_URL CALLER MESSAGE`: one `SyncSmsClient.send()`
traced by an in-memory exporter, then the message's `delivered` receipt applied; prints one JSON
object: the result and every finished span (tests/integration/test_tracing.py)."""

from __future__ import annotations

import json
import sys

import redis
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from producers import CallContext, SyncSmsClient
from worker.receipts import ReceiptUpdate, apply_receipt


def main(redis_url: str, caller: str, message: str) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    call = CallContext(call_id="CA-trace", direction="inbound", from_number=caller, to_number="+15005550006")
    with SyncSmsClient.from_url(redis_url) as sms:
        result = sms.send(agent_id="agent_abc123", call=call, message=message, timeout=30)
    applied = None
    if result.provider_message_id:
        client = redis.Redis.from_url(redis_url)
        update = ReceiptUpdate(provider="twilio", message_id=result.provider_message_id, status="delivered")
        applied = apply_receipt(client, update)
        client.close()
    spans = [json.loads(span.to_json()) for span in exporter.get_finished_spans()]
    print(json.dumps({"status": result.status, "job_id": result.job_id, "receipt": applied, "spans": spans}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
