"""`make soak`: sends for a bounded time while workers are SIGKILLed and Redis restarts, then checks.

`python -m worker.soak [--duration 180] [--rate 20] [--workers 2] [--seed N]` starts its own
redis-server (AOF on), worker processes on the sandbox provider, and one asyncio producer sending
`--rate` texts a second, each on its own call with a 5 s `send()` timeout. At random moments
(every 5–15 s) it injects one fault:

- `worker_kill`: SIGKILL a random worker (mid-send, no warm shutdown), start a new one 1–3 s later;
- `redis_restart`: stop Redis (SIGTERM, so the AOF is flushed) and start it again on the same port.

A tenth of the calls come from the sandbox's slow number (accepted after 3 s), so kills hit sends in
flight. When the time is up it stops sending, waits for every queued job to finish (a killed
worker's messages come back after the visibility timeout, 10 s here) and checks that **every job
with a `queued` event ended in exactly one terminal event**, that no job is in the outbox twice
without `possible_duplicate`, and that no `send()` took longer than its bound. It prints the
counts per fault and per outcome and exits 1 if a check failed. Not part of `make test`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from producers import CallContext, SendResult, SmsClient
from producers.contract import SANDBOX_OUTBOX_KEY, events_key
from worker.bench.processes import Child, Processes, start_worker, wait_ready
from worker.redis_server import RedisServer

CONFIG = """
connections:
  - {label: Sandbox, provider: sandbox, default: true, from_number: "+14155550000"}
agents:
  soak:
    voice_tools:
      sms_mid_call: {enabled: true, provider: sandbox, max_per_call: 100}
"""
TIMEOUT = 5.0
#: what `send()` may take past its timeout: the enqueue budget and its retraction, plus the grace
SEND_BOUND = TIMEOUT + 0.5
SLOW_NUMBER = "+15005550011"
#: seconds after a fault whose sends are counted as that fault's
FAULT_WINDOW = 10.0
WORKER_ENV = {"SMS_VISIBILITY_TIMEOUT": "10", "SMS_RESTORE_INTERVAL": "1", "SMS_LOG_LEVEL": "WARNING"}


def say(message: str) -> None:
    print(message, flush=True)


@dataclass
class Sent:
    index: int
    call_id: str
    body: str
    result: SendResult
    seconds: float
    #: when the send started, in seconds since the soak started
    at: float = 0.0


@dataclass
class Soak:
    options: argparse.Namespace
    redis_server: RedisServer
    processes: Processes
    config: Path
    rng: random.Random
    workers: list[Child] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    fault_log: list[tuple[float, str]] = field(default_factory=list)
    started: float = 0.0
    _next_worker: int = 0

    def start_worker(self) -> Child:
        child = start_worker(
            self.processes, self._next_worker, redis_url=self.redis_server.url, config=self.config,
            concurrency=16, extra_env=WORKER_ENV,
        )  # fmt: skip
        self._next_worker += 1
        return child

    async def send_loop(self, sms: SmsClient, stop_at: float) -> None:
        tasks: list[asyncio.Task[None]] = []
        interval = 1.0 / self.options.rate
        index = 0
        next_at = time.monotonic()
        while time.monotonic() < stop_at:
            tasks.append(asyncio.ensure_future(self.send_one(sms, index)))
            index += 1
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await asyncio.gather(*tasks)

    async def send_one(self, sms: SmsClient, index: int) -> None:
        call_id = f"CA-soak-{index}"
        caller = SLOW_NUMBER if index % 10 == 9 else "+14155551234"
        call = CallContext(call_id=call_id, direction="inbound", from_number=caller, to_number="+14155550000")
        body = f"soak {index}"
        started = time.monotonic()
        result = await sms.send(agent_id="soak", call=call, message=body, timeout=TIMEOUT)
        self.sent.append(
            Sent(index, call_id, body, result, time.monotonic() - started, started - self.started)
        )

    async def fault_loop(self, stop_at: float) -> None:
        while True:
            await asyncio.sleep(self.rng.uniform(5, 15))
            if time.monotonic() >= stop_at:
                return
            kind = self.rng.choice(["worker_kill", "worker_kill", "redis_restart"])
            self.faults[kind] += 1
            self.fault_log.append((time.monotonic() - self.started, kind))
            if kind == "worker_kill":
                victim = self.rng.choice(self.workers)
                victim.process.send_signal(signal.SIGKILL)
                victim.process.wait()
                self.processes.stop(victim)
                self.workers.remove(victim)
                await asyncio.sleep(self.rng.uniform(1, 3))
                replacement = self.start_worker()
                await asyncio.to_thread(wait_ready, [replacement])
                self.workers.append(replacement)
            else:
                await asyncio.to_thread(self.redis_server.restart)

    async def run(self) -> int:
        self.workers = [self.start_worker() for _ in range(self.options.workers)]
        wait_ready(self.workers)
        say(f"soak: {self.options.duration:.0f} s at {self.options.rate}/s, {len(self.workers)} workers, "
            f"seed {self.options.seed}")  # fmt: skip
        self.started = time.monotonic()
        stop_at = self.started + self.options.duration
        async with SmsClient.from_url(self.redis_server.url) as sms:
            await asyncio.gather(self.send_loop(sms, stop_at), self.fault_loop(stop_at))
        say(
            f"sending done after {time.monotonic() - self.started:.0f} s; waiting for every queued job to end"
        )
        return self.check()

    def check(self) -> int:
        client = redis.Redis.from_url(self.redis_server.url, decode_responses=True)
        deadline = time.monotonic() + 90
        while True:
            terminals, queued = self.read_events(client)
            waiting = [
                s for s in self.sent if s.result.job_id in queued and not terminals.get(s.result.job_id)
            ]
            if not waiting or time.monotonic() > deadline:
                break
            time.sleep(1)
        outbox: Any = client.xrange(SANDBOX_OUTBOX_KEY)
        client.close()
        copies = Counter(fields["job_id"] for _, fields in outbox)
        answers = Counter(_answer(s.result) for s in self.sent)
        final = Counter(
            (terminals[s.result.job_id][-1]["status"] if terminals.get(s.result.job_id) else "none")
            for s in self.sent
        )
        one = sum(
            len(terminals.get(s.result.job_id, [])) == 1 for s in self.sent if s.result.job_id in queued
        )
        missing = [s for s in self.sent if s.result.job_id in queued and not terminals.get(s.result.job_id)]
        multiple = [s for s in self.sent if len(terminals.get(s.result.job_id, [])) > 1]
        never_queued_but_answered = [
            s for s in self.sent if s.result.job_id not in queued and s.result.status != "failed"
        ]
        duplicates = {job for job, n in copies.items() if n > 1}
        flagged = {
            s.result.job_id
            for s in self.sent
            if any(e.get("possible_duplicate") for e in terminals.get(s.result.job_id, []))
        }
        unflagged = duplicates - flagged
        slowest = max((s.seconds for s in self.sent), default=0.0)
        say(
            "faults: " + " ".join(f"{k}={v}" for k, v in sorted(self.faults.items()))
            + "  at " + ", ".join(f"{t:.0f}s {k}" for t, k in self.fault_log)
        )  # fmt: skip
        for kind in sorted(self.faults):
            # the sends that started within FAULT_WINDOW seconds after a fault of this kind
            near = [
                s for s in self.sent
                if any(k == kind and t <= s.at < t + FAULT_WINDOW for t, k in self.fault_log)
            ]  # fmt: skip
            counts = Counter(_answer(s.result) for s in near)
            dup = sum(s.result.job_id in duplicates for s in near)
            say(
                f"  {kind}: faults={self.faults[kind]} sends_within_{FAULT_WINDOW:.0f}s={len(near)} "
                + " ".join(f"answered_{k}={v}" for k, v in sorted(counts.items()))
                + f" duplicated={dup} slowest_send={max((s.seconds for s in near), default=0):.2f}s"
            )
        say(
            f"sends: sent={len(self.sent)} queued={len(queued)} "
            + " ".join(f"answered_{k}={v}" for k, v in sorted(answers.items()))
            + f" slowest_send={slowest:.2f}s"
        )
        say(
            f"jobs: exactly_one_terminal={one} missing_terminal={len(missing)} "
            f"multiple_terminal={len(multiple)} "
            + " ".join(f"final_{k}={v}" for k, v in sorted(final.items()))
        )
        say(
            f"outbox: entries={sum(copies.values())} distinct={len(copies)} duplicated={len(duplicates)} "
            f"flagged={len(duplicates & flagged)} unflagged={len(unflagged)}"
        )
        failures = []
        if missing:
            failures.append(f"{len(missing)} queued jobs never ended (e.g. {missing[0].call_id})")
        if multiple:
            failures.append(f"{len(multiple)} jobs ended twice (e.g. {multiple[0].call_id})")
        if never_queued_but_answered:
            failures.append(
                f"{len(never_queued_but_answered)} answers other than failed for jobs never queued"
            )
        if unflagged:
            failures.append(f"{len(unflagged)} texts sent twice without possible_duplicate")
        if slowest > SEND_BOUND + 1.5:
            failures.append(f"a send took {slowest:.2f} s (bound {SEND_BOUND + 1.5:.1f} s)")
        for failure in failures:
            say(f"FAILED: {failure}")
        say("soak: ok" if not failures else "soak: FAILED")
        return 0 if not failures else 1

    def read_events(self, client: redis.Redis) -> tuple[dict[str, list[dict[str, Any]]], set[str]]:
        terminals: dict[str, list[dict[str, Any]]] = {}
        queued: set[str] = set()
        with client.pipeline(transaction=False) as pipe:
            for s in self.sent:
                pipe.xrange(events_key(s.call_id))
            replies: list[Any] = pipe.execute()
        for s, entries in zip(self.sent, replies, strict=True):
            for _, fields in entries:
                event = json.loads(fields["event"])
                if event["job_id"] != s.result.job_id:
                    continue
                if event["status"] == "queued":
                    queued.add(event["job_id"])
                if event["terminal"]:
                    terminals.setdefault(event["job_id"], []).append(event)
        return terminals, queued


def _answer(result: SendResult) -> str:
    if result.status == "failed" and result.error and "not queued" in result.error.message:
        return "not_queued"
    if result.status == "failed" and result.error:
        return f"failed_{result.error.code}"
    return result.status


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m worker.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of sending (default 180)")
    parser.add_argument("--rate", type=float, default=20.0, help="sends per second (default 20)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed)")
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = random.randrange(1_000_000)
    return args


def main(argv: list[str] | None = None) -> int:
    options = parse(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory(prefix="midcall-soak-") as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(CONFIG)
        with RedisServer(appendonly=True) as server, Processes(Path(tmp) / "logs") as processes:
            soak = Soak(options, server, processes, config, random.Random(options.seed))
            return asyncio.run(soak.run())


if __name__ == "__main__":
    sys.exit(main())
