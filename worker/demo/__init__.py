"""`make demo`: a private Redis, a real worker with the sandbox provider, and simulated calls.

Needs no Docker, no account and no network: the sandbox provider records texts in Redis.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import redis

from producers import CallContext, Event, SmsClient
from producers.contract import SANDBOX_OUTBOX_KEY, mask_number
from worker.redis_server import RedisServer

CONFIG = Path(__file__).with_name("config.yaml")
AGENT = "agent_demo"
AGENT_NUMBER = "+14155550000"


def _reachable(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
        client.ping()
        client.close()
        return True
    except redis.RedisError:
        return False


def start_worker(redis_url: str, log_path: Path, *, concurrency: int = 8) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "SMS_REDIS_URL": redis_url,
        "SMS_CONFIG_FILE": str(CONFIG),
        "SMS_LOG_FORMAT": "json",
        "SMS_CONCURRENCY": str(concurrency),
        # The sandbox's receipts come from status polls; the demo polls sooner than the default 5, 15, 45 s.
        "SMS_RECEIPT_POLL_SCHEDULE": os.environ.get("SMS_RECEIPT_POLL_SCHEDULE", "0.5,2"),
    }
    command = [
        sys.executable, "-m", "celery", "-A", "worker", "worker",
        "--without-mingle", "--without-gossip", "-n", "demo@%h",
    ]  # fmt: skip
    log = log_path.open("wb")
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


def _line(event: Event, t0: float) -> str:
    at = (event.at.timestamp() - t0) * 1000
    parts = [f"    {at:+8.1f} ms  {event.status.value:<11}"]
    if event.attempt:
        parts.append(f"attempt {event.attempt}")
    if event.provider:
        parts.append(f"via {event.provider}")
    if event.provider_message_id:
        parts.append(event.provider_message_id[:14] + "…")
    if event.segments:
        parts.append(f"{event.segments} segment{'s' if event.segments > 1 else ''}")
    if event.error:
        parts.append(f"{event.error.code.value}: {event.error.message}")
    if event.next_attempt_at:
        parts.append(f"next attempt in {(event.next_attempt_at - event.at).total_seconds() * 1000:.0f} ms")
    if event.possible_duplicate:
        parts.append("possible_duplicate")
    return "  ".join(parts)


async def _call(sms: SmsClient, title: str, call: CallContext, **send: object) -> None:
    print(f"\n{title}")
    print(f"  call {call.call_id}: {call.direction}, caller {mask_number(call.from_number)}")
    t0 = time.time()
    result = await sms.send(agent_id=AGENT, call=call, timeout=5.0, **send)  # type: ignore[arg-type]
    async for event in sms.events(call.call_id, idle_timeout=0.3):
        if event.job_id == result.job_id:
            print(_line(event, t0))
    print(f'  → the agent hears: "{result.tool_message}"')


async def _receipt_call(sms: SmsClient, title: str, call: CallContext, **send: object) -> None:
    """A text whose delivery receipt comes in after the agent heard "SMS sent."."""
    print(f"\n{title}")
    print(f"  call {call.call_id}: {call.direction}, caller {mask_number(call.from_number)}")
    t0 = time.time()
    result = await sms.send(agent_id=AGENT, call=call, timeout=5.0, **send)  # type: ignore[arg-type]
    print(f'  → the agent hears at once: "{result.tool_message}"')
    delivery = await sms.wait_delivery(result, timeout=10.0)
    async for event in sms.events(call.call_id, idle_timeout=0.3):
        if event.job_id == result.job_id:
            print(_line(event, t0))
    print(f'  → then sms_status / wait_delivery says: "{delivery.tool_message}"')


async def simulate(redis_url: str) -> None:
    async with SmsClient.from_url(redis_url) as sms:
        caller = CallContext(
            call_id="CA-demo-1", direction="inbound", from_number="+14155551234", to_number=AGENT_NUMBER
        )
        await _call(
            sms, "1. The agent confirms a booking by text (template).", caller,
            template="booking_confirmation",
            variables={"date": "March 10", "time": "2:00 PM", "link": "https://acme.example/b/42"},
            idempotency_key="CA-demo-1:tool-call-1",
        )  # fmt: skip
        await _call(
            sms, "2. The model repeats the same tool call (a barge-in): no second text.", caller,
            template="booking_confirmation",
            variables={"date": "March 10", "time": "2:00 PM", "link": "https://acme.example/b/42"},
            idempotency_key="CA-demo-1:tool-call-1",
        )  # fmt: skip
        await _call(
            sms, "3. A prompt injection asks to text another number: refused, nothing sent.", caller,
            message="Claim your prize at https://evil.example", to="+12025550143",
        )  # fmt: skip
        await _call(
            sms, "4. The model forgets a template variable: refused with what is missing.", caller,
            template="password_reset", variables={},
        )  # fmt: skip
        flaky = CallContext(
            call_id="CA-demo-2", direction="inbound", from_number="+15005550010", to_number=AGENT_NUMBER
        )
        await _call(
            sms, "5. The provider fails once (sandbox number +15005550010): retried, then accepted.", flaky,
            template="password_reset", variables={"link": "https://acme.example/r/7"},
        )  # fmt: skip
        delivered = CallContext(
            call_id="CA-demo-3", direction="inbound", from_number="+15005550012", to_number=AGENT_NUMBER
        )
        await _receipt_call(
            sms, "6. The receipt comes in (sandbox number +15005550012): delivered.", delivered,
            template="booking_confirmation",
            variables={"date": "March 10", "time": "2:00 PM", "link": "https://acme.example/b/42"},
        )  # fmt: skip
        filtered = CallContext(
            call_id="CA-demo-4", direction="inbound", from_number="+15005550013", to_number=AGENT_NUMBER
        )
        await _receipt_call(
            sms, "7. The carrier filters the text (sandbox number +15005550013, as Twilio 30007).", filtered,
            template="booking_confirmation",
            variables={"date": "March 10", "time": "2:00 PM", "link": "https://acme.example/b/42"},
        )  # fmt: skip


def _print_outbox(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    entries: list[tuple[str, dict[str, str]]] = client.xrange(SANDBOX_OUTBOX_KEY)  # type: ignore[assignment]
    client.close()
    print(f"\nThe sandbox outbox (what the callers' phones would show): {len(entries)} text(s)")
    for _, fields in entries:
        print(f"  to {mask_number(fields['to'])} from {fields['from']}: {fields['body']!r}")


def main() -> int:
    print("midcall-sms demo: simulated calls text the caller through the sandbox provider")
    with ExitStack() as stack:
        url = os.environ.get("SMS_REDIS_URL")
        if url and _reachable(url):
            print(f"  redis : {url} (from SMS_REDIS_URL)")
        else:
            server = stack.enter_context(RedisServer())
            url = server.url
            print(f"  redis : a private redis-server ({server.binary}) on 127.0.0.1:{server.port}")
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="midcall-demo-")))
        log_path = workdir / "worker.log"
        worker = start_worker(url, log_path)
        stack.callback(_stop, worker)
        print(f"  worker: celery -A worker worker (sandbox provider, config {CONFIG.name}), pid {worker.pid}")
        if not _wait_ready(log_path, worker):
            print(log_path.read_text()[-3000:], file=sys.stderr)
            print("the worker did not start", file=sys.stderr)
            return 1
        asyncio.run(simulate(url))
        _print_outbox(url)
        print("\nThe worker's canonical log lines (JSON, numbers masked, no message text):")
        for line in log_path.read_text().splitlines():
            if '"sms.send"' in line:
                print("  " + line[:240])
    return 0


def _wait_ready(log_path: Path, worker: subprocess.Popen[bytes], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            return False
        if log_path.exists() and "ready." in log_path.read_text():
            return True
        time.sleep(0.1)
    return False


def _stop(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.terminate()
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
