"""CPU and latency of one Twilio send, the SDK's `requests` transport against ours on httpx.

    python -m worker.bench.twilio_transport [--sends 2000] [--rounds 3] [--threads 1]

Starts the fake Twilio (`python -m worker.testing twilio --no-validate`) in its own process, so
its CPU is not counted, and drives `TwilioProvider.send` in this process through each transport
in turn (alternating, `--rounds` times, after a warm-up): CPU per send from `time.process_time()`
(this process: the SDK's request building and answer parsing, the transport, the threads), and
the latency of each provider call (`time.perf_counter()` around `send`). `--threads N` sends from
N threads at once, as the worker's threads pool does. Prints one line per transport and round and
a summary (medians of the rounds).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from requests.adapters import HTTPAdapter
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response

from worker.config.models import Connection
from worker.providers.base import OutboundSms
from worker.providers.twilio import TwilioProvider
from worker.testing.twilio import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN

NUMBER = "+15005550006"


class RequestsStack(TwilioHttpClient):  # type: ignore[misc]  # the SDK is untyped
    """The transport before httpx: the SDK's `TwilioHttpClient` (requests) with a pool as large as
    the worker's concurrency and each thread's last response kept (as `TwilioProvider` had it)."""

    def __init__(self, *, timeout: float, pool_size: int) -> None:
        super().__init__(timeout=timeout)
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self._local = threading.local()

    def request(self, *args: Any, **kwargs: Any) -> Response:
        self._local.response = None
        response: Response = super().request(*args, **kwargs)
        self._local.response = response
        return response

    def last_headers(self) -> dict[str, str]:
        response = getattr(self._local, "response", None)
        return dict(response.headers) if response is not None and response.headers else {}

    def close(self) -> None:
        self.session.close()


@dataclass(frozen=True)
class Run:
    stack: str
    sends: int
    cpu_ms_per_send: float
    p50_ms: float
    p99_ms: float


@contextmanager
def fake_twilio() -> Iterator[str]:
    command = [sys.executable, "-m", "worker.testing", "twilio", "--no-validate"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip()
    finally:
        process.terminate()
        process.wait(10)


def provider(url: str, stack: str, pool_size: int) -> TwilioProvider:
    connection = Connection(
        label="Twilio - bench",
        provider="twilio",
        from_number=NUMBER,
        credentials={"account_sid": DEFAULT_ACCOUNT_SID, "auth_token": DEFAULT_AUTH_TOKEN},
        api_base_url=url,
    )
    built = TwilioProvider(connection, timeout=5.0, pool_size=pool_size)
    if stack == "requests":
        built._http.close()
        built._http = RequestsStack(timeout=5.0, pool_size=pool_size)
        built._client.http_client = built._http
    return built


def drive(target: TwilioProvider, stack: str, sends: int, threads: int) -> Run:
    message = OutboundSms(
        to=NUMBER, from_=NUMBER, body="Your code is 424242", job_id="j", idempotency_key="k"
    )
    latencies: list[float] = []
    lock = threading.Lock()
    per_thread = sends // threads

    def work() -> None:
        mine: list[float] = []
        for _ in range(per_thread):
            started = time.perf_counter()
            target.send(message)
            mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)

    cpu = time.process_time()
    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    cpu = time.process_time() - cpu
    latencies.sort()
    done = len(latencies)
    return Run(
        stack=stack,
        sends=done,
        cpu_ms_per_send=cpu * 1000 / done,
        p50_ms=latencies[done // 2] * 1000,
        p99_ms=latencies[min(done - 1, int(done * 0.99))] * 1000,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.bench.twilio_transport", description=__doc__)
    parser.add_argument("--sends", type=int, default=2000, help="sends per transport and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    # As in the worker (worker/logs.py): the SDK's request logging is quiet.
    logging.getLogger("twilio.http_client").setLevel(logging.WARNING)
    runs: list[Run] = []
    with fake_twilio() as url:
        providers = {stack: provider(url, stack, max(args.threads, 4)) for stack in ("requests", "httpx")}
        for stack, target in providers.items():
            drive(target, stack, 200, args.threads)  # warm-up: connections, caches
        for round_ in range(args.rounds):
            for stack, target in providers.items():
                run = drive(target, stack, args.sends, args.threads)
                runs.append(run)
                print(
                    f"round {round_ + 1} {stack:8} {run.sends} sends x{args.threads} threads: "
                    f"cpu {run.cpu_ms_per_send:.3f} ms/send  latency p50 {run.p50_ms:.3f} ms  "
                    f"p99 {run.p99_ms:.3f} ms",
                    flush=True,
                )
        for target in providers.values():
            target.close()
    summary = {stack: [r for r in runs if r.stack == stack] for stack in ("requests", "httpx")}
    medians = {
        stack: tuple(
            statistics.median(getattr(r, f) for r in found) for f in ("cpu_ms_per_send", "p50_ms", "p99_ms")
        )
        for stack, found in summary.items()
    }
    for stack, (cpu, p50, p99) in medians.items():
        print(f"median   {stack:8} cpu {cpu:.3f} ms/send  latency p50 {p50:.3f} ms  p99 {p99:.3f} ms")
    old, new = medians["requests"], medians["httpx"]
    print(
        f"httpx/requests: cpu {new[0] / old[0]:.2f}x  p50 {new[1] / old[1]:.2f}x  p99 {new[2] / old[2]:.2f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
