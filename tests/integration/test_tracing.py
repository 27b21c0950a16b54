"""OpenTelemetry across processes: a producer's `send()` and a real worker, each with an in-memory
exporter, record one trace from `send()` to the provider request and the delivery receipt."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.integration.conftest import AUTH_TOKEN, CALLER, ROOT
from worker.testing.twilio import FakeTwilio

MESSAGE = "Your code is 424242"


def start_worker(redis_url: str, config: Path, tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path, Path]:
    spans, log = tmp_path / "worker-spans.json", tmp_path / "worker.log"
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SMS_", "TWILIO_", "OTEL_"))},
        "SMS_REDIS_URL": redis_url,
        "SMS_CONFIG_FILE": str(config),
        "SMS_LOG_FORMAT": "json",
        "SMS_CONCURRENCY": "4",
        "SMS_ALLOW_PRIVATE_ENDPOINTS": "true",
        "SMS_METRICS_PORT": "0",
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "OTEL_TEST_SPANS": str(spans),
        "NO_PROXY": "127.0.0.1,localhost",
    }
    command = [
        sys.executable, "-m", "tests.integration.otel_worker", "-A", "worker", "worker",
        "--without-mingle", "--without-gossip", "-n", "otel@%h",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=environ, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while "ready." not in log.read_text(errors="replace"):
        assert process.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
        time.sleep(0.05)
    return process, spans, log


def by_name(spans: list[dict[str, Any]], name: str) -> dict[str, Any]:
    [found] = [span for span in spans if span["name"] == name]
    return found


def test_one_trace_from_send_through_the_worker_to_the_provider_request_and_the_receipt(
    redis_url: str, config: Path, twilio: FakeTwilio, tmp_path: Path
) -> None:
    """The producer's `sms.send` span (in its process) is the parent of the worker's `sms.deliver`
    (in the worker process, through the job's `traceparent`), which is the parent of
    `sms.provider_request` and of the receipt's `sms.receipt`: one trace id for all four. No
    attribute holds the number or the text."""
    worker, spans_file, log = start_worker(redis_url, config, tmp_path)
    try:
        produced = subprocess.run(
            [sys.executable, "-m", "tests.integration.otel_producer", redis_url, CALLER, MESSAGE],
            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
            env={k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
        )  # fmt: skip
        assert produced.returncode == 0, produced.stderr[-3000:]
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
    out = json.loads(produced.stdout.strip().splitlines()[-1])
    assert (out["status"], out["receipt"]) == ("accepted", "published")
    assert len(twilio.accepted) == 1
    producer_spans = out["spans"]
    worker_spans = json.loads(spans_file.read_text())

    send = by_name(producer_spans, "sms.send")
    receipt = by_name(producer_spans, "sms.receipt")
    deliver = by_name(worker_spans, "sms.deliver")
    request = by_name(worker_spans, "sms.provider_request")
    trace_ids = {span["context"]["trace_id"] for span in (send, deliver, request, receipt)}
    print(
        f"\ntrace: trace_ids={len(trace_ids)} send={send['context']['span_id']} "
        f"deliver.parent={deliver['parent_id']} provider_request.parent={request['parent_id']} "
        f"receipt.parent={receipt['parent_id']}"
    )
    assert len(trace_ids) == 1
    assert deliver["parent_id"] == send["context"]["span_id"]
    assert request["parent_id"] == deliver["context"]["span_id"]
    assert receipt["parent_id"] == deliver["context"]["span_id"]
    assert send["kind"] == "SpanKind.PRODUCER" and deliver["kind"] == "SpanKind.CONSUMER"
    assert send["attributes"]["sms.job_id"] == out["job_id"] == deliver["attributes"]["sms.job_id"]
    assert (send["attributes"]["sms.status"], deliver["attributes"]["sms.outcome"]) == (
        "accepted",
        "accepted",
    )
    assert request["attributes"]["sms.provider"] == "twilio"
    assert receipt["attributes"]["sms.status"] == "delivered"

    everything = json.dumps(producer_spans + worker_spans)
    for secret in (CALLER, CALLER[1:], CALLER[-7:], MESSAGE, "424242"):
        assert secret not in everything, f"{secret!r} in a span"
    assert "Traceback" not in log.read_text(errors="replace")
