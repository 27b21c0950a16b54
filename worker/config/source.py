"""Where the worker reads its config from, cached per process and refreshed when it changes.

`SMS_CONFIG_SOURCE` chooses: `file` (`SMS_CONFIG_FILE`) or `redis` (the store of
`worker.config.store`, managed with `midcall-sms config`). Either way a send reads the config from
memory: the file source checks the file's modification time, the Redis source the store's version
(one round trip, which also brings what changed), at most every `config_refresh` seconds. A change
that fails validation is logged and ignored: the last good config stays in use, so a typo — or a
worker that lacks a new encryption key — cannot take a running fleet down.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import redis
import structlog
from pydantic import ValidationError

from producers.contract import validation_problems
from worker.config import sealed
from worker.config.crypto import Crypto
from worker.config.loader import load_file
from worker.config.models import Agent, Connection, SmsConfig
from worker.config.store import Changes, RedisConfigStore
from worker.errors import ConfigError
from worker.settings import Settings

log = structlog.get_logger("worker.config")


class ConfigSource(Protocol):
    def get(self) -> SmsConfig: ...


class StaticConfigSource:
    """A fixed config (tests, embedding)."""

    def __init__(self, config: SmsConfig) -> None:
        self._config = config

    def get(self) -> SmsConfig:
        return self._config


class FileConfigSource:
    """`SMS_CONFIG_FILE`, loaded once and reloaded when its modification time changes."""

    def __init__(
        self,
        path: Path | None,
        *,
        crypto: Crypto,
        refresh: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._path = path
        self._crypto = crypto
        self._refresh = refresh
        self._clock = clock
        self._lock = threading.Lock()
        self._mtime: float | None = None
        self._next_check = 0.0
        self._config = SmsConfig()
        if path is None:
            log.warning("config.none", detail="SMS_CONFIG_FILE is not set: every job fails with sms_disabled")
        else:
            self._config = load_file(path, crypto=crypto)  # a bad file at start-up is fatal
            self._mtime = path.stat().st_mtime

    def get(self) -> SmsConfig:
        if self._path is not None and self._clock() >= self._next_check:
            self._maybe_reload(self._path)
        return self._config

    def _maybe_reload(self, path: Path) -> None:
        with self._lock:
            if self._clock() < self._next_check:
                return
            self._next_check = self._clock() + self._refresh
            try:
                mtime = path.stat().st_mtime
            except OSError:
                return
            if mtime == self._mtime:
                return
            try:
                self._config = load_file(path, crypto=self._crypto)
                log.info("config.reloaded", path=str(path))
            except ConfigError as exc:
                log.error("config.reload_failed", path=str(path), error=str(exc))
            self._mtime = mtime


class RedisConfigSource:
    """The Redis store, loaded once and then patched with what changed since the version held.

    `get()` costs no Redis round trip; at most every `refresh` seconds one caller makes one script
    call (the version, plus the changed items when there are any) while the others keep using the
    config they have. An idle worker does not poll at all.
    """

    def __init__(
        self, store: RedisConfigStore, *, refresh: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._store = store
        self._refresh = refresh
        self._clock = clock
        self._lock = threading.Lock()
        self._version = -1
        #: a version that failed to load: not retried (nor logged again) until the store moves on
        self._failed_version: int | None = None
        self._connections: dict[str, Connection] = {}
        self._agents: dict[str, Agent] = {}
        self._config = SmsConfig()
        self._reload(at_start=True)  # Redis down at start-up: the task hands its message back
        self._next_check = clock() + refresh

    @property
    def version(self) -> int:
        """The store version this process holds (-1 before the first successful load)."""
        return self._version

    def get(self) -> SmsConfig:
        if self._clock() >= self._next_check and self._lock.acquire(blocking=False):
            try:
                if self._clock() >= self._next_check:
                    self._next_check = self._clock() + self._refresh
                    self._reload(at_start=False)
            finally:
                self._lock.release()
        return self._config

    def _reload(self, *, at_start: bool) -> None:
        try:
            changes = self._store.changes_since(self._version)
        except redis.RedisError as exc:
            if at_start:
                raise
            log.warning("config.refresh_failed", source="redis", error=type(exc).__name__)
            return
        if changes is None or changes.version == self._failed_version:
            return
        try:
            self._apply(changes)
        except ConfigError as exc:
            self._failed_version = changes.version
            log.error("config.reload_failed", source="redis", version=changes.version, error=str(exc))
            return
        log.info(
            "config.reloaded",
            source="redis",
            version=changes.version,
            connections_changed=len(changes.connections),
            agents_changed=len(changes.agents),
        )

    def _apply(self, changes: Changes) -> None:
        """Build the next config from a copy; nothing is swapped in unless all of it is valid."""
        crypto = self._store.crypto
        connections = {} if changes.full else dict(self._connections)
        agents = {} if changes.full else dict(self._agents)
        for label, raw in changes.connections.items():
            if raw is None:
                connections.pop(label, None)
            else:
                connections[label] = sealed.open_connection(label, raw, crypto)
        for agent_id, raw in changes.agents.items():
            if raw is None:
                agents.pop(agent_id, None)
            else:
                agents[agent_id] = sealed.open_agent(agent_id, raw, crypto)
        try:
            # Validated items are not validated again; only the references between them are checked.
            config = SmsConfig(connections=[connections[k] for k in sorted(connections)], agents=agents)
        except ValidationError as exc:
            raise ConfigError(validation_problems(exc)) from None
        self._connections, self._agents, self._config = connections, agents, config
        self._version = changes.version


def open_source(settings: Settings, client: redis.Redis) -> ConfigSource:
    """The config source `SMS_CONFIG_SOURCE` names, for a worker process."""
    crypto = Crypto(settings.fernet_keys())
    if settings.config_source == "redis":
        return RedisConfigSource(RedisConfigStore(client, crypto), refresh=settings.config_refresh)
    return FileConfigSource(settings.config_file, crypto=crypto, refresh=settings.config_refresh)
