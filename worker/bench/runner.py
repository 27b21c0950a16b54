"""The phases of one run, in order, each on freshly started workers; returns every figure as a dict.

redis + two fakes + producer processes → floor (raw worker) → baseline B (direct calls) →
baseline A (bare Celery workers: one at a time, then saturation) → our workers (one at a time,
the headline rate with the loop-lag probe, the load sweep, saturation, memory) → stop everything.
Between phases the queues are drained, so no phase inherits another's backlog.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import time
from collections import Counter
from collections.abc import Callable
from importlib import metadata
from typing import Any

import redis

from producers.contract import QUEUE
from worker.bench import bare, baselines, load, proc, processes, receipts, redisstats, workload
from worker.bench import profile as profiling
from worker.bench.options import Options
from worker.bench.processes import Child, Processes
from worker.bench.producer_pool import Producers
from worker.bench.stats import summarize
from worker.bench.summaries import (
    latency_block,
    metric_totals,
    occupancy,
    sweep_point,
    throughput,
    worker_metrics,
)
from worker.redis_server import RedisServer

#: seconds a send may wait for its outcome under load before it counts as not completed
LOAD_TIMEOUT = 10.0
SATURATION_TIMEOUT = 30.0
QUEUES = (QUEUE, bare.QUEUE)


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


class Run:
    def __init__(self, options: Options, server: RedisServer, procs: Processes, producers: Producers) -> None:
        self.options = options
        self.redis_url = server.url
        self.procs = procs
        self.producers = producers
        self.fast_url = processes.start_fake(procs, "fake-fast", 0.0)
        self.slow_url = processes.start_fake(procs, "fake-slow", options.provider_latency_ms)
        self.redis_port = server.port
        self.meta = meta(options, server)
        #: the run's processes by role, for CPU accounting
        self.groups: dict[str, list[int]] = {
            "workers": [],
            "producers": list(producers.pids.values()),
            "redis": [self.meta["redis_pid"]],
            "fakes": [procs.started["fake-fast"], procs.started["fake-slow"]],
            "orchestrator": [os.getpid()],
        }
        self.workers: list[Child] = []
        self.say = say

    # -- helpers --------------------------------------------------------------------------------
    def wait_idle(self, timeout: float = 60.0) -> None:
        """Until no message waits or is unacknowledged, so a phase never inherits the last one's."""
        client = redis.Redis.from_url(self.redis_url)
        deadline = time.monotonic() + timeout
        try:
            while sum(client.llen(q) for q in QUEUES) + client.hlen("unacked") > 0:
                if time.monotonic() > deadline:
                    say(f"warning: queues not empty after {timeout:.0f} s; going on")
                    return
                time.sleep(0.05)
        finally:
            client.close()

    def commands(self) -> redisstats.Counters:
        """Redis's counters so far: commands (INFO commandstats), requests read, its own CPU."""
        with contextlib.closing(redis.Redis.from_url(self.redis_url)) as client:
            return redisstats.snapshot(client)

    def cpu(self) -> proc.Snapshot:
        return proc.snapshot(self.groups)

    def usage(self, before: proc.Snapshot, after: proc.Snapshot, texts: int) -> dict[str, Any]:
        """CPU per text by group and by process (named: worker-ours-0, bench-producer-1, …)."""
        out = proc.usage(before, after, texts)
        names = {pid: name for name, pid in [*self.procs.started.items(), *self.producers.pids.items()]}
        names[self.meta["redis_pid"]] = "redis-server"
        names[os.getpid()] = "orchestrator"
        out["per_process"] = {names.get(int(pid), pid): ms for pid, ms in out["per_process"].items()}
        return out

    def in_flight(self, producers: int) -> int:
        """Sends each producer keeps outstanding flat out: every thread busy and a queue behind."""
        return max(1, (len(self.workers) * self.options.concurrency * 3 // 2) // producers)

    def window(self) -> tuple[float, float, float]:
        """(start, count from, stop) in monotonic time for a saturation run."""
        start = time.monotonic() + 1.0
        return start, start + self.options.warmup, start + self.options.warmup + self.options.duration

    def start_workers(self, start: Callable[[int], Child], count: int | None = None) -> list[Child]:
        workers = [start(i) for i in range(self.options.workers if count is None else count)]
        processes.wait_ready(workers)
        self.groups["workers"] = [w.pid for w in workers]
        self.workers = workers
        return workers

    def stop_workers(self, workers: list[Child]) -> None:
        self.procs.stop_all(workers)
        self.groups["workers"] = []
        self.workers = []

    def metrics(self) -> dict[str, float]:
        """Our workers' /metrics totals now (empty for the bare workers, which serve none)."""
        return metric_totals([processes.scrape(w) for w in self.workers])

    def occupancy_sampler(
        self, client: redis.Redis, queue: str, count_from: float, stop: float, producers: int
    ) -> tuple[Callable[[], None], list[dict[str, float]]]:
        """A tick for `Producers.run` that samples, inside the window: messages waiting in `queue`,
        messages delivered to workers and not yet acknowledged (kombu's `unacked` hash: with late
        acks, both ours and the bare worker hold them until the task ended), for our workers the
        sends executing (the `midcall_sms_in_flight` gauge), and the Redis connections each of the
        first `producers` producer processes holds (from /proc). One Redis request per sample."""
        samples: list[dict[str, float]] = []
        pids = list(self.producers.pids.values())[:producers]

        def tick() -> None:
            if not count_from <= time.monotonic() <= stop:
                return
            pipe = client.pipeline(transaction=False)
            pipe.llen(queue)
            pipe.hlen("unacked")
            waiting, unacked = pipe.execute()
            sample = {"waiting": float(waiting), "unacked": float(unacked)}
            sample["producer_connections"] = float(
                max(proc.redis_connections(pid, self.redis_port) for pid in pids)
            )
            if any(w.metrics_port for w in self.workers):
                sample["executing"] = self.metrics().get("midcall_sms_in_flight", 0.0)
            samples.append(sample)

        return tick, samples

    def saturate(
        self,
        function: Callable[..., dict[str, Any]],
        target: str,
        agent_or_url: str,
        queue: str,
        producers: int | None = None,
    ) -> dict[str, Any]:
        """`function` flat out from `producers` producer processes: throughput in the window; CPU
        per text of each process and Redis commands per text over the phase; and what the queue,
        the workers and the producers' connections held meanwhile."""
        o = self.options
        producers = producers or o.producers
        in_flight = self.in_flight(producers)
        say(
            f"{target}: saturation, {len(self.workers)} worker(s), {producers} producer(s), "
            f"provider {o.provider_latency_ms:g} ms, {o.duration:g} s"
        )
        start, count_from, stop = self.window()
        calls = [(function, (self.redis_url, agent_or_url, in_flight, start, stop, SATURATION_TIMEOUT))]
        with contextlib.closing(redis.Redis.from_url(self.redis_url)) as client:
            tick, samples = self.occupancy_sampler(client, queue, count_from, stop, producers)
            before, metrics_before, commands_before = self.cpu(), self.metrics(), self.commands()
            outs = self.producers.run(
                calls * producers, timeout=stop - time.monotonic() + SATURATION_TIMEOUT + 30, tick=tick
            )
            after, commands_after = self.cpu(), self.commands()
        result = throughput(outs, count_from, stop, in_flight)
        result["workers"], result["producers"] = len(self.workers), producers
        result["cpu"] = self.usage(before, after, result["completed"])
        own = Counter({"llen": len(samples), "hlen": len(samples)})
        result["redis"] = redisstats.per_text(
            commands_before, commands_after, result["completed"], own_requests=len(samples), own=own
        )
        result["occupancy"] = occupancy(samples)
        if metrics_before:
            result["worker_view"] = worker_metrics(metrics_before, self.metrics())
        if any(out.get("latency") for out in outs):
            result["latency"] = summarize([x for out in outs for x in out["latency"]])
        self.wait_idle()
        return result

    # -- phases ---------------------------------------------------------------------------------
    def floor(self) -> dict[str, Any]:
        say(f"floor: {self.options.serial} raw Redis job-and-reply round trips")
        raw = processes.start_raw_worker(self.procs, self.redis_url)
        try:
            before = self.commands()
            out = self.producers.one(baselines.floor, self.redis_url, self.options.serial, timeout=300)
            commands = redisstats.per_text(before, self.commands(), out["messages"])
        finally:
            self.procs.stop(raw)
        return {
            "round_trip": summarize(out["round_trip"]),
            "push": summarize(out["push"]),
            "redis_commands_per_message": commands,
        }

    def direct(self) -> dict[str, Any]:
        n = self.options.serial
        slow_n = max(20, min(n // 20, 50))  # one at a time too: 50 × 100 ms is 5 s
        say(f"baseline B: {n} direct calls at 0 ms, {slow_n} at {self.options.provider_latency_ms:g} ms")
        fast = self.producers.one(baselines.direct, self.fast_url, n, timeout=300)
        slow = self.producers.one(baselines.direct, self.slow_url, slow_n, timeout=300)
        return {"fast": summarize(fast["round_trip"]), "slow": summarize(slow["round_trip"])}

    def bare(self, provider_ms: float) -> dict[str, Any]:
        """Baseline A in set-up (b), `--workers` workers driven by `--producers` producer processes,
        then in set-up (a), one worker driven by one producer process."""
        o = self.options

        def start(i: int) -> Child:
            return processes.start_bare_worker(
                self.procs, i, redis_url=self.redis_url, concurrency=o.concurrency
            )

        say(f"baseline A: {o.workers} bare Celery worker(s), threads pool, concurrency {o.concurrency}")
        workers = self.start_workers(start)
        try:
            say(f"baseline A: {o.serial} no-op tasks one at a time, delay() then .get()")
            before = self.commands()
            serial = self.producers.one(baselines.bare_serial, self.redis_url, o.serial, timeout=300)
            commands = redisstats.per_text(before, self.commands(), serial["messages"])
            saturation = self.saturate(baselines.bare_saturation, "baseline A (b)", self.slow_url, bare.QUEUE)
            half = self.half_rate(
                baselines.bare_open_loop, self.fast_url, saturation["msg_per_s"], provider_ms
            )
            memory = proc.memory(workers)
            setup_a = self.setup_a(baselines.bare_saturation, "baseline A", self.slow_url, bare.QUEUE, start)
        finally:
            self.stop_workers(workers)
        setup_a = setup_a or self.setup_a(
            baselines.bare_saturation, "baseline A", self.slow_url, bare.QUEUE, start, fresh=True
        )
        return {
            "serial": {
                "round_trip": summarize(serial["round_trip"]),
                "send": summarize(serial["send"]),
                "redis_commands_per_message": commands,
            },
            "saturation": saturation,
            "half_rate": half,
            "memory": memory,
            "setup_a": setup_a,
        }

    def ours(self, provider_ms: dict[str, float]) -> dict[str, Any]:
        o = self.options
        config = workload.write_config(
            self.procs.logdir / "config.yaml", fast_url=self.fast_url, slow_url=self.slow_url
        )
        say(f"our pipeline: {o.workers} worker(s), concurrency {o.concurrency}")
        extra_env = dict(item.split("=", 1) for item in o.worker_env)

        def start(i: int) -> Child:
            return processes.start_worker(
                self.procs, i, redis_url=self.redis_url, config=config, concurrency=o.concurrency,
                extra_env=extra_env, extra_args=o.worker_args,
            )  # fmt: skip

        workers = self.start_workers(start)
        try:
            results: dict[str, Any] = {
                "serial": self.serial(provider_ms["fast"]),
                "headline": self.headline(provider_ms["fast"]),
                "sweep": [self.sweep(rate, provider_ms["slow"]) for rate in o.rates],
                "saturation": self.saturate(load.saturation, "ours (b)", workload.AGENT_SLOW, QUEUE),
            }
            results["half_rate"] = self.half_rate(
                load.open_loop, workload.AGENT_FAST, results["saturation"]["msg_per_s"], provider_ms["fast"]
            )
            results["memory"] = proc.memory(workers)
            results["worker_metrics"] = worker_metrics({}, self.metrics())
            setup_a = self.setup_a(load.saturation, "ours", workload.AGENT_SLOW, QUEUE, start)
        finally:
            self.stop_workers(workers)
        results["setup_a"] = setup_a or self.setup_a(
            load.saturation, "ours", workload.AGENT_SLOW, QUEUE, start, fresh=True
        )
        return results

    def setup_a(
        self,
        function: Callable[..., dict[str, Any]],
        target: str,
        agent_or_url: str,
        queue: str,
        start: Callable[[int], Child],
        *,
        fresh: bool = False,
    ) -> dict[str, Any] | None:
        """Set-up (a): saturation with one worker driven by one producer process. On the running
        worker when there is just one (`--workers 1`, `--quick`), else (`fresh`) on a new one;
        None when neither applies (the caller runs it fresh after stopping its workers)."""
        if not fresh:
            if len(self.workers) != 1:
                return None
            result = self.saturate(function, f"{target} (a)", agent_or_url, queue, 1)
            result["memory"] = proc.memory(self.workers)
            return result
        workers = self.start_workers(start, count=1)
        try:
            result = self.saturate(function, f"{target} (a)", agent_or_url, queue, 1)
            result["memory"] = proc.memory(workers)
        finally:
            self.stop_workers(workers)
        return result

    def half_rate(
        self,
        function: Callable[..., dict[str, Any]],
        agent_or_url: str,
        saturation: float,
        provider_ms: float,
    ) -> dict[str, Any]:
        """Open loop at half the saturation rate just measured, split over the producers, to the
        fast fake: the added latency a fleet sized at 2× its load sees."""
        o = self.options
        rate = max(1.0, saturation / 2)
        say(f"half the saturation rate: {rate:.0f} msg/s for {o.duration:g} s (provider 0 ms)")
        start = time.monotonic() + 1.0
        args = (self.redis_url, agent_or_url, rate / o.producers, start, o.duration, LOAD_TIMEOUT)
        before = self.cpu()
        outs = self.producers.run([(function, args)] * o.producers, timeout=o.duration + LOAD_TIMEOUT + 60)
        point = sweep_point(round(rate), outs, provider_ms)
        point["cpu"] = self.usage(before, self.cpu(), point["sent"])
        self.wait_idle()
        return point

    def receipts(self) -> dict[str, Any]:
        """The HTTP service's receipt handling (worker/bench/receipts.py), on fresh workers."""
        o = self.options
        config = workload.write_config(
            self.procs.logdir / "config.yaml", fast_url=self.fast_url, slow_url=self.slow_url
        )

        def start() -> list[Child]:
            return self.start_workers(
                lambda i: processes.start_worker(
                    self.procs, i, redis_url=self.redis_url, config=config, concurrency=o.concurrency
                )
            )

        result = receipts.phase(
            redis_url=self.redis_url, procs=self.procs,
            run_producers=lambda calls, timeout: self.producers.run(calls, timeout),
            start_workers=start, stop_workers=self.stop_workers, groups=self.groups, config=config,
            messages=o.receipts_messages, producers=o.producers, rate=o.receipts_rate,
            in_flight=o.receipts_in_flight, say=say,
        )  # fmt: skip
        self.wait_idle()
        return result

    def serial(self, provider_ms: float) -> dict[str, Any]:
        n = self.options.serial
        say(f"ours: {n} sends one at a time (provider 0 ms)")
        before, cpu_before, metrics_before = self.commands(), self.cpu(), self.metrics()
        out = self.producers.one(load.serial, self.redis_url, workload.AGENT_FAST, n, timeout=600)
        return {
            **latency_block(out, provider_ms),
            "redis_commands_per_message": redisstats.per_text(before, self.commands(), out["messages"]),
            "cpu": self.usage(cpu_before, self.cpu(), out["messages"]),
            "worker_view": worker_metrics(metrics_before, self.metrics()),
        }

    def headline(self, provider_ms: float) -> dict[str, Any]:
        o = self.options
        say(f"ours: {o.headline_rate} msg/s for {o.duration:g} s (provider 0 ms), probing the event loop")
        before, metrics_before = self.cpu(), self.metrics()
        out = self.producers.one(
            load.open_loop, self.redis_url, workload.AGENT_FAST, float(o.headline_rate),
            time.monotonic() + 1.0, o.duration, LOAD_TIMEOUT, True,
            timeout=o.duration + LOAD_TIMEOUT + 60,
        )  # fmt: skip
        usage = self.usage(before, self.cpu(), out["sent"])
        view = worker_metrics(metrics_before, self.metrics())
        self.wait_idle()
        return {
            "rate": o.headline_rate,
            **latency_block(out, provider_ms),
            "lag": summarize(out["lag"]),
            "idle_lag": summarize(out["idle_lag"]),
            "late": summarize(out["late"]),
            "achieved_msg_per_s": round(out["sent"] / max(out["offered_seconds"], 1e-9), 1),
            "cpu": usage,
            "worker_view": view,
        }

    def sweep(self, rate: int, provider_ms: float) -> dict[str, Any]:
        o = self.options
        say(f"ours: sweep, {rate} msg/s for {o.sweep_duration:g} s (provider {o.provider_latency_ms:g} ms)")
        start = time.monotonic() + 1.0
        args = (
            self.redis_url,
            workload.AGENT_SLOW,
            rate / o.producers,
            start,
            o.sweep_duration,
            LOAD_TIMEOUT,
        )
        before, metrics_before = self.cpu(), self.metrics()
        outs = self.producers.run(
            [(load.open_loop, args)] * o.producers, timeout=o.sweep_duration + LOAD_TIMEOUT + 60
        )
        point = sweep_point(rate, outs, provider_ms)
        point["cpu"] = self.usage(before, self.cpu(), point["sent"])
        point["worker_view"] = worker_metrics(metrics_before, self.metrics())
        self.wait_idle()
        return point


def meta(options: Options, server: RedisServer) -> dict[str, Any]:
    client = redis.Redis.from_url(server.url)
    try:
        info = client.info("server")
    finally:
        client.close()
    versions = {}
    for package in ("celery", "kombu", "redis", "httpx", "twilio"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    return {
        "quick": options.quick,
        "workers": options.workers,
        "concurrency": options.concurrency,
        "producers": options.producers,
        "provider_latency_ms": options.provider_latency_ms,
        "duration_s": options.duration,
        "sweep_duration_s": options.sweep_duration,
        "serial": options.serial,
        "rates": list(options.rates),
        "headline_rate": options.headline_rate,
        "in_flight_per_producer": options.in_flight,
        "redis_appendonly": options.appendonly,
        "worker_env": list(options.worker_env),
        "worker_args": list(options.worker_args),
        "only": options.only,
        "receipts_messages": options.receipts_messages,
        "receipts_rate": options.receipts_rate,
        "profile": options.profile,
        "redis_version": str(info.get("redis_version")),
        "redis_pid": int(info.get("process_id", 0)),
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def run(options: Options) -> dict[str, Any]:
    """One whole benchmark run; every process it starts is stopped before it returns or raises."""
    began = time.monotonic()
    with contextlib.ExitStack() as stack:
        say(f"starting redis-server (appendonly {'yes' if options.appendonly else 'no'})")
        server = stack.enter_context(RedisServer(appendonly=options.appendonly))
        procs = stack.enter_context(Processes(options.out / "logs"))
        say(f"starting {options.producers} producer processes and the fake providers")
        producers = Producers(options.producers)
        stack.callback(producers.close)
        producer_pids = producers.pids
        bench = Run(options, server, procs, producers)
        results: dict[str, Any] = {"meta": bench.meta}
        if options.profile:
            config = workload.write_config(
                procs.logdir / "config.yaml", fast_url=bench.fast_url, slow_url=bench.slow_url
            )
            results["profile"] = profiling.phase(bench, config)
        elif options.only is None:
            results["floor"] = bench.floor()
            results["direct"] = direct = bench.direct()
            provider_ms = {"fast": direct["fast"]["p50"] or 0.0, "slow": direct["slow"]["p50"] or 0.0}
            results["bare"] = bench.bare(provider_ms["fast"])
            results["ours"] = bench.ours(provider_ms)
        if not options.profile:
            results["receipts"] = bench.receipts()
        say("stopping everything")
    results["meta"]["processes"] = {
        "redis-server": bench.meta["redis_pid"],
        **producer_pids,
        **procs.started,
    }
    results["meta"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["meta"]["wall_seconds"] = round(time.monotonic() - began, 1)
    return results
