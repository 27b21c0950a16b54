"""A real `midcall-sms serve` subprocess on a free 127.0.0.1 port, for integration tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServiceProcess:
    """`midcall-sms serve` with its own log file; `url` is both where it listens and its
    `SMS_PUBLIC_URL` (what the signatures cover)."""

    def __init__(self, redis_url: str, config: Path, log: Path, *, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        environ = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("SMS_", "TWILIO_"))},
            "SMS_REDIS_URL": redis_url,
            "SMS_CONFIG_FILE": str(config),
            "SMS_PUBLIC_URL": self.url,
            "SMS_HTTP_PORT": str(self.port),
            "SMS_LOG_FORMAT": "json",
            "NO_PROXY": "127.0.0.1,localhost",
            **(env or {}),
        }
        command = [sys.executable, "-m", "worker.cli", "serve"]
        self._log_file = log.open("wb")
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=environ, stdout=self._log_file, stderr=subprocess.STDOUT
        )

    def wait_ready(self, timeout: float = 30.0) -> ServiceProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited ({self.process.returncode}):\n{self.output()[-3000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"serve not ready:\n{self.output()[-3000:]}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log_file.close()
        return self.process.returncode
