"""The receipts phase: how fast the HTTP service turns signed status callbacks into call events.

1. our workers send `messages` texts through the 0 ms fake Twilio, each on its own call, so each
   message has the mapping a real receipt needs (`sms:msg:twilio:<sid>`);
2. one `midcall-sms serve` process (uvicorn, one process) is started on a free port;
3. **at load**: the producers post a signed `sent` receipt for each message at `receipts_rate`
   receipts/s offered (open loop), and each POST's round trip is timed: the handling time a
   provider sees, HTTP on loopback included;
4. **saturation**: they post a signed `delivered` receipt for every message, flat out with
   `receipts_in_flight` requests outstanding each: receipts per second sustained;
5. **none lost**: every answer must be 200, and every call's stream must hold exactly one
   `sent` and one `delivered` event for its message.

The receipts are Twilio's (form fields signed with HMAC-SHA1 by the SDK's `RequestValidator`),
signed before the timed windows. Everything shares this machine's CPUs with the service.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import redis
from prometheus_client.parser import text_string_to_metric_families
from twilio.request_validator import RequestValidator

from producers.client import SmsClient
from producers.contract import EVENT_FIELD, events_key
from worker.bench import proc, processes, workload
from worker.bench.processes import BenchError, Child, Processes
from worker.bench.stats import summarize
from worker.redis_server import free_port

#: one POST: path, body, headers
Request = tuple[str, bytes, dict[str, str]]
CONNECTION_ID = "fast"  # the workload's connection labelled "fast"


# -- producer side (runs in the producer processes) ----------------------------------------------


def seed(redis_url: str, count: int, concurrency: int) -> dict[str, Any]:
    """Send `count` texts, each on its own call: (call_id, provider message id) of the accepted, and
    how the others ended (status/error code: counts)."""

    async def main() -> dict[str, Any]:
        accepted: list[tuple[str, str]] = []
        others: Counter[str] = Counter()
        tag = uuid.uuid4().hex[:8]
        gate = asyncio.Semaphore(concurrency)
        async with SmsClient.from_url(redis_url) as sms:

            async def one(i: int) -> None:
                call_id = f"bench-receipts-{tag}-{i}"
                async with gate:
                    result = await sms.send(
                        agent_id=workload.AGENT_FAST, call=workload.call(call_id), template="booking",
                        variables=workload.VARIABLES, timeout=30,
                    )  # fmt: skip
                if result.status == "accepted" and result.provider_message_id:
                    accepted.append((call_id, result.provider_message_id))
                else:
                    code = getattr(result.error, "code", None) if result.error is not None else None
                    others[f"{result.status}/{code}" if code else str(result.status)] += 1

            await asyncio.gather(*(one(i) for i in range(count)))
        return {"accepted": accepted, "others": dict(others)}

    return asyncio.run(main())


class Connections:
    """Keep-alive HTTP/1.1 connections to the service, for requests rendered in advance: a raw
    client, so the producers' own CPU (httpx costs about 3 ms a request) does not crowd out the
    service on a small machine."""

    def __init__(self, base_url: str, limit: int) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._gate = asyncio.Semaphore(limit)
        self._all: list[asyncio.StreamWriter] = []

    async def post(self, raw: bytes) -> str:
        """Send one rendered request; its answer as "<status> <outcome>"."""
        async with self._gate:
            if self._idle:
                reader, writer = self._idle.pop()
            else:
                reader, writer = await asyncio.open_connection(self.host, self.port)
                self._all.append(writer)
            writer.write(raw)
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = lines[0].split(" ", 2)[1]
            length = next(
                (
                    int(v)
                    for k, _, v in (h.partition(":") for h in lines[1:])
                    if k.lower() == "content-length"
                ),
                0,
            )
            body = await reader.readexactly(length)
            self._idle.append((reader, writer))
        try:
            outcome = json.loads(body).get("outcome", "")
        except ValueError:
            outcome = ""
        return f"{status} {outcome}".strip()

    async def close(self) -> None:
        for writer in self._all:
            writer.close()


def raw_request(base_url: str, request: Request) -> bytes:
    """`request` as the bytes of an HTTP/1.1 POST."""
    path, body, headers = request
    host = urlsplit(base_url).netloc
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def post_open_loop(base_url: str, requests: list[Request], rate: float, start_at: float) -> dict[str, Any]:
    """POST `requests` at `rate` per second from `start_at` (monotonic), each on schedule whatever
    the previous ones are doing; round trips in ms, answers by status and outcome."""

    async def main() -> dict[str, Any]:
        latency: list[float] = []
        answers: Counter[str] = Counter()
        rendered = [raw_request(base_url, r) for r in requests]
        pool = Connections(base_url, 256)

        async def one(raw: bytes) -> None:
            started = time.perf_counter()
            try:
                key = await pool.post(raw)
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
                key = type(exc).__name__
            latency.append((time.perf_counter() - started) * 1000)
            answers[key] += 1

        tasks = []
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        began = time.monotonic()
        for i, raw in enumerate(rendered):
            delay = began + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(raw)))
        offered = time.monotonic() - began
        await asyncio.gather(*tasks)
        await pool.close()
        return {"latency": latency, "answers": dict(answers), "offered_seconds": offered}

    return asyncio.run(main())


def post_closed_loop(
    base_url: str, requests: list[Request], in_flight: int, start_at: float
) -> dict[str, Any]:
    """POST `requests` keeping `in_flight` outstanding; round trips, answers, and the window."""

    async def main() -> dict[str, Any]:
        latency: list[float] = []
        answers: Counter[str] = Counter()
        queue = [raw_request(base_url, r) for r in reversed(requests)]
        pool = Connections(base_url, in_flight)

        async def lane() -> None:
            while queue:
                raw = queue.pop()
                started = time.perf_counter()
                try:
                    key = await pool.post(raw)
                except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
                    key = type(exc).__name__
                latency.append((time.perf_counter() - started) * 1000)
                answers[key] += 1

        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        began = time.monotonic()
        await asyncio.gather(*(lane() for _ in range(in_flight)))
        ended = time.monotonic()
        await pool.close()
        return {"latency": latency, "answers": dict(answers), "began": began, "ended": ended}

    return asyncio.run(main())


# -- orchestrator side ---------------------------------------------------------------------------


def signed_receipt(public_url: str, message_id: str, status: str) -> Request:
    """A Twilio status callback for `message_id`, signed for the service's public URL."""
    path = f"/v1/webhooks/twilio/{CONNECTION_ID}/status"
    fields = {
        "MessageSid": message_id, "SmsSid": message_id, "MessageStatus": status, "SmsStatus": status,
        "AccountSid": workload.ACCOUNT_SID, "From": workload.SENDER, "To": workload.CALLER,
        "ApiVersion": "2010-04-01",
    }  # fmt: skip
    signature = RequestValidator(workload.AUTH_TOKEN).compute_signature(public_url + path, fields)
    headers = {"X-Twilio-Signature": signature, "Content-Type": "application/x-www-form-urlencoded"}
    return path, urlencode(fields).encode(), headers


def start_service(procs: Processes, redis_url: str, config: Any) -> tuple[Child, str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        "SMS_REDIS_URL": redis_url, "SMS_CONFIG_FILE": str(config), "SMS_PUBLIC_URL": url,
        "SMS_HTTP_HOST": "127.0.0.1", "SMS_HTTP_PORT": str(port), "SMS_LOG_LEVEL": "WARNING",
        "SMS_LOG_FORMAT": "json",
    }  # fmt: skip
    child = procs.spawn("http-service", [sys.executable, "-m", "worker.cli", "serve"], env)
    child.metrics_port = port  # /readyz is on the same port
    processes.wait_ready([child])
    return child, url


def server_view(url: str) -> dict[str, float | None]:
    """The service's own `midcall_sms_webhook_seconds` for Twilio status callbacks: count, mean
    and the bucket bound under which 99 % of them fell (ms)."""
    text = httpx.get(url + "/metrics", timeout=5, trust_env=False).text
    buckets: list[tuple[float, float]] = []
    total = count = 0.0
    for family in text_string_to_metric_families(text):
        if family.name != "midcall_sms_webhook_seconds":
            continue
        for sample in family.samples:
            if sample.labels.get("provider") != "twilio" or sample.labels.get("kind") != "status":
                continue
            if sample.name.endswith("_bucket"):
                buckets.append((float(sample.labels["le"]), sample.value))
            elif sample.name.endswith("_sum"):
                total = sample.value
            elif sample.name.endswith("_count"):
                count = sample.value
    p99 = next((le for le, n in sorted(buckets) if count and n >= 0.99 * count), None)
    return {
        "count": count,
        "mean_ms": round(total / count * 1000, 3) if count else None,
        "p99_bucket_ms": None if p99 is None else round(p99 * 1000, 3),
    }


def delivery_counts(redis_url: str, calls: list[tuple[str, str]]) -> Counter[str]:
    """Delivery events on the seeded calls' streams, by status ("sent", "delivered"…)."""
    counts: Counter[str] = Counter()
    client = redis.Redis.from_url(redis_url)
    try:
        with client.pipeline(transaction=False) as pipe:
            for call_id, _ in calls:
                pipe.xrange(events_key(call_id))
            streams = pipe.execute()
    finally:
        client.close()
    for entries in streams:
        for _, fields in entries:
            status = json.loads(fields[EVENT_FIELD.encode()])["status"]
            if status in ("sent", "delivered", "undelivered", "unconfirmed"):
                counts[status] += 1
    return counts


def split(items: list[Request], parts: int) -> list[list[Request]]:
    return [items[i::parts] for i in range(parts)]


def phase(
    *,
    redis_url: str,
    procs: Processes,
    run_producers: Callable[[list[tuple[Callable[..., Any], tuple[Any, ...]]], float], list[Any]],
    start_workers: Callable[[], list[Child]],
    stop_workers: Callable[[list[Child]], None],
    groups: dict[str, list[int]],
    config: Any,
    messages: int,
    producers: int,
    rate: int,
    in_flight: int,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """The whole phase; every process it starts is stopped before it returns."""
    workers = start_workers()
    try:
        say(f"receipts: sending {messages} texts to have real message ids")
        share = [max(1, messages // producers)] * producers
        outs = run_producers([(seed, (redis_url, n, 50)) for n in share], 600)
    finally:
        stop_workers(workers)
    seeded = [tuple(pair) for out in outs for pair in out["accepted"]]
    others: Counter[str] = Counter()
    for out in outs:
        others.update(out["others"])
    if others:  # e.g. a send that expired on a crowded machine: the phase goes on with the others
        say(f"receipts: {len(seeded)} of {sum(share)} seed texts accepted; the others: {dict(others)}")
    if len(seeded) < 0.9 * sum(share):
        raise BenchError(
            f"receipts: only {len(seeded)} of {sum(share)} seed texts were accepted; "
            f"the others: {dict(others)}"
        )
    service, url = start_service(procs, redis_url, config)
    groups["http"] = [service.pid]
    try:
        sent = [signed_receipt(url, sid, "sent") for _, sid in seeded]
        delivered = [signed_receipt(url, sid, "delivered") for _, sid in seeded]
        say(f"receipts: {len(sent)} signed `sent` receipts at {rate}/s offered")
        before = proc.snapshot(groups)
        start = time.monotonic() + 1.0
        outs = run_producers(
            [(post_open_loop, (url, part, rate / producers, start)) for part in split(sent, producers)],
            len(sent) / rate + 120,
        )
        at_load = _block(outs, proc.usage(before, proc.snapshot(groups), len(sent)))
        at_load["offered_rate"] = rate
        at_load["achieved_rate"] = round(len(sent) / max(max(o["offered_seconds"] for o in outs), 1e-9), 1)
        say(f"receipts: {len(delivered)} signed `delivered` receipts, flat out, {in_flight} in flight each")
        before = proc.snapshot(groups)
        outs = run_producers(
            [(post_closed_loop, (url, part, in_flight, time.monotonic() + 1.0))
             for part in split(delivered, producers)],
            600,
        )  # fmt: skip
        saturation = _block(outs, proc.usage(before, proc.snapshot(groups), len(delivered)))
        window = max(o["ended"] for o in outs) - min(o["began"] for o in outs)
        saturation["receipts_per_s"] = round(len(delivered) / max(window, 1e-9), 1)
        view = server_view(url)
    finally:
        procs.stop(service)
        groups.pop("http", None)
    events = delivery_counts(redis_url, seeded)
    return {
        "messages": len(seeded),
        "seeds_not_accepted": dict(others),
        "producers": producers,
        "in_flight_per_producer": in_flight,
        "at_load": at_load,
        "saturation": saturation,
        "server_view": view,
        "events": dict(events),
        "lost": {status: len(seeded) - events.get(status, 0) for status in ("sent", "delivered")},
    }


def _block(outs: list[dict[str, Any]], cpu: dict[str, float | None]) -> dict[str, Any]:
    answers: Counter[str] = Counter()
    for out in outs:
        answers.update(out["answers"])
    return {
        "latency": summarize([x for out in outs for x in out["latency"]]),
        "answers": dict(answers),
        "cpu": cpu,
    }


def render(result: dict[str, Any]) -> str:
    """The phase's lines in the printed report."""
    load, sat, view = result["at_load"], result["saturation"], result["server_view"]

    def q(summary: dict[str, Any], key: str) -> str:
        value = summary.get(key)
        return "—" if value is None else f"{value:.2f} ms"

    http_cpu = sat["cpu"].get("http_ms_per_msg")
    answers = ", ".join(
        f"{k}: {v}" for k, v in sorted((Counter(load["answers"]) + Counter(sat["answers"])).items())
    )
    lost = result["lost"]
    return "\n".join([
        f"Receipts through the HTTP service (one uvicorn process, Twilio-signed status callbacks, "
        f"{result['messages']} messages, {result['producers']} producer processes):",
        f"- at {load['offered_rate']} receipts/s offered ({load['achieved_rate']} achieved): handling time "
        f"(POST round trip) p50 {q(load['latency'], 'p50')}, p99 {q(load['latency'], 'p99')}, "
        f"max {q(load['latency'], 'max')}",
        f"- flat out ({result['in_flight_per_producer']} in flight per producer): "
        f"{sat['receipts_per_s']:,.0f} receipts/s sustained, p50 {q(sat['latency'], 'p50')}, "
        f"p99 {q(sat['latency'], 'p99')}; service CPU "
        f"{'—' if http_cpu is None else f'{http_cpu:.2f}'} ms per receipt",
        f"- service's own view: mean {view['mean_ms']} ms, 99 % under {view['p99_bucket_ms']} ms "
        f"({view['count']:.0f} callbacks)",
        f"- answers: {answers}; events on the calls' streams: {result['events']}; "
        f"lost: sent {lost['sent']}, delivered {lost['delivered']}",
    ])  # fmt: skip
