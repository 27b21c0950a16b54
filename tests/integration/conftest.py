"""Integration fixtures: real `celery -A worker worker` processes against the session's redis-server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from worker.testing.twilio import FakeTwilio

ROOT = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


class WorkerProcess:
    """One `celery -A worker worker` subprocess with its own log file."""

    def __init__(
        self, redis_url: str, config: Path, log: Path, *, concurrency: int, env: dict[str, str]
    ) -> None:
        self.log_path = log
        self.config = config
        environ = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("SMS_", "TWILIO_"))},
            "SMS_REDIS_URL": redis_url,
            "SMS_CONFIG_FILE": str(config),
            "SMS_LOG_FORMAT": "json",
            "SMS_CONCURRENCY": str(concurrency),
            "SMS_ALLOW_PRIVATE_ENDPOINTS": "true",
            "SMS_METRICS_PORT": "0",  # several workers per test: a test that scrapes sets its own port
            # No status polls unless a test asks (they would add GETs to the fakes' request counts).
            "SMS_RECEIPT_POLL_SCHEDULE": "",
            "NO_PROXY": "127.0.0.1,localhost",
            **env,
        }
        command = [
            sys.executable, "-m", "celery", "-A", "worker", "worker", "--without-mingle", "--without-gossip",
            "-n", f"test-{log.stem}@%h",
        ]  # fmt: skip
        self._log_file = log.open("wb")
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=environ, stdout=self._log_file, stderr=subprocess.STDOUT
        )

    def wait_ready(self, timeout: float = 30.0) -> WorkerProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited ({self.process.returncode}):\n{self.output()[-3000:]}")
            if "ready." in self.output():
                return self
            time.sleep(0.05)
        raise TimeoutError(f"worker not ready:\n{self.output()[-3000:]}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def instance(self) -> str:
        """The worker instance id its heartbeat uses (from its `worker.heartbeat_started` line)."""
        for line in self.output().splitlines():
            if '"worker.heartbeat_started"' in line:
                return str(json.loads(line)["instance"])
        raise LookupError("no heartbeat line yet")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log_file.close()


WorkerFactory = Callable[..., WorkerProcess]


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[dict[str, Any]], Path]:
    def write(data: dict[str, Any], name: str = "config.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return write


@pytest.fixture
def start_worker(redis_url: str, tmp_path: Path) -> Iterator[WorkerFactory]:
    """Start workers on the test's Redis; every one is stopped (SIGTERM) at the end of the test."""
    workers: list[WorkerProcess] = []

    def start(
        config: Path, *, concurrency: int = 32, env: dict[str, str] | None = None, wait: bool = True
    ) -> WorkerProcess:
        worker = WorkerProcess(
            redis_url, config, tmp_path / f"worker{len(workers)}.log", concurrency=concurrency, env=env or {}
        )
        workers.append(worker)
        return worker.wait_ready() if wait else worker

    yield start
    for worker in workers:
        worker.stop()


# -- a Twilio connection on a fake Twilio, shared by the integration tests ----------------------

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "tok-sekret-4f9a1c7d"  # must never show up in output or in Redis
CALLER = "+14155551234"
AGENT_NUMBER = "+15005550006"  # Twilio's test "From" that passes validation
TEMPLATE = "Your appointment is confirmed for {date} at {time}. Details: {link}"
VARIABLES = {"date": "March 10", "time": "2:00 PM", "link": "https://acme.example/b/42"}


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN) as fake:
        yield fake
        assert fake.violations == [], "requests broke Twilio's OpenAPI spec"


@pytest.fixture
def config(write_config: Callable[[dict[str, Any]], Path], twilio: FakeTwilio) -> Path:
    return write_config(
        {
            "connections": [
                {
                    "label": "Twilio - Support",
                    "provider": "twilio",
                    "default": True,
                    "from_number": AGENT_NUMBER,
                    "credentials": {"account_sid": ACCOUNT_SID, "auth_token": "${TWILIO_AUTH_TOKEN}"},
                    "api_base_url": twilio.url,
                    # load tests send hundreds of texts from one number to one caller
                    "messages_per_second": 10_000,
                }
            ],
            "agents": {
                "agent_abc123": {
                    "voice_tools": {
                        "sms_mid_call": {
                            "enabled": True,
                            "provider": "twilio",
                            "templates": {"booking_confirmation": TEMPLATE},
                            "max_per_call": 5,
                            "max_per_recipient": {"count": 100_000, "window_seconds": 60},
                        }
                    }
                }
            },
        }
    )


@pytest.fixture
def worker_env() -> dict[str, str]:
    return {"TWILIO_AUTH_TOKEN": AUTH_TOKEN}
