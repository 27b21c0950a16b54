"""Run the built images and check them from the host: `make image-test` calls this after the build.

Every container uses the host's network (everything listens on 127.0.0.1, on free ports), so no
bridge network is needed. The host runs the fake Twilio and the producer; the containers run
Redis, a worker, the HTTP service (when the image has `midcall-sms serve`) and Flower:

1. one text from the host through the worker container to the fake provider, traced (the host's
   `sms.send` span and the container's spans share one trace id), with the worker's
   `/healthz`, `/readyz` and `/metrics`, the service's `/healthz` and `/readyz`, Flower's
   `/healthcheck` and `/api/workers`;
2. a stream of texts during which the worker container is stopped with `docker stop` (SIGTERM):
   the sends in flight finish, the retries it holds go back to the queue, a second worker container
   sends the rest, and every text ends in exactly one terminal event after exactly one accepted
   provider request (the counts are printed);
3. the compose file, adapted to what Debian's docker-compose 1.29 runs (see `compose_copy`).

Usage: python -m tests.image.drive --docker /usr/bin/docker --worker-image … --flower-image …
--redis-image … --workdir DIR [--compose /usr/bin/docker-compose]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import redis
import yaml
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from producers import CallContext, SendResult, SmsClient
from producers.contract import QUEUE, Event
from worker.metrics import UNACKED_KEY
from worker.testing.actions import Error
from worker.testing.twilio import FakeTwilio

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "midcall-it"
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "tok-image-test-7d1e"
CALLER = "+14155551234"
AGENT_NUMBER = "+15005550006"
T = TypeVar("T")


class Failed(Exception):
    """An image check failed; the message says which."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str, timeout: float = 3.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, str(exc)


def eventually(what: str, check: Callable[[], T | None], timeout: float = 60.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise Failed(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


class Docker:
    """The docker CLI, with every container this run started remembered for the cleanup."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.started: list[str] = []

    def __call__(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        result = subprocess.run(
            [self.binary, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise Failed(f"docker {' '.join(args[:3])} …: {result.stderr.strip()[-2000:]}")
        return result.stdout.strip()

    def run(self, name: str, image: str, *args: str, env: dict[str, str] | None = None) -> str:
        """`docker run -d` on the host network, as UID/GID of the image."""
        flags = [f"--name={PREFIX}-{name}", "--network=host"]
        for key, value in (env or {}).items():
            flags += ["-e", f"{key}={value}"]
        self.started.append(f"{PREFIX}-{name}")
        return self("run", "-d", *flags, image, *args)

    def logs(self, name: str, tail: int = 40) -> str:
        result = subprocess.run(
            [self.binary, "logs", "--tail", str(tail), f"{PREFIX}-{name}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return result.stdout + result.stderr

    def exit_code(self, name: str) -> int:
        return int(self("inspect", "-f", "{{.State.ExitCode}}", f"{PREFIX}-{name}"))

    def cleanup(self) -> None:
        if self.started:
            self("rm", "-f", "-v", *self.started, check=False, timeout=120)
            self.started.clear()


class Timer:
    """Named durations, printed together at the end."""

    def __init__(self) -> None:
        self.figures: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        yield
        self.figures[name] = time.monotonic() - started


def write_config(path: Path, twilio_url: str) -> Path:
    config = {
        "connections": [
            {
                "label": "Twilio - Support",
                "provider": "twilio",
                "default": True,
                "from_number": AGENT_NUMBER,
                "credentials": {"account_sid": ACCOUNT_SID, "auth_token": "${TWILIO_AUTH_TOKEN}"},
                "api_base_url": twilio_url,
                # the stream tests send dozens of texts from one number to one caller
                "messages_per_second": 10_000,
            }
        ],
        "agents": {
            "agent_abc123": {
                "voice_tools": {
                    "sms_mid_call": {
                        "enabled": True,
                        "provider": "twilio",
                        "max_per_call": 5,
                        "max_per_recipient": {"count": 100_000, "window_seconds": 60},
                    }
                }
            }
        },
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o644)  # the containers read it as UID 10001
    return path


def call(call_id: str) -> CallContext:
    return CallContext(call_id=call_id, direction="inbound", from_number=CALLER, to_number=AGENT_NUMBER)


class Stack:
    """Redis, workers, the service and Flower as containers on the host network."""

    def __init__(self, docker: Docker, args: argparse.Namespace, config: Path) -> None:
        self.docker = docker
        self.args = args
        self.config = config
        self.redis_port = free_port()
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"

    def start_redis(self) -> None:
        self.docker.run(
            "redis",
            self.args.redis_image,
            "redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no",
        )  # fmt: skip
        client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=1)

        def pings() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        eventually("Redis in its container to answer PING", pings, timeout=30)
        client.close()

    def worker_env(self, metrics_port: int, concurrency: int) -> dict[str, str]:
        return {
            "SMS_REDIS_URL": self.redis_url,
            "SMS_CONFIG_FILE": "/etc/midcall-sms/config.yaml",
            "SMS_ALLOW_PRIVATE_ENDPOINTS": "true",  # the fake provider is on 127.0.0.1
            "SMS_CONCURRENCY": str(concurrency),
            "SMS_METRICS_HOST": "127.0.0.1",
            "SMS_METRICS_PORT": str(metrics_port),
            # no status polls: the counts below are of send requests to the fake
            "SMS_RECEIPT_POLL_SCHEDULE": "",
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        }

    def start_worker(self, name: str, *, concurrency: int = 4, env: dict[str, str] | None = None) -> str:
        """A worker container with the image's own command; returns its metrics base URL."""
        port = free_port()
        self.docker(
            "run", "-d", f"--name={PREFIX}-{name}", "--network=host",
            "--mount", f"type=bind,source={self.config},target=/etc/midcall-sms/config.yaml,readonly",
            "--stop-timeout", "60",
            *[f"-e{k}={v}" for k, v in (self.worker_env(port, concurrency) | (env or {})).items()],
            self.args.worker_image,
        )  # fmt: skip
        self.docker.started.append(f"{PREFIX}-{name}")
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            state = self.docker("inspect", "-f", "{{.State.Running}}", f"{PREFIX}-{name}")
            if state != "true":
                raise Failed(f"worker container {name} exited:\n{self.docker.logs(name)}")
            return get(f"{url}/readyz")[0] == 200

        eventually(f"worker container {name} to answer /readyz with 200", ready, timeout=90)
        return url

    def has_serve(self) -> bool:
        result = subprocess.run(
            [self.docker.binary, "run", "--rm", "--network=none", self.args.worker_image,
             "midcall-sms", "serve", "--help"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        return result.returncode == 0

    def start_service(self) -> str:
        port = free_port()
        self.docker(
            "run", "-d", f"--name={PREFIX}-serve", "--network=host",
            "--mount", f"type=bind,source={self.config},target=/etc/midcall-sms/config.yaml,readonly",
            *[f"-e{k}={v}" for k, v in self.worker_env(0, 4).items()],
            "-eSMS_HTTP_HOST=127.0.0.1", f"-eSMS_HTTP_PORT={port}", "-eSMS_PUBLIC_URL=http://127.0.0.1",
            self.args.worker_image, "midcall-sms", "serve",
        )  # fmt: skip
        self.docker.started.append(f"{PREFIX}-serve")
        url = f"http://127.0.0.1:{port}"
        eventually("the service's /readyz to answer 200", lambda: get(f"{url}/readyz")[0] == 200, timeout=60)
        return url

    def start_flower(self) -> str:
        port = free_port()
        self.docker.run(
            "flower",
            self.args.flower_image,
            "celery", "-A", "worker", "flower", "--address=127.0.0.1", f"--port={port}",
            env={"SMS_REDIS_URL": self.redis_url, "FLOWER_UNAUTHENTICATED_API": "true"},
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        eventually("Flower's /healthcheck", lambda: get(f"{url}/healthcheck")[0] == 200, timeout=60)
        return url


def metric_names(text: str) -> set[str]:
    return {line.split("{", 1)[0].split(" ", 1)[0] for line in text.splitlines() if line and line[0] != "#"}


async def one_text(stack: Stack, twilio: FakeTwilio, worker_url: str) -> float:
    """One text, traced: the host's `send()` span (an in-memory exporter here) and the worker
    container's spans (OTEL_TRACES_EXPORTER=console, in its output) share the trace id."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    started = time.monotonic()
    async with SmsClient.from_url(stack.redis_url) as sms:
        result = await sms.send(agent_id="agent_abc123", call=call("CA-image-1"), message="hello", timeout=30)
    elapsed = time.monotonic() - started
    [span] = [s for s in exporter.get_finished_spans() if s.name == "sms.send"]
    trace_id = f"0x{span.context.trace_id:032x}"

    def traced_in_container() -> bool:
        output = stack.docker.logs("worker1", tail=400)
        return trace_id in output and '"sms.provider_request"' in output

    eventually("the worker container to print spans of the send's trace", traced_in_container, 15)
    print(f"  trace {trace_id}: sms.send on the host, sms.deliver + sms.provider_request in the container")
    if result.status != "accepted":
        raise Failed(f"the first text was not accepted: {result}")
    if [m.text for m in twilio.accepted] != ["hello"]:
        raise Failed(f"the fake provider did not get exactly the one text: {twilio.accepted}")
    accepted = 'midcall_sms_sends_total{error_code="",outcome="accepted",provider="twilio"} 1.0'
    # The outcome is published before the worker counts it: the counter may lag the event a little.
    eventually(
        "the worker's /metrics to count the accepted send",
        lambda: accepted in get(f"{worker_url}/metrics")[1],
        10,
    )
    return elapsed


async def sigterm_stream(stack: Stack, twilio: FakeTwilio, client: redis.Redis) -> dict[str, Any]:
    """The container version of tests/integration/test_shutdown.py, with `docker stop`."""
    twilio.reset()
    twilio.latency = 0.5
    # The first four requests get a 429 with Retry-After: 3: the worker holds four retries
    # (reserved, not started) when it is stopped.
    twilio.script(*[Error(20429, status=429, headers={"Retry-After": "3"})] * 4)
    early, total = 4, 30
    async with SmsClient.from_url(stack.redis_url) as sms:

        def send(i: int) -> asyncio.Future[SendResult]:
            return asyncio.ensure_future(
                sms.send(
                    agent_id="agent_abc123", call=call(f"CA-stop-{i}"), message=f"hello {i}", timeout=120
                )
            )

        def holding_retries() -> bool:
            held = [json.loads(value)[0] for value in client.hvals(UNACKED_KEY)]
            return len(held) == early and all(m["headers"]["eta"] for m in held)

        jobs = [send(i) for i in range(early)]
        await asyncio.to_thread(eventually, "the worker to hold four retries", holding_retries, 30)
        jobs += [send(i) for i in range(early, total)]
        await asyncio.to_thread(twilio.wait_for_requests, early + 4, 30.0)

        stop = asyncio.ensure_future(asyncio.to_thread(stack.docker, "stop", "-t", "60", f"{PREFIX}-worker1"))
        in_flight = len(twilio.requests) - early
        stopped_at = time.monotonic()
        await stop
        drained_in = time.monotonic() - stopped_at
        exit_code = stack.docker.exit_code("worker1")
        sent_by_first = len(twilio.accepted)
        queued = [json.loads(entry)["headers"]["id"] for entry in client.lrange(QUEUE, 0, -1)]
        held = client.hlen(UNACKED_KEY)
        await asyncio.to_thread(stack.start_worker, "worker2")
        results = await asyncio.gather(*jobs)
        terminal: dict[str, list[Event]] = {}
        for i, result in enumerate(results):
            async for event in sms.events(f"CA-stop-{i}", idle_timeout=0.2):
                if event.job_id == result.job_id and event.terminal:
                    terminal.setdefault(event.job_id, []).append(event)
    bodies = [message.text or "" for message in twilio.accepted]
    counts: dict[str, Any] = {
        "sent": total,
        "accepted": [r.status for r in results].count("accepted"),
        "provider_requests": len(twilio.requests),
        "429s": early,
        "accepted_by_provider": len(bodies),
        "unique_bodies": len(set(bodies)),
        "in_flight_at_stop": in_flight,
        "finished_by_stopped_worker": sent_by_first,
        "worker_exit_code": exit_code,
        "stopped_in": round(drained_in, 2),
        "back_in_queue": len(queued),
        "held_after_stop": held,
        "terminal_events": sum(len(v) for v in terminal.values()),
        "jobs_with_one_terminal_event": sum(len(v) == 1 for v in terminal.values()),
        "possible_duplicates": sum(bool(r.possible_duplicate) for r in results),
    }
    print("docker stop mid-stream: " + " ".join(f"{k}={v}" for k, v in counts.items()), flush=True)
    problems = [
        exit_code != 0 and f"the worker exited {exit_code}:\n{stack.docker.logs('worker1')}",
        in_flight < 1 and "no send was in flight at the stop",
        sent_by_first != in_flight and "a send in flight at the stop did not finish",
        held != 0 and "the stopped worker still holds messages",
        len(queued) != total - sent_by_first and "not everything unsent went back to the queue",
        counts["accepted"] != total and "not every text was accepted",
        len(twilio.requests) != total + early and "the provider got more requests than texts plus 429s",
        sorted(bodies) != sorted(f"hello {i}" for i in range(total)) and "a text was not sent exactly once",
        counts["jobs_with_one_terminal_event"] != total and "a job has no or several terminal events",
        counts["possible_duplicates"] and "a result is flagged possible_duplicate",
    ]
    failed = [p for p in problems if p]
    if failed:
        raise Failed("; ".join(str(p) for p in failed))
    return counts


def check_probes(worker_url: str, service_url: str | None, flower_url: str) -> None:
    for url, path in [(worker_url, "/healthz"), (worker_url, "/readyz")] + (
        [(service_url, "/healthz"), (service_url, "/readyz")] if service_url else []
    ):
        status, body = get(url + path)
        print(f"  GET {url}{path} → {status} {body.strip()[:120]}", flush=True)
        if status != 200:
            raise Failed(f"{url}{path} answered {status}")
    workers = eventually(
        "the worker in Flower's /api/workers",
        lambda: [w for w in json.loads(get(f"{flower_url}/api/workers?refresh=1", 10)[1] or "{}")],
        timeout=60,
    )
    print(f"  GET {flower_url}/api/workers → {workers}", flush=True)


def compose_copy(stack: Stack, path: Path) -> tuple[Path, dict[str, int]]:
    """deploy/compose.yaml as Debian's docker-compose 1.29 can run it on the host network.

    Kept as shipped: the services, images' commands, `depends_on` on Redis's healthcheck, Redis's
    AOF options and data volume, `stop_grace_period`/`stop_signal`, restart policies, the
    environment. Changed, and why: no top-level `name` (1.29 rejects it; `-p` names the project);
    `configs` becomes a read-only bind mount (1.29 ignores `configs` outside a swarm); no `build`
    (the images are built already, and 1.29 builds without BuildKit, so without
    Dockerfile.dockerignore); `network_mode: host` instead of published ports, with Redis, the
    worker's metrics, the HTTP service and Flower on free 127.0.0.1 ports; the local Redis image;
    the fake provider's config and token. Returns the path and the ports (`metrics`, `flower`,
    `http` when the file has the service).
    """
    data = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    data.pop("name", None)
    data.pop("configs", None)
    ports = {"metrics": free_port(), "flower": free_port()}
    images = {"worker": stack.args.worker_image, "flower": stack.args.flower_image}
    for name, service in data["services"].items():
        target = (service.pop("build", None) or {}).get("target")
        service.pop("ports", None)
        service.pop("expose", None)
        service["network_mode"] = "host"
        if name == "redis":
            service["image"] = stack.args.redis_image
            service["command"] += ["--port", str(stack.redis_port), "--bind", "127.0.0.1", "--dir", "/data"]
            service["healthcheck"]["test"] = ["CMD", "redis-cli", "-p", str(stack.redis_port), "ping"]
            continue
        service["image"] = images[str(target or "worker")]
        environment = service["environment"]
        environment["SMS_REDIS_URL"] = stack.redis_url
        if service.pop("configs", None):
            service["volumes"] = [f"{stack.config}:/etc/midcall-sms/config.yaml:ro"]
            environment.update(
                {k: v for k, v in stack.worker_env(ports["metrics"], 4).items() if k != "SMS_CONFIG_FILE"}
            )
        if target == "flower":
            port = ports["flower"]
            service["command"] = ["celery", "-A", "worker", "flower", "--address=127.0.0.1", f"--port={port}"]
            environment["FLOWER_UNAUTHENTICATED_API"] = "true"
        elif "serve" in (service.get("command") or []):
            ports["http"] = port = free_port()
            environment.update(
                {"SMS_HTTP_HOST": "127.0.0.1", "SMS_HTTP_PORT": str(port), "SMS_METRICS_PORT": "0"}
            )
            if "healthcheck" in service:
                service["healthcheck"]["test"] = [
                    part.replace(":8080/", f":{port}/") for part in service["healthcheck"]["test"]
                ]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path, ports


async def compose_run(stack: Stack, twilio: FakeTwilio, compose: str, workdir: Path) -> dict[str, Any]:
    """`docker-compose up`, a text, the probes, `docker-compose stop worker` mid-stream, `start`."""
    file, ports = compose_copy(stack, workdir / "compose.yaml")
    project = f"{PREFIX}-compose"

    def dc(*args: str, timeout: float = 180) -> str:
        result = subprocess.run(
            [compose, "-p", project, "-f", str(file), *args],
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise Failed(f"docker-compose {' '.join(args)}: {result.stdout[-1500:]}{result.stderr[-1500:]}")
        return result.stdout + result.stderr

    networks_before = set(stack.docker("network", "ls", "-q").split())
    try:
        dc("up", "-d")
        worker_url, flower_url = f"http://127.0.0.1:{ports['metrics']}", f"http://127.0.0.1:{ports['flower']}"
        service_url = f"http://127.0.0.1:{ports['http']}" if "http" in ports else None
        eventually("the compose worker's /readyz", lambda: get(f"{worker_url}/readyz")[0] == 200, timeout=90)
        eventually("the compose Flower's /healthcheck", lambda: get(f"{flower_url}/healthcheck")[0] == 200)
        if service_url:
            eventually("the compose service's /readyz", lambda: get(f"{service_url}/readyz")[0] == 200)
        check_probes(worker_url, service_url, flower_url)
        new_networks = set(stack.docker("network", "ls", "-q").split()) - networks_before
        twilio.reset()
        twilio.latency = 0.5
        total = 12
        async with SmsClient.from_url(stack.redis_url) as sms:
            jobs = [
                asyncio.ensure_future(
                    sms.send(
                        agent_id="agent_abc123",
                        call=call(f"CA-compose-{i}"),
                        message=f"compose {i}",
                        timeout=120,
                    )
                )
                for i in range(total)
            ]
            await asyncio.to_thread(twilio.wait_for_requests, 2, 30.0)
            in_flight = len(twilio.requests)
            await asyncio.to_thread(dc, "stop", "worker")
            finished_by_stopped = len(twilio.accepted)
            [container] = [w for w in dc("ps", "-q", "worker").split() if len(w) == 64]
            exit_code = int(stack.docker("inspect", "-f", "{{.State.ExitCode}}", container))
            await asyncio.to_thread(dc, "start", "worker")
            results = await asyncio.gather(*jobs)
        bodies = sorted(m.text or "" for m in twilio.accepted)
        counts: dict[str, Any] = {
            "sent": total,
            "accepted": [r.status for r in results].count("accepted"),
            "provider_requests": len(twilio.requests),
            "unique_bodies": len(set(bodies)),
            "in_flight_at_stop": in_flight,
            "finished_by_stopped_worker": finished_by_stopped,
            "worker_exit_code": exit_code,
            "networks_created": len(new_networks),
        }
        print("docker-compose stop worker mid-stream: " + " ".join(f"{k}={v}" for k, v in counts.items()))
        if bodies != sorted(f"compose {i}" for i in range(total)) or counts["accepted"] != total:
            raise Failed(f"compose: not every text was sent exactly once: {counts}")
        if exit_code != 0:
            raise Failed(f"compose: the stopped worker exited {exit_code}")
        if finished_by_stopped < in_flight:
            raise Failed(f"compose: a send in flight at the stop did not finish: {counts}")
        return counts
    except Failed:
        print(dc("logs", "--tail=40"), file=sys.stderr)
        raise
    finally:
        subprocess.run(
            [compose, "-p", project, "-f", str(file), "down", "-v", "--timeout", "60"],
            capture_output=True, timeout=180, check=False,
        )  # fmt: skip


async def run(args: argparse.Namespace) -> int:
    docker = Docker(args.docker)
    timer = Timer()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        with FakeTwilio(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN) as twilio:
            config = write_config(workdir / "config.yaml", twilio.url)
            stack = Stack(docker, args, config)
            with timer("start redis container"):
                stack.start_redis()
            with timer("start worker container until /readyz 200"):
                worker_url = stack.start_worker("worker1", env={"OTEL_TRACES_EXPORTER": "console"})
            service_url = None
            if stack.has_serve():
                with timer("start serve container until /readyz 200"):
                    service_url = stack.start_service()
            else:
                print("serve: the image has no `midcall-sms serve` command (not on main yet): skipped")
            with timer("start flower container until /healthcheck 200"):
                flower_url = stack.start_flower()
            with timer("first text, host → worker container → fake provider"):
                await one_text(stack, twilio, worker_url)
            check_probes(worker_url, service_url, flower_url)
            client = redis.Redis.from_url(stack.redis_url)
            with timer("docker stop mid-stream test"):
                await sigterm_stream(stack, twilio, client)
            client.close()
            docker.cleanup()  # the compose project brings its own Redis on the same port
            if args.compose:
                with timer("compose: up, a stream, stop worker mid-stream, start, down"):
                    await compose_run(stack, twilio, args.compose, workdir)
            else:
                print("compose: no docker-compose: skipped")
            if twilio.violations:
                raise Failed(f"requests broke Twilio's spec: {twilio.violations[:3]}")
    except Failed as exc:
        print(f"image-test FAILED: {exc}", file=sys.stderr)
        for name in list(docker.started):
            short = name.removeprefix(f"{PREFIX}-")
            print(f"--- logs of {name} ---\n{docker.logs(short)}", file=sys.stderr)
        return 1
    finally:
        docker.cleanup()
    for name, seconds in timer.figures.items():
        print(f"  {seconds:6.1f} s  {name}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.image.drive", description=__doc__.splitlines()[0])
    parser.add_argument("--docker", default="docker")
    parser.add_argument("--worker-image", required=True)
    parser.add_argument("--flower-image", required=True)
    parser.add_argument("--redis-image", required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--compose", default="")
    return asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
